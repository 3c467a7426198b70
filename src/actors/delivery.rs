//! The webhook dispatcher: one per instance, beside the executors and independent of them. It
//! claims due deliveries, POSTs each event signed to its URL, and records the outcome: delivered
//! on 2xx, else retried on the schedule and finally failed.
//!
//! It has a database connection of its own and never sends to the executors, so a slow or
//! dead receiver cannot take a pooled connection or a mailbox slot from the API; at most
//! `MAX_IN_FLIGHT` requests are open at once, each bounded by the timeout. On shutdown it stops
//! claiming and finishes what it sent, so that a restart does not send again what was delivered.

use std::time::{Duration, Instant};

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use crate::db::{
    claim_deliveries, error_chain, next_delivery_due_in, oldest_pending_delivery_age,
    record_delivered, record_failed_attempt, ConnectOptions, DueDelivery, StoreError,
};
use crate::domain::{webhook_signature, RetrySchedule, WebhookSecret};
use crate::metrics;

/// Requests open at once per instance.
const MAX_IN_FLIGHT: usize = 16;
/// A claim outlasts the request's timeout by this much, which covers recording the outcome;
/// only a claim whose instance stopped or lost the database runs out.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// Looks for due deliveries at least this often when no notification comes: retries fall due
/// without one, and another instance may have scheduled them.
const IDLE_LOOK: Duration = Duration::from_secs(1);
/// How long to wait before connecting again after the database failed us.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);
/// How often the age of the oldest pending delivery is measured for `/metrics`: the query reads
/// every pending delivery, so not at every look.
const MEASURE_BACKLOG_EVERY: Duration = Duration::from_secs(10);
/// The receiver's error as recorded in `last_error` is cut to this many characters.
const MAX_ERROR_CHARS: usize = 500;

/// What the dispatcher needs to send.
pub struct WebhookSettings {
    pub secret: WebhookSecret,
    /// How long one request may take, from connecting to the response's status.
    pub timeout: Duration,
    pub retries: RetrySchedule,
}

/// How one attempt went: `error` is `None` on a 2xx answer.
struct Attempt {
    event_id: i64,
    url: String,
    number: u32,
    error: Option<String>,
}

/// Starts the dispatcher on the current runtime. `events` changes when events commit, so new
/// deliveries go out at once rather than at the next look. It runs until `stop` is called on
/// the handle, or the handle is dropped.
pub fn start_dispatcher(
    database: ConnectOptions,
    settings: WebhookSettings,
    events: watch::Receiver<u64>,
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
    let lease = settings.timeout + LEASE_MARGIN;
    let dispatcher = Dispatcher {
        database,
        settings,
        client,
        conn: None,
        in_flight: JoinSet::new(),
        unrecorded: Vec::new(),
        backlog_measured_at: None,
    };
    let (stop, stopped) = oneshot::channel();
    Some(DispatcherHandle {
        stop,
        finished: actix_web::rt::spawn(dispatcher.run(events, stopped)),
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
    /// sent again when its lease runs out.
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
    conn: Option<AsyncPgConnection>,
    in_flight: JoinSet<Attempt>,
    /// Outcomes the database could not take yet; recorded before anything is claimed.
    unrecorded: Vec<Attempt>,
    backlog_measured_at: Option<Instant>,
}

impl Dispatcher {
    async fn run(mut self, mut events: watch::Receiver<u64>, mut stop: oneshot::Receiver<()>) {
        let mut stopping = false;
        let mut reconnect_at: Option<Instant> = None;
        loop {
            let wait = match reconnect_at.filter(|at| *at > Instant::now()) {
                Some(at) => at.saturating_duration_since(Instant::now()),
                None => match self.step(!stopping).await {
                    Ok(wait) => {
                        reconnect_at = None;
                        wait
                    }
                    Err(e) => {
                        log::warn!("webhooks: {e}; trying again in {RECONNECT_AFTER:?}");
                        self.conn = None;
                        reconnect_at = Some(Instant::now() + RECONNECT_AFTER);
                        RECONNECT_AFTER
                    }
                },
            };
            if stopping && self.in_flight.is_empty() && self.unrecorded.is_empty() {
                return;
            }
            tokio::select! {
                Some(finished) = self.in_flight.join_next() => match finished {
                    Ok(attempt) => self.unrecorded.push(attempt),
                    // Its claim runs out and the delivery is tried again.
                    Err(e) => log::error!("webhooks: a delivery task failed: {e}"),
                },
                () = tokio::time::sleep(wait) => {}
                Ok(()) = events.changed() => {}
                _ = &mut stop, if !stopping => stopping = true,
            }
        }
    }

    /// Records finished attempts, claims (when `claim`) as many due deliveries as there is room
    /// for and sends them; answers how long to wait before looking again.
    async fn step(&mut self, claim: bool) -> Result<Duration, StoreError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(connect(&self.database).await?),
        };
        while let Some(attempt) = self.unrecorded.last() {
            record(conn, attempt, &self.settings.retries)
                .await
                .map_err(|e| e.on_connection(conn))?;
            self.unrecorded.pop();
        }
        let room = MAX_IN_FLIGHT - self.in_flight.len();
        if room == 0 || !claim {
            // Woken when one finishes.
            return Ok(IDLE_LOOK);
        }
        let claimed = claim_deliveries(conn, room, self.settings.timeout + LEASE_MARGIN)
            .await
            .map_err(|e| e.on_connection(conn))?;
        let full = claimed.len() == room;
        for delivery in claimed {
            self.in_flight.spawn(send(
                self.client.clone(),
                self.settings.secret.clone(),
                delivery,
            ));
        }
        if full {
            return Ok(Duration::ZERO);
        }
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
        Ok(due_in.map_or(IDLE_LOOK, |due_in| due_in.min(IDLE_LOOK)))
    }
}

/// The dispatcher's own connection. Its claims and outcomes commit without waiting for the
/// disk: should PostgreSQL lose the last of them in a crash, those deliveries are sent again,
/// which at-least-once delivery allows (receivers drop repeats by `webhook-id`), and in return
/// the dispatcher's bookkeeping does not queue for WAL flushes behind the creates.
async fn connect(database: &ConnectOptions) -> Result<AsyncPgConnection, StoreError> {
    let mut conn = database
        .connect()
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    diesel::sql_query("SET synchronous_commit = off")
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

async fn record(
    conn: &mut AsyncPgConnection,
    attempt: &Attempt,
    retries: &RetrySchedule,
) -> Result<(), StoreError> {
    match &attempt.error {
        None => {
            record_delivered(conn, attempt.event_id, &attempt.url).await?;
            metrics::webhook_attempt("delivered");
        }
        Some(error) => {
            let retry_in = retries.after(attempt.number, rand::random());
            record_failed_attempt(
                conn,
                attempt.event_id,
                &attempt.url,
                attempt.number,
                error,
                retry_in,
            )
            .await?;
            metrics::webhook_attempt(if retry_in.is_some() {
                "retry"
            } else {
                "failed"
            });
            if retry_in.is_none() {
                log::warn!(
                    "webhooks: event {} to {} failed after {} attempts: {error}",
                    attempt.event_id,
                    attempt.url,
                    attempt.number
                );
            }
        }
    }
    Ok(())
}

/// One attempt: the event as JSON, signed with this attempt's timestamp.
async fn send(client: reqwest::Client, secret: WebhookSecret, delivery: DueDelivery) -> Attempt {
    let id = delivery.event.id.to_string();
    let error = match serde_json::to_string(&delivery.event) {
        Ok(body) => {
            let timestamp = chrono::Utc::now().timestamp();
            let answer = client
                .post(&delivery.url)
                .header("content-type", "application/json")
                .header("webhook-id", &id)
                .header("webhook-timestamp", timestamp.to_string())
                .header(
                    "webhook-signature",
                    webhook_signature(&secret, &id, timestamp, &body),
                )
                .body(body)
                .send()
                .await;
            match answer {
                Ok(response) if response.status().is_success() => None,
                Ok(response) => Some(format!("answered {}", response.status())),
                Err(e) if e.is_timeout() => Some("no answer within the timeout".to_owned()),
                // reqwest's own text is only "error sending request"; the reason (a refused
                // connection, a bad certificate) is in its sources.
                Err(e) => Some(error_chain(&e)),
            }
        }
        Err(e) => Some(format!("cannot serialise the event: {e}")),
    };
    Attempt {
        event_id: delivery.event.id,
        url: delivery.url,
        number: delivery.attempt,
        error: error.map(|e| e.chars().take(MAX_ERROR_CHARS).collect()),
    }
}
