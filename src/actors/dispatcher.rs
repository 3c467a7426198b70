//! The webhook dispatcher: one per instance, beside the executors and independent of them. It
//! POSTs each event signed to each URL, and records the outcome: delivered on 2xx, else retried
//! on the schedule and finally failed.
//!
//! First attempts come from memory: the executors hand over the events they commit, whose
//! delivery rows were written leased to this instance (`Relay`). Everything else (retries,
//! first attempts another instance could not make, handoffs that came too late) is claimed from
//! the table once due.
//!
//! It has a database connection of its own and never sends to the executors, so a slow or
//! dead receiver cannot take a pooled connection or a mailbox slot from the API; at most
//! `MAX_IN_FLIGHT` requests are open at once, each bounded by the timeout. On shutdown it stops
//! claiming and finishes what it sent, so that a restart does not send again what was delivered.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::AsyncPgConnection;
use opentelemetry::trace::{Span, SpanKind, Status, TraceContextExt};
use opentelemetry::KeyValue;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinError, JoinSet};

use crate::db::{
    claim_deliveries, connect_dispatcher, next_delivery_due_in, oldest_pending_delivery_age,
    record_delivered, record_failed_attempt, ConnectOptions, StoreError,
};
use crate::domain::{webhook_signature, Event, EventId, RetrySchedule, WebhookSecret};
use crate::error_chain::error_chain;
use crate::metrics;
use crate::traces::{self, TraceContext, Traces};

/// Requests open at once per instance.
const MAX_IN_FLIGHT: usize = 64;
/// Outcomes are recorded together, once this many have come in or the first of them has waited
/// this long: one statement per outcome cost PostgreSQL more than the rest of a delivery. (An
/// outcome lost in a crash meanwhile means one more attempt.)
const RECORD_AT: usize = MAX_IN_FLIGHT;
const RECORD_WITHIN: Duration = Duration::from_millis(20);
/// A claim outlasts the request's timeout by this much, which covers recording the outcome;
/// only a claim whose instance stopped or lost the database runs out.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// A handed-over event is sent only if this little of its lease has gone (the lease runs from
/// its transaction's start), so that the lease outlasts the attempt and the recording of its
/// outcome; later ones are left for the claims once their leases run out. Less than
/// `LEASE_MARGIN` by the time recording may take.
const HANDOFF_USABLE_FOR: Duration = Duration::from_secs(3);
/// Looks for due deliveries at least this often: retries fall due, and leases run out, without
/// anything telling this instance.
const IDLE_LOOK: Duration = Duration::from_secs(1);
/// How long to wait before connecting again after the database failed us.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);
/// How often the age of the oldest pending delivery is measured for `/metrics`: the query reads
/// every pending delivery, so not at every look.
const MEASURE_BACKLOG_EVERY: Duration = Duration::from_secs(10);
/// What a failed attempt got is recorded cut to this many characters.
const MAX_ERROR_CHARS: usize = 500;

/// Webhook deliveries: every order event is POSTed, signed, to each URL.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// At least one.
    pub urls: Vec<String>,
    pub secret: WebhookSecret,
    /// How long one request may take, from connecting to the response's status.
    pub timeout: Duration,
    /// The waits between attempts of a failing delivery; after the last, it is failed.
    pub retries: RetrySchedule,
}

/// Events that have just committed, for the dispatcher of the instance that wrote them.
pub struct Handoff {
    pub events: Vec<Event>,
    /// The URLs each event has a delivery row for.
    pub urls: Arc<[String]>,
    /// When the transaction that wrote them began, or a little before: their deliveries'
    /// leases run from the transaction's `now()`, so from no earlier than this.
    pub leased_from: Instant,
}

/// The dispatcher's end of the handoffs.
pub type Handoffs = mpsc::Receiver<Handoff>;

/// How long a delivery belongs to the dispatcher that claimed it (or to the instance that wrote
/// it), for requests that may take `timeout`.
pub(super) fn delivery_lease(timeout: Duration) -> Duration {
    timeout + LEASE_MARGIN
}

/// One attempt to make: the event as JSON, to one URL.
struct Outgoing {
    event_id: EventId,
    url: String,
    /// This attempt's number, the first being 1.
    attempt: u32,
    body: String,
    /// The trace its event continues, when its request was sampled.
    traceparent: Option<String>,
}

/// How one attempt went: `error` is `None` on a 2xx answer.
struct Attempt {
    event_id: EventId,
    url: String,
    number: u32,
    error: Option<String>,
}

/// Starts the dispatcher on the current runtime. `handoffs` brings the events this instance
/// commits, whose first attempts are leased to it. It runs until `stop` is called on the handle,
/// or the handle is dropped.
pub fn start_dispatcher(
    database: ConnectOptions,
    settings: WebhookSettings,
    handoffs: Handoffs,
    traces: Option<Traces>,
) -> Option<DispatcherHandle> {
    let client = match reqwest::Client::builder()
        .timeout(settings.timeout)
        // A redirect is not a 2xx: retried, never followed to a URL nobody configured.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("ordersvc-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            log::error!("webhooks: cannot build the HTTP client ({e}); no deliveries");
            return None;
        }
    };
    let lease = delivery_lease(settings.timeout);
    let dispatcher = Dispatcher {
        database,
        settings,
        client,
        traces,
        conn: None,
        handoffs,
        handed: VecDeque::new(),
        in_flight: JoinSet::new(),
        unrecorded: Vec::new(),
        unrecorded_since: None,
        look_at: Instant::now(),
        backlog_measured_at: None,
    };
    let (stop, stopped) = oneshot::channel();
    Some(DispatcherHandle {
        stop,
        finished: actix_web::rt::spawn(dispatcher.run(stopped)),
        lease,
    })
}

pub struct DispatcherHandle {
    stop: oneshot::Sender<()>,
    finished: tokio::task::JoinHandle<()>,
    lease: Duration,
}

impl DispatcherHandle {
    /// Stops claiming, and waits for the requests in flight to be answered and their outcomes
    /// recorded: a delivery that was answered 2xx but not recorded would be sent again after
    /// the restart. Waits at most a lease (the database may be gone); what is left then is
    /// sent again when its lease runs out, as are the handed-over events not yet sent.
    pub async fn stop(self) {
        // An error means the dispatcher has already ended.
        let _ = self.stop.send(());
        if tokio::time::timeout(self.lease, self.finished)
            .await
            .is_err()
        {
            log::warn!("webhooks: stopped with outcomes unrecorded; those are sent again");
        }
    }
}

struct Dispatcher {
    database: ConnectOptions,
    settings: WebhookSettings,
    client: reqwest::Client,
    /// With traces on, each attempt of a traced event is a client span of its trace.
    traces: Option<Traces>,
    conn: Option<AsyncPgConnection>,
    handoffs: Handoffs,
    /// Attempts handed over and not yet started, each with the moment it must start by.
    handed: VecDeque<(Instant, Outgoing)>,
    in_flight: JoinSet<Attempt>,
    /// Outcomes not recorded yet, and since when the first of them waits.
    unrecorded: Vec<Attempt>,
    unrecorded_since: Option<Instant>,
    /// When to claim due deliveries next.
    look_at: Instant,
    backlog_measured_at: Option<Instant>,
}

/// What woke the dispatcher.
enum Wake {
    Finished(Result<Attempt, JoinError>),
    Handed(Handoff),
    Time,
    Stop,
}

impl Dispatcher {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut stopping = false;
        let mut reconnect_at: Option<Instant> = None;
        loop {
            if reconnect_at.is_none_or(|at| at <= Instant::now()) {
                reconnect_at = None;
                if let Err(e) = self.step(!stopping).await {
                    log::warn!("webhooks: {e}; trying again in {RECONNECT_AFTER:?}");
                    self.conn = None;
                    reconnect_at = Some(Instant::now() + RECONNECT_AFTER);
                }
            }
            if stopping && self.in_flight.is_empty() && self.unrecorded.is_empty() {
                return;
            }
            let room = self.room() > 0 && !stopping;
            // Woken at a time only when there is something to do then: while every slot is
            // taken, a finished attempt is what matters.
            let wake_at = reconnect_at.or_else(|| {
                let record_at = self.unrecorded_since.map(|since| since + RECORD_WITHIN);
                let look_at = room.then_some(self.look_at);
                record_at.into_iter().chain(look_at).min()
            });
            let woken = tokio::select! {
                Some(finished) = self.in_flight.join_next() => Wake::Finished(finished),
                Some(handoff) = self.handoffs.recv(), if room && self.handed.is_empty() => {
                    Wake::Handed(handoff)
                }
                () = sleep_until(wake_at), if wake_at.is_some() => Wake::Time,
                _ = &mut stop, if !stopping => Wake::Stop,
            };
            match woken {
                Wake::Finished(finished) => {
                    self.finished(finished);
                    while let Some(finished) = self.in_flight.try_join_next() {
                        self.finished(finished);
                    }
                }
                Wake::Handed(handoff) => self.hand(handoff),
                Wake::Time => {}
                Wake::Stop => stopping = true,
            }
        }
    }

    fn room(&self) -> usize {
        MAX_IN_FLIGHT - self.in_flight.len()
    }

    fn finished(&mut self, finished: Result<Attempt, JoinError>) {
        match finished {
            Ok(attempt) => {
                self.unrecorded.push(attempt);
                self.unrecorded_since.get_or_insert_with(Instant::now);
            }
            // Its lease runs out and the delivery is tried again.
            Err(e) => log::error!("webhooks: a delivery task failed: {e}"),
        }
    }

    /// Queues a handoff's events, one attempt per URL.
    fn hand(&mut self, handoff: Handoff) {
        let start_by = handoff.leased_from + HANDOFF_USABLE_FOR;
        for event in handoff.events {
            let Some(body) = body_of(&event) else {
                continue;
            };
            for url in handoff.urls.iter() {
                let outgoing = Outgoing {
                    event_id: event.id,
                    url: url.clone(),
                    attempt: 1,
                    body: body.clone(),
                    traceparent: event.traceparent.clone(),
                };
                self.handed.push_back((start_by, outgoing));
            }
        }
    }

    /// Records finished attempts when it is time (always when not `sending`); then, when
    /// `sending`, starts handed-over attempts, and claims due deliveries when it is time, as
    /// many as there is room for.
    async fn step(&mut self, sending: bool) -> Result<(), StoreError> {
        let record_due = self.unrecorded_since.is_some_and(|since| {
            !sending || self.unrecorded.len() >= RECORD_AT || since.elapsed() >= RECORD_WITHIN
        });
        if record_due {
            self.record().await?;
        }
        if !sending {
            return Ok(());
        }
        self.start_handed();
        if self.room() > 0 && self.look_at <= Instant::now() {
            self.claim().await?;
        }
        Ok(())
    }

    async fn record(&mut self) -> Result<(), StoreError> {
        let conn = connection(&mut self.conn, &self.database).await?;
        record_outcomes(conn, &self.unrecorded, &self.settings.retries)
            .await
            .map_err(|e| e.on_connection(conn))?;
        self.unrecorded.clear();
        self.unrecorded_since = None;
        Ok(())
    }

    /// Starts handed-over attempts while there is room.
    fn start_handed(&mut self) {
        while self.room() > 0 {
            if self.handed.is_empty() {
                match self.handoffs.try_recv() {
                    Ok(handoff) => self.hand(handoff),
                    Err(_) => return,
                }
            }
            let Some((start_by, outgoing)) = self.handed.pop_front() else {
                continue;
            };
            // Too late: left to its lease.
            if start_by >= Instant::now() {
                self.start(outgoing);
            }
        }
    }

    /// Claims due deliveries, as many as there is room for, and starts them; when fewer were
    /// due, sets when to look again.
    async fn claim(&mut self) -> Result<(), StoreError> {
        let room = self.room();
        let lease = delivery_lease(self.settings.timeout);
        let conn = connection(&mut self.conn, &self.database).await?;
        let claimed = claim_deliveries(conn, room, lease)
            .await
            .map_err(|e| e.on_connection(conn))?;
        // When full, more may be due: it looks again as soon as there is room.
        if claimed.len() < room {
            if self
                .backlog_measured_at
                .is_none_or(|at| at.elapsed() >= MEASURE_BACKLOG_EVERY)
            {
                let age = oldest_pending_delivery_age(conn)
                    .await
                    .map_err(|e| e.on_connection(conn))?;
                metrics::webhook_backlog_age(age.unwrap_or_default());
                self.backlog_measured_at = Some(Instant::now());
            }
            let due_in = next_delivery_due_in(conn)
                .await
                .map_err(|e| e.on_connection(conn))?;
            self.look_at =
                Instant::now() + due_in.map_or(IDLE_LOOK, |due_in| due_in.min(IDLE_LOOK));
        }
        for delivery in claimed {
            if let Some(body) = body_of(&delivery.event) {
                self.start(Outgoing {
                    event_id: delivery.event.id,
                    url: delivery.url,
                    attempt: delivery.attempt,
                    body,
                    traceparent: delivery.event.traceparent,
                });
            }
        }
        Ok(())
    }

    fn start(&mut self, outgoing: Outgoing) {
        let span = self.traces.as_ref().and_then(|traces| {
            let traceparent = outgoing.traceparent.as_deref()?;
            Some(attempt_span(traces, traceparent, &outgoing))
        });
        self.in_flight.spawn(send(
            self.client.clone(),
            self.settings.secret.clone(),
            outgoing,
            span,
        ));
    }
}

async fn connection<'a>(
    conn: &'a mut Option<AsyncPgConnection>,
    database: &ConnectOptions,
) -> Result<&'a mut AsyncPgConnection, StoreError> {
    match conn {
        Some(conn) => Ok(conn),
        None => Ok(conn.insert(connect_dispatcher(database).await?)),
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

/// The event as a webhook's body; `None` (and logged) if it cannot be written, which its
/// lease then retries.
fn body_of(event: &Event) -> Option<String> {
    serde_json::to_string(event)
        .inspect_err(|e| log::error!("webhooks: cannot serialise event {}: {e}", event.id))
        .ok()
}

/// Records outcomes: the delivered ones in one statement, each failure on its own (there are
/// few, and each gets a retry time of its own).
async fn record_outcomes(
    conn: &mut AsyncPgConnection,
    attempts: &[Attempt],
    retries: &RetrySchedule,
) -> Result<(), StoreError> {
    let delivered: Vec<(EventId, &str)> = attempts
        .iter()
        .filter(|attempt| attempt.error.is_none())
        .map(|attempt| (attempt.event_id, attempt.url.as_str()))
        .collect();
    record_delivered(conn, &delivered).await?;
    metrics::webhook_attempts("delivered", delivered.len());
    for attempt in attempts {
        let Some(error) = &attempt.error else {
            continue;
        };
        let retry_in = retries.after(attempt.number, rand::random());
        let recorded = record_failed_attempt(
            conn,
            attempt.event_id,
            &attempt.url,
            attempt.number,
            error,
            retry_in,
        )
        .await
        .map_err(|e| e.on_connection(conn));
        match recorded {
            Ok(()) => {}
            // The database is going away: the whole batch is recorded again once it is back.
            Err(e @ StoreError::Unavailable(_)) => return Err(e),
            // Refused: it would be refused again, and hold up every outcome after it for good.
            // Its delivery stays pending, so it goes out again when its lease runs out.
            Err(e) => {
                log::error!(
                    "webhooks: cannot record the failure of event {} to {} ({e}); it is sent \
                     again when its lease runs out",
                    attempt.event_id,
                    attempt.url
                );
                continue;
            }
        }
        metrics::webhook_attempts(
            if retry_in.is_some() {
                "retry"
            } else {
                "failed"
            },
            1,
        );
        if retry_in.is_none() {
            log::warn!(
                "webhooks: event {} to {} failed after {} attempts: {error}",
                attempt.event_id,
                attempt.url,
                attempt.number
            );
        }
    }
    Ok(())
}

/// What an answer other than 2xx says: "answered 503 Service Unavailable: " and the start of its
/// body, read no further than what is recorded (and within the request's timeout).
async fn refusal(mut response: reqwest::Response) -> String {
    let status = response.status();
    let mut body = Vec::new();
    // A character takes at most 4 bytes.
    while body.len() < 4 * MAX_ERROR_CHARS {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let said = String::from_utf8_lossy(&body);
    if said.chars().all(blank) {
        format!("answered {status}")
    } else {
        format!("answered {status}: {said}")
    }
}

/// An attempt's error as it is recorded: on one line, without control characters (PostgreSQL's
/// text takes no NUL, and a receiver's body may hold anything), cut to `MAX_ERROR_CHARS`.
fn recordable(error: &str) -> String {
    error
        .split(blank)
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_ERROR_CHARS)
        .collect()
}

/// What `recordable` leaves out of an error, but for single spaces between words.
fn blank(c: char) -> bool {
    c.is_whitespace() || c.is_control()
}

/// The client span of an attempt, in the trace of the request that made its event's change
/// (whose sampling it follows).
fn attempt_span(traces: &Traces, traceparent: &str, outgoing: &Outgoing) -> TraceContext {
    let parent = traces.continued(traceparent);
    let mut span = traces.span("POST", SpanKind::Client, &parent);
    span.set_attribute(KeyValue::new("http.request.method", "POST"));
    span.set_attribute(KeyValue::new("url.full", outgoing.url.clone()));
    span.set_attribute(KeyValue::new(
        "http.request.resend_count",
        i64::from(outgoing.attempt - 1),
    ));
    traces::context_of(&parent, span)
}

/// One attempt, signed with its own timestamp; with a span, it carries its `traceparent`.
async fn send(
    client: reqwest::Client,
    secret: WebhookSecret,
    outgoing: Outgoing,
    span: Option<TraceContext>,
) -> Attempt {
    let id = outgoing.event_id.to_string();
    let timestamp = chrono::Utc::now().timestamp();
    let signature = webhook_signature(&secret, &id, timestamp, &outgoing.body);
    let mut request = client
        .post(&outgoing.url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature);
    if let Some(span) = &span {
        request = request.header("traceparent", traces::traceparent(span));
    }
    let answer = request.body(outgoing.body).send().await;
    if let Some(span) = span {
        let span = span.span();
        match &answer {
            Ok(response) => {
                let status = response.status();
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status.as_u16()),
                ));
                if !status.is_success() {
                    span.set_status(Status::error(status.as_str().to_owned()));
                }
            }
            Err(e) => span.set_status(Status::error(e.to_string())),
        }
        span.end();
    }
    let error = match answer {
        Ok(response) if response.status().is_success() => None,
        Ok(response) => Some(refusal(response).await),
        Err(e) if e.is_timeout() => Some("no answer within the timeout".to_owned()),
        // reqwest's own text is only "error sending request"; the reason (a refused
        // connection, a bad certificate) is in its sources.
        Err(e) => Some(error_chain(&e)),
    };
    Attempt {
        event_id: outgoing.event_id,
        url: outgoing.url,
        number: outgoing.attempt,
        error: error.as_deref().map(recordable),
    }
}
