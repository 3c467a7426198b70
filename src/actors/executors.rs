use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::dev::MessageResponse;
use actix::{Addr, Context, Handler, Message, ResponseFuture, Supervisor};
use tokio::sync::oneshot;

use super::{DbExecutor, ExecutorError, Relay};
use crate::db::Pool;

/// The supervised executors, with messages spread over them round-robin.
///
/// Each executor's mailbox is bounded (actix's default of 16 messages) and `send` waits for
/// room: under overload, requests queue here instead of piling up inside the actors.
pub struct Executors {
    executors: Vec<Mailbox>,
    next: AtomicUsize,
    restarts: Arc<AtomicU64>,
    pool: Pool,
}

/// One executor's address and how many messages wait for it.
struct Mailbox {
    addr: Addr<DbExecutor>,
    /// actix does not tell how full a mailbox is, so `send` counts in and the handler out.
    waiting: Arc<AtomicUsize>,
}

impl Executors {
    /// Starts `count` executors on the current arbiter, each under a `Supervisor`.
    pub fn start(count: usize, pool: Pool, ping_timeout: Duration, relay: Relay) -> Self {
        let restarts = Arc::new(AtomicU64::new(0));
        let executors = (0..count.max(1))
            .map(|index| {
                let (pool, restarts) = (pool.clone(), restarts.clone());
                let relay = relay.clone();
                Mailbox {
                    addr: Supervisor::start(move |_| {
                        DbExecutor::new(index, pool, ping_timeout, relay, restarts)
                    }),
                    waiting: Arc::default(),
                }
            })
            .collect();
        Self {
            executors,
            next: AtomicUsize::new(0),
            restarts,
            pool,
        }
    }

    /// How many times an executor was restarted after a panic since start-up.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Per executor, the messages sent to it that it has not started handling: those in its
    /// mailbox and those whose senders wait for room there.
    pub fn mailbox_depths(&self) -> Vec<usize> {
        self.executors
            .iter()
            .map(|mailbox| mailbox.waiting.load(Ordering::Relaxed))
            .collect()
    }

    /// Connections open and idle, and the history of waits for one.
    pub fn pool_state(&self) -> bb8::State {
        self.pool.state()
    }

    pub async fn send<M, T>(&self, message: M) -> Result<T, ExecutorError>
    where
        M: Message<Result = Result<T, ExecutorError>> + Send + 'static,
        T: Send + 'static,
        DbExecutor: Handler<M>,
    {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.executors.len();
        let mailbox = &self.executors[turn];
        let message = Queued {
            message,
            ticket: Ticket::new(&mailbox.waiting),
        };
        mailbox.addr.send::<Queued<M>>(message).await?
    }
}

/// A message on its way through an executor's mailbox, counted while it waits there.
pub(crate) struct Queued<M> {
    message: M,
    ticket: Ticket,
}

impl<M: Message> Message for Queued<M> {
    type Result = M::Result;
}

impl<M, T> Handler<Queued<M>> for DbExecutor
where
    M: Message<Result = Result<T, ExecutorError>> + 'static,
    T: 'static,
    DbExecutor: Handler<M>,
{
    type Result = ResponseFuture<Result<T, ExecutorError>>;

    fn handle(
        &mut self,
        Queued { message, ticket }: Queued<M>,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        // Counted out as its handling starts.
        drop(ticket);
        // Handled as if `M` itself had been sent: its handler runs here, and the response it
        // gives (`ResponseActFuture`, `ResponseFuture`, …) is driven by actix's own
        // `MessageResponse::handle`, as the mailbox would drive it, with a reply channel of
        // ours. So each kind keeps its meaning (an actor future still runs inside this actor)
        // and the counting wraps every message without a handler of its own.
        let (reply, answer) = oneshot::channel();
        <Self as Handler<M>>::handle(self, message, ctx).handle(ctx, Some(reply));
        Box::pin(async move { answer.await.unwrap_or(Err(ExecutorError::Interrupted)) })
    }
}

/// Counts one waiting message from creation to drop, so a message that is never handled
/// (its executor stopped) is counted out too.
struct Ticket(Arc<AtomicUsize>);

impl Ticket {
    fn new(waiting: &Arc<AtomicUsize>) -> Self {
        waiting.fetch_add(1, Ordering::Relaxed);
        Self(waiting.clone())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
