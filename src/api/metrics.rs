use actix_web::{web, HttpResponse};

use super::{ApiError, InternalError};
use crate::actors::Executors;
use crate::metrics::{self, Snapshot};

/// Every series in Prometheus' text format (`GET /metrics`). Open even with API keys, like
/// `/health`: it holds counts and timings, no order data, and a scraper should not need a key
/// that could also create orders.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4; docs/OPERATIONS.md lists the series",
            content_type = "text/plain", body = String),
        (status = 500, description = "A bug; the cause is in the log", body = super::error::ErrorBody),
    ),
)]
pub async fn metrics(executors: web::Data<Executors>) -> Result<HttpResponse, ApiError> {
    let now = Snapshot {
        pool: executors.pool_states().into_iter().collect(),
        mailbox_depths: executors.mailbox_depths(),
        executor_restarts: executors.restarts(),
    };
    let text = metrics::render(&now).map_err(|e| ApiError::Internal(InternalError::Metrics(e)))?;
    Ok(HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(text))
}
