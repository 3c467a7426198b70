//! The outbox's writing side: events go in the transaction of their change, with a delivery
//! row per webhook URL, and once that transaction has committed the listeners of every instance
//! (`events::listen_for_events`) are told.
//!
//! The wake-up is not sent from the writing transaction. PostgreSQL makes the commits of
//! notifying transactions wait for one another: `NOTIFY` takes a database-wide lock that is held
//! until the commit record is flushed to disk, so executors whose batches would share one WAL
//! flush flush one after the other instead. So a commit only asks for a wake-up here, and one
//! task per instance sends them, one at a time: requests that arrive while one is being sent are
//! answered together by the next.

use std::sync::Arc;

use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio::sync::mpsc;

use super::{Pool, StoreError};
use crate::domain::NewEvent;

/// The channel the listeners LISTEN on.
pub(super) const EVENTS_CHANNEL: &str = "order_events";

/// Where committed changes' events go besides their table. Cheap to clone: every executor holds
/// one.
#[derive(Clone)]
pub struct Outbox {
    /// Every event gets a delivery row per URL, written with it.
    webhook_urls: Arc<[String]>,
    /// Room for one request: a full channel means a wake-up is due already.
    wake: mpsc::Sender<()>,
}

impl Outbox {
    /// Starts the task that sends the wake-ups, on the current runtime; it ends when the last
    /// clone of the outbox is dropped.
    pub fn start(pool: Pool, webhook_urls: Arc<[String]>) -> Self {
        let (wake, wanted) = mpsc::channel(1);
        tokio::spawn(wake_listeners(pool, wanted));
        Self { webhook_urls, wake }
    }

    pub(super) fn webhook_urls(&self) -> &[String] {
        &self.webhook_urls
    }

    /// To call after a transaction that wrote events has committed.
    pub(super) fn committed(&self) {
        // Full: a wake-up not yet sent covers this commit too. Closed: the runtime is ending.
        let _ = self.wake.try_send(());
    }
}

async fn wake_listeners(pool: Pool, mut wanted: mpsc::Receiver<()>) {
    while wanted.recv().await.is_some() {
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

/// Writes a status change's event in the caller's transaction, with one delivery row per
/// webhook URL. (Creates write theirs within the batch insert statement, `db::create`.)
pub(super) async fn record_status_changed(
    conn: &mut AsyncPgConnection,
    event: &NewEvent,
    webhook_urls: &[String],
) -> Result<(), StoreError> {
    diesel::sql_query(
        "WITH written AS ( \
             INSERT INTO order_events (order_id, type, from_status, to_status, data) \
             VALUES ($1, 'order.status_changed', $2, $3, $4::json) \
             RETURNING id \
         ) \
         INSERT INTO webhook_deliveries (event_id, url) \
         SELECT written.id, urls.url FROM written CROSS JOIN unnest($5::text[]) AS urls (url)",
    )
    .bind::<BigInt, _>(event.order_id.get())
    .bind::<Text, _>(event.from.as_str())
    .bind::<Text, _>(event.to.as_str())
    .bind::<Text, _>(&event.order_json)
    .bind::<Array<Text>, _>(webhook_urls)
    .execute(conn)
    .await?;
    Ok(())
}
