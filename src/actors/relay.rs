//! What follows a commit that wrote events: the relay wakes the feed's readers and hands the
//! events to this instance's webhook dispatcher. The executors call it once their transaction
//! has committed; the queries they run only return what they committed. Beside it, the
//! connection that LISTENs for the other instances' commits, which wake this instance's readers
//! too.
//!
//! This instance's readers are woken from memory, every other instance's through a `NOTIFY`,
//! which is not sent from the writing transaction. PostgreSQL makes the commits of notifying
//! transactions wait for one another: `NOTIFY` takes a database-wide lock that is held until
//! the commit record is flushed to disk, so executors whose batches would share one WAL flush
//! flush one after the other instead. Nor is one sent per commit: it is a transaction of its
//! own, with a transaction id and a commit record, and one per batch cost a quarter of
//! PostgreSQL's CPU per create at ten orders a batch (docs/PERFORMANCE.md). So a commit wakes
//! this instance's readers at once and asks for a `NOTIFY`, and one task per instance sends
//! them, at most one per `NOTIFY_EVERY`: requests that arrive meanwhile are answered together by
//! the next. Readers on other instances wait that much longer at most.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::dispatcher::{delivery_lease, Handoff, Handoffs, WebhookSettings};
use crate::db::{
    notify_event_listeners, ConnectOptions, Created, CreatedBatch, DeliveryRows, EventListener,
    Moved, Pool, StoreError,
};
use crate::domain::{CreateRequest, Event};

/// Shortest time between two wake-ups of the other instances' readers.
const NOTIFY_EVERY: Duration = Duration::from_millis(20);
/// Handoffs waiting for the dispatcher, at most; more are dropped, and their deliveries go out
/// when their leases run out, by the dispatchers' claims. A handoff is a commit's events, up to
/// a batch of 100 orders' JSON, so this bounds what a stuck receiver can make the instance
/// hold to a few MB; a dispatcher that keeps up holds a handful.
const HANDOFFS_QUEUED: usize = 64;
/// How long the listener waits before connecting again after losing its connection.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

/// Where committed changes' events go besides their table. Cheap to clone: every executor holds
/// one.
#[derive(Clone)]
pub struct Relay {
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

impl Relay {
    /// Starts the task that sends the `NOTIFY`s, on the current runtime; it ends when the last
    /// clone of the relay is dropped. Every commit moves `readers`. With webhooks, deliveries
    /// are leased to this instance when written, and the handoffs are returned for the
    /// dispatcher, which must take the first attempt of each within the lease.
    pub fn start(
        pool: Pool,
        readers: watch::Sender<()>,
        webhooks: Option<&WebhookSettings>,
    ) -> (Self, Option<Handoffs>) {
        let (notify, wanted) = mpsc::channel(1);
        tokio::spawn(notify_other_instances(pool, wanted));
        let (webhooks, handoffs) = match webhooks {
            None => (None, None),
            Some(settings) => {
                let (dispatcher, handoffs) = mpsc::channel(HANDOFFS_QUEUED);
                let webhooks = Webhooks {
                    urls: settings.urls.as_slice().into(),
                    lease: delivery_lease(settings.timeout),
                    dispatcher,
                };
                (Some(webhooks), Some(handoffs))
            }
        };
        let relay = Self {
            webhooks,
            readers,
            notify,
        };
        (relay, handoffs)
    }

    /// What the events written before `created` or `status_changed` must carry.
    pub(super) fn delivery_rows(&self) -> DeliveryRows<'_> {
        match &self.webhooks {
            Some(webhooks) => DeliveryRows::new(&webhooks.urls, webhooks.lease),
            None => DeliveryRows::new(&[], Duration::ZERO),
        }
    }

    /// A committed batch of creates of `requests`: its new orders' events.
    pub(super) fn created(&self, batch: &CreatedBatch, requests: &[CreateRequest]) {
        if batch.events.is_empty() {
            return;
        }
        self.committed(batch.began, || {
            batch
                .outcomes
                .iter()
                .zip(requests)
                .filter_map(|(outcome, request)| match outcome {
                    Ok(Created::New(order)) => Some((order, &request.traceparent)),
                    _ => None,
                })
                .zip(&batch.events)
                .map(|((order, traceparent), &event)| {
                    Event::created(event, order, traceparent.clone())
                })
                .collect()
        });
    }

    /// A committed move of a status, begun at `began`.
    pub(super) fn status_changed(&self, began: Instant, moved: Moved) {
        self.committed(began, || {
            Ok(vec![moved.event.committed(moved.position, moved.at)?])
        });
    }

    /// `began` is an instant taken before the transaction began. `events` makes the events as
    /// committed; it is called only when there is a dispatcher to hand them to.
    fn committed(
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

async fn notify_other_instances(pool: Pool, mut wanted: mpsc::Receiver<()>) {
    let mut next = tokio::time::Instant::now();
    while wanted.recv().await.is_some() {
        tokio::time::sleep_until(next).await;
        // A request made while this one waited is answered by the same NOTIFY, sent after its
        // commit.
        let _ = wanted.try_recv();
        next = tokio::time::Instant::now() + NOTIFY_EVERY;
        let sent = match pool.get().await {
            Ok(mut conn) => notify_event_listeners(&mut conn).await,
            Err(e) => Err(e),
        };
        // The events are committed all the same: readers waiting for them find them when their
        // wait ends, or when the listener reconnects, which wakes them too.
        if let Err(e) = sent {
            log::warn!("could not wake the event listeners: {e}");
        }
    }
}

/// Keeps one connection LISTENing for events committed by other instances, for as long as a
/// receiver of `readers` lives. It moves `readers` on every notification, and after every
/// reconnection (a notification may have been missed meanwhile), so that readers waiting for
/// events look again. (This instance's commits move it themselves: `Relay`.)
pub fn listen_for_events(options: ConnectOptions, readers: watch::Sender<()>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = readers.closed() => return,
                outcome = listen(&options, &readers) => {
                    if let Err(e) = outcome {
                        log::warn!("event listener: {e}; listening again in {RELISTEN_AFTER:?}");
                    }
                }
            }
            tokio::time::sleep(RELISTEN_AFTER).await;
        }
    });
}

/// Listens until the connection ends.
async fn listen(options: &ConnectOptions, readers: &watch::Sender<()>) -> Result<(), StoreError> {
    let mut listener = EventListener::start(options).await?;
    readers.send_replace(());
    loop {
        listener.notified().await?;
        readers.send_replace(());
    }
}
