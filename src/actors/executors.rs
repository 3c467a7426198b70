use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use actix::dev::MessageResponse;
use actix::{Addr, Context, Handler, Message, ResponseFuture, Supervisor};
use tokio::sync::oneshot;

use super::{DbExecutor, ExecutorError, Relay};
use crate::db::Pool;

/// The executors of this instance, as `/metrics` sees them: each one's mailbox and pool, and
/// how often any was restarted.
///
/// Each HTTP worker starts one executor on its own thread, with a pool of its own: a request,
/// the executor that serves it and the connection's socket are then all driven by that one
/// thread, where an executor shared by the workers made every request cross threads twice.
#[derive(Default)]
pub struct Executors {
    members: Mutex<Vec<Member>>,
    started: AtomicUsize,
    restarts: Arc<AtomicU64>,
}

/// One started executor: its pool, and the count of its waiting messages while it lives.
struct Member {
    pool: Pool,
    waiting: Weak<AtomicUsize>,
}

impl Executors {
    /// Starts an executor under a `Supervisor` on the current thread's arbiter, with `pool` to
    /// itself. Only the thread that sends to it should use that pool: a connection's socket is
    /// driven on the thread that opened it.
    pub fn start(&self, pool: Pool, ping_timeout: Duration, relay: Relay) -> Executor {
        let index = self.started.fetch_add(1, Ordering::Relaxed);
        let waiting = Arc::new(AtomicUsize::new(0));
        {
            let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
            // actix replaces a worker that panicked; the executor of the old one is gone.
            members.retain(|member| member.waiting.strong_count() > 0);
            members.push(Member {
                pool: pool.clone(),
                waiting: Arc::downgrade(&waiting),
            });
        }
        let restarts = self.restarts.clone();
        Executor {
            addr: Supervisor::start(move |_| {
                DbExecutor::new(index, pool, ping_timeout, relay, restarts)
            }),
            waiting,
        }
    }

    /// How many times an executor was restarted after a panic since start-up.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Per executor, the messages sent to it that it has not started handling: those in its
    /// mailbox and those whose senders wait for room there.
    pub fn mailbox_depths(&self) -> Vec<usize> {
        self.live(|member| {
            member
                .waiting
                .upgrade()
                .map(|waiting| waiting.load(Ordering::Relaxed))
        })
    }

    /// Per executor's pool, the connections open and idle, and the history of waits for one.
    pub fn pool_states(&self) -> Vec<bb8::State> {
        self.live(|member| (member.waiting.strong_count() > 0).then(|| member.pool.state()))
    }

    fn live<T>(&self, read: impl Fn(&Member) -> Option<T>) -> Vec<T> {
        let members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        members.iter().filter_map(read).collect()
    }
}

/// The address of one executor, for the thread it was started on.
///
/// Its mailbox is bounded (actix's default of 16 messages) and `send` waits for room: under
/// overload, requests queue here instead of piling up inside the actor.
pub struct Executor {
    addr: Addr<DbExecutor>,
    /// actix does not tell how full a mailbox is, so `send` counts in and the handler out.
    waiting: Arc<AtomicUsize>,
}

impl Executor {
    pub async fn send<M, T>(&self, message: M) -> Result<T, ExecutorError>
    where
        M: Message<Result = Result<T, ExecutorError>> + Send + 'static,
        T: Send + 'static,
        DbExecutor: Handler<M>,
    {
        let message = Queued {
            message,
            ticket: Ticket::new(&self.waiting),
        };
        self.addr.send::<Queued<M>>(message).await?
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
        // gives is driven by actix's own `MessageResponse::handle`, as the mailbox would drive
        // it, with a reply channel of ours. So each kind keeps its meaning and the counting
        // wraps every message without a handler of its own.
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
