//! Probes: `/health` (the process and its database in one answer), and the pair that load
//! balancers and orchestrators use, `/health/live` (the process serves) and `/health/ready`
//! (send me traffic).

use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::RETRY_AFTER_SECS;
use crate::actors::{CheckHealth, Executor};

/// Set once, when the instance is told to stop: from then on it reports itself not ready
/// while it still serves, so that load balancers stop sending before the listener closes.
#[derive(Debug, Default)]
pub struct Draining(AtomicBool);

impl Draining {
    pub fn begin(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub(super) fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Whether the service can reach its database.
#[derive(Serialize, ToSchema)]
pub struct HealthBody {
    #[schema(example = "healthy")]
    status: &'static str,
    #[schema(example = "up")]
    database: &'static str,
}

/// Whether this instance should get traffic.
#[derive(Serialize, ToSchema)]
pub struct ReadinessBody {
    /// `ready`, `not_ready` (the database does not answer) or `draining` (shutting down).
    #[schema(example = "ready")]
    status: &'static str,
    /// `up` or `down`; absent while draining, when the database is not asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "up")]
    database: Option<&'static str>,
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
pub async fn health(executor: web::Data<Executor>) -> HttpResponse {
    if database_answers(&executor).await {
        HttpResponse::Ok().json(HealthBody {
            status: "healthy",
            database: "up",
        })
    } else {
        unavailable().json(HealthBody {
            status: "unhealthy",
            database: "down",
        })
    }
}

/// Report that the process serves HTTP (`GET /health/live`), without asking the database: a
/// failing liveness probe gets an instance restarted, which would not bring a database back.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    responses((status = 200, description = "`{\"status\":\"alive\"}`")),
)]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "alive"}))
}

/// Report whether this instance should get traffic (`GET /health/ready`): 200 when the
/// database answers `SELECT 1`; 503 while it does not (answered at once during an outage) or
/// while the instance drains before stopping.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    responses(
        (status = 200, description = "`{\"status\":\"ready\",\"database\":\"up\"}`", body = ReadinessBody),
        (status = 503, description = "`{\"status\":\"not_ready\",\"database\":\"down\"}` or `{\"status\":\"draining\"}`, with `Retry-After`", body = ReadinessBody),
    ),
)]
pub async fn ready(executor: web::Data<Executor>, draining: web::Data<Draining>) -> HttpResponse {
    if draining.is_on() {
        return unavailable().json(ReadinessBody {
            status: "draining",
            database: None,
        });
    }
    if database_answers(&executor).await {
        HttpResponse::Ok().json(ReadinessBody {
            status: "ready",
            database: Some("up"),
        })
    } else {
        unavailable().json(ReadinessBody {
            status: "not_ready",
            database: Some("down"),
        })
    }
}

async fn database_answers(executor: &Executor) -> bool {
    match executor.send(CheckHealth).await {
        Ok(()) => true,
        Err(e) => {
            log::warn!("health check failed: {e}");
            false
        }
    }
}

fn unavailable() -> actix_web::HttpResponseBuilder {
    let mut response = HttpResponse::ServiceUnavailable();
    response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
    response
}
