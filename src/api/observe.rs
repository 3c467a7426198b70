//! What every request leaves behind for operators: its id (`X-Request-Id`, echoed and quoted in
//! error bodies), one access-log line, and its count and latency in the metrics. And, since it
//! sees every answer, the one thing a draining instance tells every client: `Connection: close`.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::HeaderValue;
use actix_web::http::{ConnectionType, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use log::Level;

use super::error::identify;
use super::headers::X_REQUEST_ID;
use super::health::Draining;
use crate::domain::RequestId;
use crate::metrics;

/// The `route` label of requests that matched no route: a fixed value, because raw paths would
/// make one series per path anyone cares to send.
const UNMATCHED: &str = "unmatched";

/// Routes that machines poll all day: their access lines are at debug level, not info.
const QUIET_ROUTES: [&str; 2] = ["/health", "/metrics"];

/// Middleware around the whole application (outermost, so that it sees every answer, including
/// those of the other middleware).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse, actix_web::Error> {
    let started = Instant::now();
    // A bad id is replaced rather than refused: tracing must never fail a request.
    let id = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .and_then(RequestId::parse)
        .unwrap_or_else(RequestId::generate);
    let method = method_label(req.method());
    let path = req.path().to_owned();
    let draining = req
        .app_data::<web::Data<Draining>>()
        .is_some_and(|draining| draining.is_on());
    match next.call(req).await {
        Ok(response) => {
            let (request, response) = response.map_into_boxed_body().into_parts();
            let mut response = tag(identify(response, &id), &id);
            if draining {
                // So that clients and proxies that keep connections open reconnect, and land
                // on an instance that is staying.
                response
                    .head_mut()
                    .set_connection_type(ConnectionType::Close);
            }
            let route = request.match_pattern();
            record(
                method,
                route.as_deref(),
                &path,
                response.status(),
                started,
                &id,
            );
            Ok(ServiceResponse::new(request, response))
        }
        // No layer of ours answers with an error instead of a response, but should one do so,
        // its answer is finished here and handed to actix to send.
        Err(error) => {
            let response = tag(identify(HttpResponse::from_error(error), &id), &id);
            record(method, None, &path, response.status(), started, &id);
            Err(InternalError::from_response("request failed", response).into())
        }
    }
}

fn tag(mut response: HttpResponse, id: &RequestId) -> HttpResponse {
    let value = HeaderValue::from_str(id.as_str()).expect("request ids are visible ASCII");
    response.headers_mut().insert(X_REQUEST_ID, value);
    response
}

/// The request's metrics and its access-log line.
fn record(
    method: &str,
    route: Option<&str>,
    path: &str,
    status: StatusCode,
    started: Instant,
    id: &RequestId,
) {
    let elapsed = started.elapsed();
    let route = route.unwrap_or(UNMATCHED);
    metrics::http_request(method, route, status.as_str(), elapsed);
    let level = if QUIET_ROUTES.contains(&route) {
        Level::Debug
    } else {
        Level::Info
    };
    log::log!(
        level,
        "{method} {path} {} {:.2}ms request_id={id}",
        status.as_u16(),
        elapsed.as_secs_f64() * 1000.0
    );
}

/// The method as a label: the standard ones by name, anything a client invents as `other`.
fn method_label(method: &Method) -> &'static str {
    static KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or("other", |known| known.as_str())
}
