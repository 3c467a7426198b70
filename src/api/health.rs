use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::actors::{CheckHealth, Executors};

/// `GET /health`: 200 when a pooled connection answers `SELECT 1` in time, else 503.
pub async fn health(executors: web::Data<Executors>) -> HttpResponse {
    match executors.send(CheckHealth).await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "healthy", "database": "up"})),
        Err(e) => {
            log::warn!("health check failed: {e}");
            HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, "1"))
                .json(json!({"status": "unhealthy", "database": "down"}))
        }
    }
}
