use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::require_api_key;
use super::error::ErrorCode;
use super::events::{event_deliveries, list_events, stream_events};
use super::health::{health, live, ready};
use super::json::is_not_json;
use super::metrics::metrics;
use super::openapi::{docs, openapi_json, DOCS_PATH, OPENAPI_PATH};
use super::orders::{create_order, get_order, list_orders, order_history, update_status};
use super::ApiError;
use crate::domain::ValidationErrors;

/// Largest accepted request body: 100 items with long names fit with room to spare.
const BODY_LIMIT: usize = 64 * 1024;

/// All routes of the service, with their extractors' errors mapped to `ApiError`. Everything
/// under `/api/v1` needs an API key when keys are configured, except the OpenAPI document,
/// which is registered first so that it stays readable. The `/health` probes and `/metrics`
/// are open.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(BODY_LIMIT)
            .error_handler(json_error),
    )
    .app_data(web::QueryConfig::default().error_handler(query_error))
    .app_data(web::PathConfig::default().error_handler(path_error))
    .service(
        web::resource("/health")
            .route(web::get().to(health))
            .route(web::head().to(health))
            .default_service(only("GET, HEAD")),
    )
    .service(
        web::resource("/health/live")
            .route(web::get().to(live))
            .route(web::head().to(live))
            .default_service(only("GET, HEAD")),
    )
    .service(
        web::resource("/health/ready")
            .route(web::get().to(ready))
            .route(web::head().to(ready))
            .default_service(only("GET, HEAD")),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(metrics))
            .route(web::head().to(metrics))
            .default_service(only("GET, HEAD")),
    )
    .service(
        web::resource(OPENAPI_PATH)
            .route(web::get().to(openapi_json))
            .route(web::head().to(openapi_json))
            .default_service(only("GET, HEAD")),
    )
    .service(web::redirect(DOCS_PATH, format!("{DOCS_PATH}/")).permanent())
    .service(docs())
    .service(
        web::scope("/api/v1")
            .wrap(from_fn(require_api_key))
            .service(
                web::resource("/orders")
                    .route(web::get().to(list_orders))
                    .route(web::head().to(list_orders))
                    .route(web::post().to(create_order))
                    .default_service(only("GET, HEAD, POST")),
            )
            .service(
                web::resource("/orders/{id}")
                    .route(web::get().to(get_order))
                    .route(web::head().to(get_order))
                    .default_service(only("GET, HEAD")),
            )
            .service(
                web::resource("/orders/{id}/status")
                    .route(web::put().to(update_status))
                    .default_service(only("PUT")),
            )
            .service(
                web::resource("/events")
                    .route(web::get().to(list_events))
                    .route(web::head().to(list_events))
                    .default_service(only("GET, HEAD")),
            )
            .service(
                web::resource("/events/stream")
                    .route(web::get().to(stream_events))
                    .default_service(only("GET")),
            )
            .service(
                web::resource("/events/{id}/deliveries")
                    .route(web::get().to(event_deliveries))
                    .route(web::head().to(event_deliveries))
                    .default_service(only("GET, HEAD")),
            )
            .service(
                web::resource("/orders/{id}/history")
                    .route(web::get().to(order_history))
                    .route(web::head().to(order_history))
                    .default_service(only("GET, HEAD")),
            ),
    )
    .default_service(web::to(route_not_found));
}

/// The fallback of a resource: 405 naming the methods it does have.
fn only(allow: &'static str) -> actix_web::Route {
    web::to(move |req: HttpRequest| async move {
        Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            allow,
        })
    })
}

async fn route_not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound(req.path().to_owned()))
}

fn json_error(error: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    match error {
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::PayloadTooLarge(limit),
        JsonPayloadError::Payload(PayloadError::Io(e))
            if e.kind() == std::io::ErrorKind::TimedOut =>
        {
            ApiError::RequestTimeout
        }
        // Every field is read leniently (`json::Field`), so well-formed JSON fails here only
        // when the body as a whole has the wrong shape (not an object, a duplicated field).
        JsonPayloadError::Deserialize(e) if !is_not_json(&e) => {
            ValidationErrors::single("body", e.to_string()).into()
        }
        JsonPayloadError::Deserialize(e) => {
            ApiError::bad_request(ErrorCode::InvalidJson, format!("invalid JSON body: {e}"))
        }
        other => ApiError::bad_request(
            ErrorCode::InvalidBody,
            format!("could not read the request body: {other}"),
        ),
    }
    .into()
}

fn query_error(error: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(
        ErrorCode::InvalidQuery,
        format!("invalid query string: {error}"),
    )
    .into()
}

fn path_error(error: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(ErrorCode::InvalidPath, format!("invalid path: {error}")).into()
}
