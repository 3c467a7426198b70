//! What every request leaves behind for operators: its id (`X-Request-Id`, echoed and quoted in
//! error bodies), one access-log line, its count and latency in the metrics, and, with traces
//! on, its server span, which continues the caller's `traceparent`. And, since it sees every
//! answer, the one thing a draining instance tells every client: `Connection: close`.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::HeaderValue;
use actix_web::http::{ConnectionType, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use log::Level;
use opentelemetry::trace::{FutureExt, Span, SpanKind, Status, TraceContextExt, TraceId};
use opentelemetry::KeyValue;

use super::error::identify;
use super::headers::X_REQUEST_ID;
use super::health::Draining;
use crate::domain::RequestId;
use crate::metrics;
use crate::traces::{self, TraceContext, Traces};

/// The `route` label of requests that matched no route: a fixed value, because raw paths would
/// make one series per path anyone cares to send.
const UNMATCHED: &str = "unmatched";

/// Routes that machines poll all day: their access lines are at debug level, not info.
const QUIET_ROUTES: [&str; 2] = ["/health", "/metrics"];

/// Middleware around the whole application (outermost, so that it sees every answer, including
/// those of the other middleware). `traces` is none when traces are off.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    traces: Option<Traces>,
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
    let span = traces.map(|traces| server_span(&traces, &req, method));
    // The request's span is OpenTelemetry's current context wherever its handler runs, so the
    // messages it sends carry it to the executors.
    let answer = match &span {
        Some(span) => next.call(req).with_context(span.clone()).await,
        None => next.call(req).await,
    };
    match answer {
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
            let trace = span.map(|span| end(span, method, route.as_deref(), response.status()));
            record(
                method,
                route.as_deref(),
                &path,
                response.status(),
                started,
                &id,
                trace,
            );
            Ok(ServiceResponse::new(request, response))
        }
        // No layer of ours answers with an error instead of a response, but should one do so,
        // its answer is finished here and handed to actix to send.
        Err(error) => {
            let response = tag(identify(HttpResponse::from_error(error), &id), &id);
            let trace = span.map(|span| end(span, method, None, response.status()));
            record(method, None, &path, response.status(), started, &id, trace);
            Err(InternalError::from_response("request failed", response).into())
        }
    }
}

fn tag(mut response: HttpResponse, id: &RequestId) -> HttpResponse {
    let value = HeaderValue::from_str(id.as_str()).expect("request ids are visible ASCII");
    response.headers_mut().insert(X_REQUEST_ID, value);
    response
}

/// The server span of a request, under the caller's trace if it sent one; named for its method
/// until its route is known.
fn server_span(traces: &Traces, req: &ServiceRequest, method: &'static str) -> TraceContext {
    let parent = traces.extract(req.headers());
    let mut span = traces.span(method, SpanKind::Server, &parent);
    // An unsampled span keeps nothing: no attribute is made for it.
    if span.is_recording() {
        span.set_attribute(KeyValue::new("http.request.method", method));
        span.set_attribute(KeyValue::new("url.path", req.path().to_owned()));
    }
    traces::context_of(&parent, span)
}

/// Ends the request's span with what it came to; answers its trace id for the access log.
fn end(span: TraceContext, method: &str, route: Option<&str>, status: StatusCode) -> TraceId {
    let span = span.span();
    if span.is_recording() {
        if let Some(route) = route {
            span.update_name(format!("{method} {route}"));
            span.set_attribute(KeyValue::new("http.route", route.to_owned()));
        }
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
        // A client's error is the client's: only 5xx mark the server span as failed.
        if status.is_server_error() {
            span.set_status(Status::error(status.as_str().to_owned()));
        }
    }
    span.end();
    span.span_context().trace_id()
}

/// The request's metrics and its access-log line, with its trace id when traces are on.
fn record(
    method: &str,
    route: Option<&str>,
    path: &str,
    status: StatusCode,
    started: Instant,
    id: &RequestId,
    trace: Option<TraceId>,
) {
    let elapsed = started.elapsed();
    let route = route.unwrap_or(UNMATCHED);
    metrics::http_request(method, route, status.as_str(), elapsed);
    let level = if QUIET_ROUTES.contains(&route) {
        Level::Debug
    } else {
        Level::Info
    };
    let (status, millis) = (status.as_u16(), elapsed.as_secs_f64() * 1000.0);
    match trace {
        None => log::log!(
            level,
            "{method} {path} {status} {millis:.2}ms request_id={id}"
        ),
        Some(trace) => log::log!(
            level,
            "{method} {path} {status} {millis:.2}ms request_id={id} trace_id={trace}"
        ),
    }
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
