use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::RETRY_AFTER_SECS;
use crate::actors::{CheckHealth, Executors};

/// Whether the service can reach its database.
#[derive(Serialize, ToSchema)]
pub struct HealthBody {
    #[schema(example = "healthy")]
    status: &'static str,
    #[schema(example = "up")]
    database: &'static str,
}

/// Report whether the database answers (`GET /health`): 200 when a pooled connection answers
/// `SELECT 1` in time, else 503.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses(
        (status = 200, description = "`{\"status\":\"healthy\",\"database\":\"up\"}`", body = HealthBody),
        (status = 503, description = "`{\"status\":\"unhealthy\",\"database\":\"down\"}`, with `Retry-After`", body = HealthBody),
    ),
)]
pub async fn health(executors: web::Data<Executors>) -> HttpResponse {
    match executors.send(CheckHealth).await {
        Ok(()) => HttpResponse::Ok().json(HealthBody {
            status: "healthy",
            database: "up",
        }),
        Err(e) => {
            log::warn!("health check failed: {e}");
            HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS))
                .json(HealthBody {
                    status: "unhealthy",
                    database: "down",
                })
        }
    }
}
