use serde::Serialize;
use utoipa::ToSchema;

/// One rule broken by one input field, e.g. `items[0].quantity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every field error found in one request: callers see all their mistakes at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} invalid field(s)", .0.len())]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }
}

/// Collects field errors while a request is parsed, keeping the values that did parse.
#[derive(Default)]
pub(crate) struct Collector(Vec<FieldError>);

impl Collector {
    /// Keeps `Ok` values; records `Err` messages under `field`.
    pub(crate) fn check<T>(
        &mut self,
        field: impl FnOnce() -> String,
        r: Result<T, String>,
    ) -> Option<T> {
        r.map_err(|message| {
            self.0.push(FieldError {
                field: field(),
                message,
            })
        })
        .ok()
    }

    pub(crate) fn finish<T>(self, value: Option<T>) -> Result<T, ValidationErrors> {
        match value {
            Some(v) if self.0.is_empty() => Ok(v),
            _ => Err(ValidationErrors(self.0)),
        }
    }
}
