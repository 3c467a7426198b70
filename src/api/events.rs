//! The event feed: pages of events oldest first (`GET /api/v1/events`), optionally held open
//! until an event arrives, and the same events as Server-Sent Events (`/api/v1/events/stream`).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use actix_web::http::header::{self, CacheControl, CacheDirective, ContentEncoding};
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use utoipa::ToSchema;

use super::error::{ErrorBody, ErrorCode};
use super::params::reject_unknown_parameters;
use super::{ApiError, InternalError};
use crate::actors::{Executor, GetDeliveries, ListEvents};
use crate::domain::{
    parse_event_types, parse_wait, DeliveryReport, Event, EventId, EventPosition, EventType,
    EventsRequest, PageLimit, ValidationErrors,
};

/// Changes whenever a transaction that wrote events commits: at once for this instance's
/// (`actors::Relay`), through `NOTIFY` for the others' (`actors::listen_for_events`).
#[derive(Clone)]
pub struct EventSignal(pub watch::Receiver<()>);

/// While committed events wait behind a transaction that is still running, how soon to look
/// again: such transactions are short, and their end sends no notification of its own.
const HELD_BACK_RECHECK: Duration = Duration::from_millis(20);
/// How often an idle stream sends a comment line, so that proxies keep the connection open.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);
/// Events per message of the stream.
const STREAM_BATCH: &str = "100";

const FEED_PARAMETERS: [&str; 4] = ["after", "limit", "type", "wait"];
const STREAM_PARAMETERS: [&str; 2] = ["after", "type"];

#[derive(Deserialize)]
pub struct FeedQuery {
    after: Option<String>,
    limit: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    wait: Option<String>,
}

/// Events oldest first, and where to continue.
#[derive(Serialize, ToSchema)]
pub struct EventPageResponse {
    events: Vec<Event>,
    /// Pass it as `after` for the events that follow: the last event's cursor, or the `after`
    /// sent when the page is empty (`null` only when nothing was ever handed out).
    #[schema(required = true, example = "7342-1051")]
    next_cursor: Option<String>,
}

fn position(after: Option<&str>) -> Result<EventPosition, ApiError> {
    after
        .map(EventPosition::parse)
        .transpose()
        .map(Option::unwrap_or_default)
        .map_err(|message| ApiError::bad_request(ErrorCode::InvalidCursor, message))
}

fn event_types(kind: Option<&str>) -> Result<Vec<EventType>, ApiError> {
    parse_event_types(kind).map_err(|message| ValidationErrors::single("type", message).into())
}

/// Read the events that follow a cursor, oldest first (`GET /api/v1/events`).
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    params(
        ("after" = Option<String>, Query, description = "A `cursor` (or `next_cursor`) already read; from the first event when absent", example = "7342-1051"),
        ("limit" = Option<i64>, Query, description = "Events per page", minimum = 1, maximum = 100, example = 10),
        ("type" = Option<String>, Query, description = "Only these event types, comma-separated", example = "order.status_changed"),
        ("wait" = Option<i64>, Query, description = "Seconds to hold the request when no event follows `after`, answering as soon as one is committed", minimum = 0, maximum = 30),
    ),
    responses(
        (status = 200, description = "Oldest first. An event is handed out once no transaction that began before it can still commit, so a reader that has seen up to a cursor never misses an event behind it", body = EventPageResponse),
        (status = 400, description = "A bad `after` (`invalid_cursor`), `limit` (`invalid_limit`), `type` or `wait` (`validation_failed`), or an unknown parameter (`unknown_parameter`)", body = ErrorBody),
    ),
)]
pub async fn list_events(
    executor: web::Data<Executor>,
    signal: web::Data<EventSignal>,
    http: HttpRequest,
    query: web::Query<FeedQuery>,
) -> Result<HttpResponse, ApiError> {
    reject_unknown_parameters(http.query_string(), &FEED_PARAMETERS)?;
    let request = EventsRequest {
        after: position(query.after.as_deref())?,
        limit: PageLimit::parse(query.limit.as_deref())
            .map_err(|message| ApiError::bad_request(ErrorCode::InvalidLimit, message))?,
        types: event_types(query.kind.as_deref())?,
    };
    let wait = parse_wait(query.wait.as_deref())
        .map_err(|message| ApiError::from(ValidationErrors::single("wait", message)))?;
    let events = next_events(&executor, &signal, &request, wait).await?;
    let next_cursor = events
        .last()
        .map(|event| event.cursor)
        .or(query.after.is_some().then_some(request.after))
        .map(|cursor| cursor.to_string());
    Ok(HttpResponse::Ok().json(EventPageResponse {
        events,
        next_cursor,
    }))
}

/// The events after `request.after`; when there are none, waits up to `wait` for a commit that
/// brings some.
async fn next_events(
    executor: &Executor,
    signal: &EventSignal,
    request: &EventsRequest,
    wait: Duration,
) -> Result<Vec<Event>, ApiError> {
    let deadline = Instant::now() + wait;
    let mut woken = signal.0.clone();
    loop {
        // Marked before the query, so that a commit between the query and the wait still wakes.
        woken.mark_unchanged();
        let page = executor
            .send(ListEvents {
                request: request.clone(),
                waiting: Instant::now() < deadline,
            })
            .await?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if !page.events.is_empty() || remaining.is_zero() {
            return Ok(page.events);
        }
        if page.held_back {
            tokio::time::sleep(HELD_BACK_RECHECK.min(remaining)).await;
        } else if let Ok(Err(_)) = tokio::time::timeout(remaining, woken.changed()).await {
            // The listener is gone: nothing will wake this request before its wait is over.
            tokio::time::sleep(remaining).await;
        }
    }
}

#[derive(Deserialize)]
pub struct StreamQuery {
    after: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// The feed as Server-Sent Events (`GET /api/v1/events/stream`).
///
/// Each event is one message: `id:` its cursor, `event:` its type, `data:` the event's JSON.
/// A reconnecting client sends the last `id:` it saw as `Last-Event-ID` and resumes right
/// after it.
#[utoipa::path(
    get,
    path = "/api/v1/events/stream",
    tag = "events",
    params(
        ("after" = Option<String>, Query, description = "Start after this cursor; `Last-Event-ID` wins when both are sent"),
        ("type" = Option<String>, Query, description = "Only these event types, comma-separated"),
        ("Last-Event-ID" = Option<String>, Header, description = "The last `id:` received, sent by a reconnecting client"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`, open until the client leaves; a comment line every 15 s while idle", content_type = "text/event-stream", body = String),
        (status = 400, description = "A bad cursor (`invalid_cursor`) or type (`validation_failed`), or an unknown parameter (`unknown_parameter`)", body = ErrorBody),
    ),
)]
pub async fn stream_events(
    executor: web::Data<Executor>,
    signal: web::Data<EventSignal>,
    http: HttpRequest,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    reject_unknown_parameters(http.query_string(), &STREAM_PARAMETERS)?;
    let last_seen = http
        .headers()
        .get("last-event-id")
        .map(|value| value.to_str().unwrap_or("<not text>").to_owned());
    let request = EventsRequest {
        after: position(last_seen.as_deref().or(query.after.as_deref()))?,
        limit: PageLimit::parse(Some(STREAM_BATCH)).map_err(|message| {
            ApiError::Internal(InternalError::Other(format!(
                "stream batch size: {message}"
            )))
        })?,
        types: event_types(query.kind.as_deref())?,
    };
    let stream =
        futures_util::stream::unfold(Some((executor, signal, request)), |state| async move {
            let (executor, signal, mut request) = state?;
            match next_events(&executor, &signal, &request, KEEP_ALIVE_EVERY).await {
                Ok(events) => {
                    let message = match events.last() {
                        None => ": keep-alive\n\n".to_owned(),
                        Some(last) => {
                            request.after = last.cursor;
                            sse_messages(&events)
                        }
                    };
                    let next = Some((executor, signal, request));
                    Some((Ok::<_, actix_web::Error>(Bytes::from(message)), next))
                }
                // The client reconnects with Last-Event-ID and resumes where it was.
                Err(e) => {
                    log::warn!("event stream ended: {e}");
                    Some((
                        Ok(Bytes::from_static(
                            b"event: error\ndata: {\"code\":\"service_unavailable\"}\n\n",
                        )),
                        None,
                    ))
                }
            }
        });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        // Compressed, events would wait in the encoder's buffer.
        .insert_header(ContentEncoding::Identity)
        .insert_header((header::HeaderName::from_static("x-accel-buffering"), "no"))
        .streaming(
            futures_util::stream::once(async {
                Ok::<_, actix_web::Error>(Bytes::from_static(b"retry: 1000\n\n"))
            })
            .chain(stream),
        ))
}

/// Events as SSE messages. JSON has no raw newlines, so each event's data is one line.
fn sse_messages(events: &[Event]) -> String {
    let mut text = String::new();
    for event in events {
        let data = serde_json::to_string(event).unwrap_or_else(|e| {
            log::error!("cannot write event {} as JSON: {e}", event.id);
            "null".into()
        });
        let _ = write!(
            text,
            "id: {}\nevent: {}\ndata: {data}\n\n",
            event.cursor,
            event.kind.as_str()
        );
    }
    text
}

/// How the webhook deliveries of one event stand (`GET /api/v1/events/{id}/deliveries`).
#[derive(Serialize, ToSchema)]
pub struct DeliveriesResponse {
    event_id: EventId,
    /// One per webhook URL configured when the event was written; empty without webhooks.
    deliveries: Vec<DeliveryReport>,
}

/// Show an event's webhook deliveries: state, attempts, the last failure's answer and when
/// the next attempt is due (`GET /api/v1/events/{id}/deliveries`).
#[utoipa::path(
    get,
    path = "/api/v1/events/{id}/deliveries",
    tag = "events",
    params(("id" = i64, Path, description = "The event's `id`", minimum = 1)),
    responses(
        (status = 200, description = "One entry per webhook URL", body = DeliveriesResponse),
        (status = 400, description = "The id is not a positive 64-bit integer (`invalid_id`)", body = ErrorBody),
        (status = 404, description = "No such event (`event_not_found`), perhaps purged after EVENTS_RETENTION", body = ErrorBody),
    ),
)]
pub async fn event_deliveries(
    executor: web::Data<Executor>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let event_id = EventId::parse(&id)
        .map_err(|message| ApiError::bad_request(ErrorCode::InvalidId, message))?;
    let deliveries = executor
        .send(GetDeliveries(event_id))
        .await?
        .ok_or(ApiError::EventNotFound)?;
    Ok(HttpResponse::Ok().json(DeliveriesResponse {
        event_id,
        deliveries,
    }))
}
