//! The outbox's writing side: events go in the transaction of their change, with a delivery
//! row per webhook URL, and once that transaction has committed the feed's readers are woken
//! (this instance's from memory, every other instance's through `NOTIFY` and their
//! `events::listen_for_events`), and the events are handed to this instance's webhook
//! dispatcher.
//!
//! The `NOTIFY` is not sent from the writing transaction. PostgreSQL makes the commits of
//! notifying transactions wait for one another: `NOTIFY` takes a database-wide lock that is held
//! until the commit record is flushed to disk, so executors whose batches would share one WAL
//! flush flush one after the other instead. Nor is one sent per commit: it is a transaction of
//! its own, with a transaction id and a commit record, and one per batch cost a quarter of
//! PostgreSQL's CPU per create at ten orders a batch (docs/PERFORMANCE.md). So a commit wakes
//! this instance's readers at once and asks for a `NOTIFY`, and one task per instance sends
//! them, at most one per `NOTIFY_EVERY`: requests that arrive meanwhile are answered together by
//! the next. Readers on other instances wait that much longer at most.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::sql_types::{Array, BigInt, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio::sync::{mpsc, watch};

use super::models::stored_position;
use super::{Pool, StoreError};
use crate::domain::{Event, EventPosition, NewEvent};

/// The channel the listeners LISTEN on.
pub(super) const EVENTS_CHANNEL: &str = "order_events";
/// Shortest time between two wake-ups of the other instances' readers.
const NOTIFY_EVERY: Duration = Duration::from_millis(20);
/// Handoffs waiting for the dispatcher, at most; more are dropped, and their deliveries go out
/// when their leases run out, by the dispatchers' claims. A handoff is a commit's events, up to
/// a batch of 100 orders' JSON, so this bounds what a stuck receiver can make the instance
/// hold to a few MB; a dispatcher that keeps up holds a handful.
const HANDOFFS_QUEUED: usize = 64;

/// Where committed changes' events go besides their table. Cheap to clone: every executor holds
/// one.
#[derive(Clone)]
pub struct Outbox {
    webhooks: Option<Webhooks>,
    /// This instance's readers of the feed (`listen_for_events` moves it too).
    readers: watch::Sender<()>,
    /// Room for one request: a full channel means a `NOTIFY` is due already.
    notify: mpsc::Sender<()>,
}

/// Every event gets a delivery row per URL, written with it and leased to this instance: the
/// event is handed to this instance's dispatcher as its transaction commits, so the first
/// attempt needs neither a claim nor a read of the event. Only retries, and first attempts
/// whose instance could not make them, are claimed from the table.
#[derive(Clone)]
struct Webhooks {
    urls: Arc<[String]>,
    lease: Duration,
    dispatcher: mpsc::Sender<Handoff>,
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

/// What the rows an event is written with must say about its deliveries.
pub(super) struct DeliveryRows<'a> {
    pub urls: &'a [String],
    /// How long after the write the first attempt belongs to the writer.
    pub lease_micros: i64,
}

impl Outbox {
    /// Starts the task that sends the `NOTIFY`s, on the current runtime; it ends when the last
    /// clone of the outbox is dropped. Every commit moves `readers`. With webhook URLs,
    /// deliveries are leased for `lease` when written, and the handoffs are returned for the
    /// dispatcher, which must take the first attempt of each within that time.
    pub fn start(
        pool: Pool,
        readers: watch::Sender<()>,
        webhook_urls: Arc<[String]>,
        lease: Duration,
    ) -> (Self, Option<Handoffs>) {
        let (notify, wanted) = mpsc::channel(1);
        tokio::spawn(notify_other_instances(pool, wanted));
        let (webhooks, handoffs) = if webhook_urls.is_empty() {
            (None, None)
        } else {
            let (dispatcher, handoffs) = mpsc::channel(HANDOFFS_QUEUED);
            let webhooks = Webhooks {
                urls: webhook_urls,
                lease,
                dispatcher,
            };
            (Some(webhooks), Some(handoffs))
        };
        let outbox = Self {
            webhooks,
            readers,
            notify,
        };
        (outbox, handoffs)
    }

    pub(super) fn delivery_rows(&self) -> DeliveryRows<'_> {
        match &self.webhooks {
            Some(webhooks) => DeliveryRows {
                urls: &webhooks.urls,
                lease_micros: micros(webhooks.lease),
            },
            None => DeliveryRows {
                urls: &[],
                lease_micros: 0,
            },
        }
    }

    /// To call after a transaction that wrote events has committed; `began` is an instant
    /// taken before it began. `events` makes the events as committed; it is called only when
    /// there is a dispatcher to hand them to.
    pub(super) fn committed(
        &self,
        began: Instant,
        events: impl FnOnce() -> Result<Vec<Event>, serde_json::Error>,
    ) {
        self.readers.send_replace(());
        // Full: a NOTIFY not yet sent covers this commit too. Closed: the runtime is ending.
        let _ = self.notify.try_send(());
        let Some(webhooks) = &self.webhooks else {
            return;
        };
        let events = match events() {
            Ok(events) => events,
            // Not expected: the orders were just written as JSON for the answer. The
            // deliveries go out when their leases run out.
            Err(e) => {
                log::error!("webhooks: cannot hand over committed events: {e}");
                return;
            }
        };
        let handoff = Handoff {
            events,
            urls: Arc::clone(&webhooks.urls),
            leased_from: began,
        };
        if webhooks.dispatcher.try_send(handoff).is_err() {
            log::debug!("webhooks: the dispatcher is behind; deliveries wait for their leases");
        }
    }
}

/// A duration in whole microseconds, as the SQL here takes them.
pub(super) fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

async fn notify_other_instances(pool: Pool, mut wanted: mpsc::Receiver<()>) {
    let mut next = tokio::time::Instant::now();
    while wanted.recv().await.is_some() {
        tokio::time::sleep_until(next).await;
        // A request made while this one waited is answered by the same NOTIFY, sent after its
        // commit.
        let _ = wanted.try_recv();
        next = tokio::time::Instant::now() + NOTIFY_EVERY;
        let sent = match pool.get().await {
            Ok(mut conn) => notify(&mut conn).await,
            Err(e) => Err(e),
        };
        // The events are committed all the same: readers waiting for them find them when their
        // wait ends, or when the listener reconnects, which wakes them too.
        if let Err(e) = sent {
            log::warn!("could not wake the event listeners: {e}");
        }
    }
}

/// One `NOTIFY`, committed without waiting for the disk: a wake-up is only a hint, and the lock
/// it takes is then held for a moment rather than a WAL flush.
async fn notify(conn: &mut AsyncPgConnection) -> Result<(), StoreError> {
    diesel::sql_query("SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')")
        .bind::<Text, _>(EVENTS_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(QueryableByName)]
struct Written {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    tx: String,
    #[diesel(sql_type = Timestamptz)]
    occurred_at: chrono::DateTime<chrono::Utc>,
}

/// Writes a status change's event in the caller's transaction, with its delivery rows, and
/// answers where and when it was written. (Creates write theirs within the batch insert
/// statement, `db::create`.)
pub(super) async fn record_status_changed(
    conn: &mut AsyncPgConnection,
    event: &NewEvent,
    deliveries: &DeliveryRows<'_>,
) -> Result<(EventPosition, chrono::DateTime<chrono::Utc>), StoreError> {
    let written: Written = diesel::sql_query(
        "WITH written AS ( \
             INSERT INTO order_events (order_id, type, from_status, to_status, data) \
             VALUES ($1, 'order.status_changed', $2, $3, $4::json) \
             RETURNING id, tx_id, occurred_at \
         ), deliveries AS ( \
             INSERT INTO webhook_deliveries (event_id, url, attempts, next_attempt_at) \
             SELECT written.id, urls.url, 1, now() + $6::float8 * interval '1 microsecond' \
             FROM written CROSS JOIN unnest($5::text[]) AS urls (url) \
         ) \
         SELECT id, tx_id::text AS tx, occurred_at FROM written",
    )
    .bind::<BigInt, _>(event.order_id.get())
    .bind::<Text, _>(event.from.as_str())
    .bind::<Text, _>(event.to.as_str())
    .bind::<Text, _>(&event.order_json)
    .bind::<Array<Text>, _>(deliveries.urls)
    .bind::<BigInt, _>(deliveries.lease_micros)
    .get_result(conn)
    .await?;
    Ok((
        stored_position(&written.tx, written.id)?,
        written.occurred_at,
    ))
}
