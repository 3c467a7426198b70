use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{web, HttpRequest, HttpResponse};

use super::health::health;
use super::orders::{create_order, get_order, list_orders, update_status};
use super::ApiError;

/// Largest accepted request body: 100 items with long names fit with room to spare.
const BODY_LIMIT: usize = 64 * 1024;

/// All routes of the service, with their extractors' errors mapped to `ApiError`.
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
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/orders")
            .route(web::get().to(list_orders))
            .route(web::post().to(create_order))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/orders/{id}")
            .route(web::get().to(get_order))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/orders/{id}/status")
            .route(web::put().to(update_status))
            .default_service(web::to(method_not_allowed)),
    )
    .default_service(web::to(route_not_found));
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(req.method().to_string()))
}

async fn route_not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound(req.path().to_owned()))
}

fn json_error(error: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    match error {
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::PayloadTooLarge(limit),
        JsonPayloadError::Deserialize(e) => {
            ApiError::bad_request("invalid_json", format!("invalid JSON body: {e}"))
        }
        other => ApiError::bad_request(
            "invalid_body",
            format!("could not read the request body: {other}"),
        ),
    }
    .into()
}

fn query_error(error: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request("invalid_query", format!("invalid query string: {error}")).into()
}

fn path_error(error: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request("invalid_path", format!("invalid path: {error}")).into()
}
