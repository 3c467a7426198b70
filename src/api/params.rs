//! Query parameters: a route answers only the ones it takes.

use super::error::ErrorCode;
use super::ApiError;

/// A parameter the route does not know is refused: a typo (`?staus=pending`) silently ignored
/// would answer something else than what was asked.
pub(super) fn reject_unknown_parameters(query: &str, accepted: &[&str]) -> Result<(), ApiError> {
    match form_urlencoded::parse(query.as_bytes()).find(|(name, _)| !accepted.contains(&&**name)) {
        None => Ok(()),
        Some((name, _)) => Err(ApiError::bad_request(
            ErrorCode::UnknownParameter,
            format!(
                "unknown query parameter {name:?}; this route takes {}",
                accepted.join(", ")
            ),
        )),
    }
}
