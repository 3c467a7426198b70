use actix_web::body::BoxBody;
use actix_web::http::header::{self, ContentType, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::actors::ExecutorError;
use crate::db::StoreError;
use crate::domain::{
    FieldError, IllegalTransition, OrderStatus, RequestId, ValidationErrors, VersionMismatch,
};
use crate::error_chain::error_chain;

/// Seconds a client should wait before retrying after a 503.
pub(super) const RETRY_AFTER_SECS: &str = "1";

/// Every `code` an error answer can carry: what went wrong, for programs. The OpenAPI
/// document lists them from this enum, and a test holds the README's table to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A field breaks a rule, is missing or has the wrong JSON type (see `details`).
    ValidationFailed,
    /// The body is not JSON at all.
    InvalidJson,
    /// The body could not be read.
    InvalidBody,
    InvalidId,
    InvalidLimit,
    InvalidCursor,
    InvalidQuery,
    InvalidPath,
    InvalidIdempotencyKey,
    InvalidConsistencyToken,
    UnknownParameter,
    /// Refused by a layer before our handlers (a CORS preflight from an origin not allowed).
    RequestRejected,
    Unauthorized,
    OrderNotFound,
    EventNotFound,
    RouteNotFound,
    MethodNotAllowed,
    RequestTimeout,
    InvalidTransition,
    PreconditionFailed,
    PayloadTooLarge,
    UnsupportedMediaType,
    IdempotencyKeyReused,
    ServiceUnavailable,
    InternalError,
}

/// Every way a request can fail, and (in `ResponseError` and `identify`) the one place that
/// turns each into an HTTP status and a JSON body `{"error", "code", "request_id", …}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request validation failed")]
    Validation(#[from] ValidationErrors),
    #[error("{message}")]
    BadRequest { code: ErrorCode, message: String },
    #[error("order not found")]
    OrderNotFound,
    #[error("event not found")]
    EventNotFound,
    #[error("this Idempotency-Key was already used with a different request body")]
    IdempotencyKeyReused,
    #[error(transparent)]
    IllegalTransition(#[from] IllegalTransition),
    /// `If-Match` named another version of the order than the current one.
    #[error(transparent)]
    PreconditionFailed(VersionMismatch),
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("method {method} is not allowed on this route")]
    MethodNotAllowed { method: String, allow: &'static str },
    #[error("missing or invalid API key: send Authorization: Bearer <key>")]
    Unauthorized,
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("request body exceeds the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("request body not received in time")]
    RequestTimeout,
    #[error("service temporarily unavailable, retry later")]
    Unavailable(#[source] ExecutorError),
    #[error("internal server error")]
    Internal(#[source] InternalError),
    /// A refusal from outside our handlers (actix-cors …): its status and message, our body.
    #[error("{message}")]
    RefusedBeforeHandler { status: StatusCode, message: String },
}

/// What a 500 comes from: for the log, never for the client.
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    #[error(transparent)]
    Executor(ExecutorError),
    /// A write the database refused that the domain should have refused first.
    #[error("BUG: the domain let through a value the database refused")]
    Uncaught(#[source] ExecutorError),
    #[error("cannot render the metrics")]
    Metrics(#[source] prometheus::Error),
    /// A bug told in words, or an error raised elsewhere in actix, known only by its text.
    #[error("{0}")]
    Other(String),
}

impl ApiError {
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    fn code(&self) -> ErrorCode {
        match self {
            Self::Validation(_) => ErrorCode::ValidationFailed,
            Self::BadRequest { code, .. } => *code,
            Self::OrderNotFound => ErrorCode::OrderNotFound,
            Self::EventNotFound => ErrorCode::EventNotFound,
            Self::IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
            Self::IllegalTransition(_) => ErrorCode::InvalidTransition,
            Self::PreconditionFailed(_) => ErrorCode::PreconditionFailed,
            Self::RouteNotFound(_) => ErrorCode::RouteNotFound,
            Self::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            Self::Unauthorized => ErrorCode::Unauthorized,
            Self::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            Self::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            Self::RequestTimeout => ErrorCode::RequestTimeout,
            Self::Unavailable(_) => ErrorCode::ServiceUnavailable,
            Self::Internal(_) => ErrorCode::InternalError,
            Self::RefusedBeforeHandler { .. } => ErrorCode::RequestRejected,
        }
    }

    /// The answer's body, naming the request it answers.
    fn body<'a>(&'a self, request_id: Option<&'a RequestId>) -> ErrorBody<'a> {
        ErrorBody {
            error: self.to_string(),
            code: self.code(),
            request_id: request_id.map(RequestId::as_str),
            details: match self {
                Self::Validation(errors) => Some(&errors.0),
                _ => None,
            },
            current_status: match self {
                Self::IllegalTransition(e) => Some(e.from),
                _ => None,
            },
            allowed_transitions: match self {
                Self::IllegalTransition(e) => Some(e.from.next()),
                _ => None,
            },
        }
    }

    /// An error that some other part of actix attached to a response.
    fn foreign(status: StatusCode, error: &actix_web::Error) -> Self {
        if status.is_server_error() {
            Self::Internal(InternalError::Other(error.to_string()))
        } else {
            Self::RefusedBeforeHandler {
                status,
                message: error.to_string(),
            }
        }
    }
}

impl From<ExecutorError> for ApiError {
    fn from(error: ExecutorError) -> Self {
        match error {
            ExecutorError::Store(StoreError::NotFound) => Self::OrderNotFound,
            ExecutorError::Store(StoreError::IdempotencyKeyReused) => Self::IdempotencyKeyReused,
            ExecutorError::Store(StoreError::IllegalTransition(e)) => Self::IllegalTransition(e),
            ExecutorError::Store(StoreError::VersionMismatch(e)) => Self::PreconditionFailed(e),
            ExecutorError::Store(StoreError::Unavailable(_))
            | ExecutorError::Mailbox(_)
            | ExecutorError::Interrupted => Self::Unavailable(error),
            ExecutorError::Store(StoreError::ConstraintViolated(_)) => {
                Self::Internal(InternalError::Uncaught(error))
            }
            ExecutorError::Store(StoreError::Query(_) | StoreError::Impossible(_))
            | ExecutorError::Panicked => Self::Internal(InternalError::Executor(error)),
        }
    }
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody<'a> {
    /// What went wrong, for people.
    #[schema(example = "request validation failed")]
    error: String,
    /// What went wrong, for programs.
    code: ErrorCode,
    /// The request's `X-Request-Id` (the client's, or one generated for it): quote it when
    /// reporting a problem, it finds the request in the server's log.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = true, example = "5f0c2a4e-3b1d-4c9a-8e7f-0a1b2c3d4e5f")]
    request_id: Option<&'a str>,
    /// With `validation_failed`: every broken rule, one per field.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FieldError>>, nullable = false)]
    details: Option<&'a [FieldError]>,
    /// With `invalid_transition`: the order's status now.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    current_status: Option<OrderStatus>,
    /// With `invalid_transition`: the statuses the order may move to (empty when final).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<OrderStatus>>, nullable = false)]
    allowed_transitions: Option<&'static [OrderStatus]>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::OrderNotFound | Self::EventNotFound | Self::RouteNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            Self::IllegalTransition(_) => StatusCode::CONFLICT,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::RefusedBeforeHandler { status, .. } => *status,
        }
    }

    /// The answer without a request id; `identify` adds it (and logs the cause) on the way out.
    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header(ContentType::json());
        match self {
            Self::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
            }
            Self::MethodNotAllowed { allow, .. } => {
                response.insert_header((header::ALLOW, *allow));
            }
            Self::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            Self::PreconditionFailed(mismatch) => {
                response.insert_header(header::ETag(header::EntityTag::new_strong(
                    mismatch.current.tag().to_owned(),
                )));
            }
            _ => {}
        }
        response.json(self.body(None))
    }
}

/// Gives an error answer its request id: every 4xx and 5xx that carries an error, ours or one
/// raised elsewhere in actix (a middleware, an extractor), leaves with our JSON body naming
/// `request_id`, and a 500's or 503's cause is logged under that id. Status and headers stay as
/// they were. An answer without an error (a handler's own, like `/health`'s report) is kept.
pub(super) fn identify(response: HttpResponse, request_id: &RequestId) -> HttpResponse {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let Some(error) = response.error() else {
        return response;
    };
    let foreign;
    let error = match error.as_error::<ApiError>() {
        Some(ours) => ours,
        None => {
            foreign = ApiError::foreign(status, error);
            &foreign
        }
    };
    match error {
        ApiError::Unavailable(cause) => log::warn!(
            "answering 503 (request_id={request_id}): {}",
            error_chain(cause)
        ),
        ApiError::Internal(cause) => log::error!(
            "answering {status} (request_id={request_id}): {}",
            error_chain(cause)
        ),
        _ => {}
    }
    let body = match serde_json::to_string(&error.body(Some(request_id))) {
        Ok(body) => body,
        Err(e) => {
            log::error!("cannot serialise an error body (request_id={request_id}): {e}");
            return response;
        }
    };
    response.map_body(|head, _| {
        head.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        BoxBody::new(body)
    })
}

#[cfg(test)]
mod tests {
    use actix::MailboxError;
    use diesel::result::Error as DieselError;

    use super::*;

    #[test]
    fn an_impossible_database_answer_is_a_500_whose_cause_stays_in_the_log() {
        let error = ApiError::from(ExecutorError::Store(StoreError::Impossible(
            "the batch insert returned 1 rows for 2 orders".into(),
        )));

        assert_eq!(error.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error.code(), ErrorCode::InternalError);
        let body = serde_json::to_value(error.body(None)).unwrap();
        assert_eq!(body["error"], "internal server error");
        assert!(
            matches!(&error, ApiError::Internal(cause)
                if error_chain(cause).contains("1 rows for 2 orders")),
            "the cause is kept for the log: {error:?}"
        );
    }

    #[test]
    fn a_503_and_a_500_keep_their_sources_for_the_log() {
        let closed = ApiError::from(ExecutorError::Mailbox(MailboxError::Closed));
        assert_eq!(closed.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            closed.to_string(),
            "service temporarily unavailable, retry later"
        );
        let source = std::error::Error::source(&closed).map(ToString::to_string);
        assert_eq!(
            source.as_deref(),
            Some("database executor unreachable: Mailbox has closed")
        );

        let refused = ApiError::from(ExecutorError::Store(StoreError::ConstraintViolated(
            DieselError::RollbackTransaction,
        )));
        let ApiError::Internal(cause) = &refused else {
            panic!("a refused write is a 500: {refused:?}");
        };
        assert_eq!(
            error_chain(cause),
            "BUG: the domain let through a value the database refused: database refused the \
             write: You have asked diesel to rollback the transaction"
        );
    }
}
