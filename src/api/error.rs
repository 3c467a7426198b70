use actix_web::body::BoxBody;
use actix_web::http::header::{self, ContentType, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::actors::ExecutorError;
use crate::db::StoreError;
use crate::domain::{FieldError, IllegalTransition, OrderStatus, RequestId, ValidationErrors};

/// Seconds a client should wait before retrying after a 503.
pub(super) const RETRY_AFTER_SECS: &str = "1";

/// Every way a request can fail, and (in `ResponseError` and `identify`) the one place that
/// turns each into an HTTP status and a JSON body `{"error", "code", "request_id", …}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request validation failed")]
    Validation(#[from] ValidationErrors),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("order not found")]
    OrderNotFound,
    #[error("this Idempotency-Key was already used with a different request body")]
    IdempotencyKeyReused,
    #[error(transparent)]
    IllegalTransition(#[from] IllegalTransition),
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
    Unavailable(String),
    #[error("internal server error")]
    Internal(String),
    /// A refusal from outside our handlers (actix-cors …): its status and message, our body.
    #[error("{message}")]
    Rejected { status: StatusCode, message: String },
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) => "validation_failed",
            Self::BadRequest { code, .. } => code,
            Self::OrderNotFound => "order_not_found",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::IllegalTransition(_) => "invalid_transition",
            Self::RouteNotFound(_) => "route_not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Unauthorized => "unauthorized",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::Unavailable(_) => "service_unavailable",
            Self::Internal(_) => "internal_error",
            Self::Rejected { .. } => "request_rejected",
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
            Self::Internal(error.to_string())
        } else {
            Self::Rejected {
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
            ExecutorError::Store(StoreError::Unavailable(cause)) => Self::Unavailable(cause),
            ExecutorError::Mailbox(e) => Self::Unavailable(e.to_string()),
            ExecutorError::Interrupted => Self::Unavailable(error.to_string()),
            ExecutorError::Store(StoreError::Rejected(e)) => Self::Internal(format!(
                "BUG: the domain let through a value the database refused: {e}"
            )),
            other @ (ExecutorError::Store(StoreError::Query(_)) | ExecutorError::Panicked) => {
                Self::Internal(other.to_string())
            }
        }
    }
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody<'a> {
    /// What went wrong, for people.
    #[schema(example = "request validation failed")]
    error: String,
    /// What went wrong, for programs: `validation_failed`, `invalid_json`, `invalid_id`,
    /// `order_not_found`, `invalid_transition`, `unauthorized` …
    #[schema(example = "validation_failed")]
    code: &'static str,
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
            Self::OrderNotFound | Self::RouteNotFound(_) => StatusCode::NOT_FOUND,
            Self::IllegalTransition(_) => StatusCode::CONFLICT,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Rejected { status, .. } => *status,
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
        ApiError::Unavailable(cause) => {
            log::warn!("answering 503 (request_id={request_id}): {cause}")
        }
        ApiError::Internal(cause) => {
            log::error!("answering {status} (request_id={request_id}): {cause}")
        }
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
