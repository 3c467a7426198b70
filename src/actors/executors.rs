use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use actix::{Addr, Context, Handler, Message, ResponseFuture, Supervisor};
use opentelemetry::trace::{Span, SpanKind};

use super::{DbExecutor, ExecutorError, Relay, Replicas};
use crate::db::Pool;
use crate::traces::{self, TraceContext, Traces};

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
    /// The tracer every executor traces with; none when traces are off.
    traces: Option<Traces>,
}

/// One started executor: its pool, and the count of its waiting messages while it lives.
struct Member {
    pool: Pool,
    waiting: Weak<AtomicUsize>,
}

impl Executors {
    /// Executors that trace the messages of sampled requests with `traces`.
    pub fn traced(traces: Option<Traces>) -> Self {
        Self {
            traces,
            ..Self::default()
        }
    }

    /// Starts an executor under a `Supervisor` on the current thread's arbiter, with `pool`
    /// (and `replicas`' pool, if any) to itself. Only the thread that sends to it should use
    /// them: a connection's socket is driven on the thread that opened it.
    pub fn start(
        &self,
        pool: Pool,
        replicas: Option<Replicas>,
        ping_timeout: Duration,
        relay: Relay,
    ) -> Executor {
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
        let traces = self.traces.clone();
        Executor {
            addr: Supervisor::start({
                let traces = traces.clone();
                move |_| {
                    DbExecutor::new(index, pool, replicas, ping_timeout, relay, restarts, traces)
                }
            }),
            waiting,
            traced: traces.is_some(),
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
#[derive(Clone)]
///
/// Its mailbox is bounded (actix's default of 16 messages) and `send` waits for room: under
/// overload, requests queue here instead of piling up inside the actor.
pub struct Executor {
    addr: Addr<DbExecutor>,
    /// actix does not tell how full a mailbox is, so `send` counts in and the handler out.
    waiting: Arc<AtomicUsize>,
    /// Whether messages carry their request's trace context: only when traces are on.
    traced: bool,
}

impl Executor {
    pub async fn send<M, T>(&self, message: M) -> Result<T, ExecutorError>
    where
        M: Job + Message<Result = Result<T, ExecutorError>> + Send,
        T: Send + 'static,
    {
        let message = Queued {
            message,
            ticket: Ticket::new(&self.waiting),
            sent: if self.traced { Sent::now() } else { None },
        };
        self.addr.send::<Queued<M>>(message).await?
    }
}

/// A message on its way through an executor's mailbox, counted while it waits there.
pub(crate) struct Queued<M> {
    message: M,
    ticket: Ticket,
    /// The trace of the request that sent it, when sampled.
    sent: Option<Sent>,
}

/// A message of a sampled request: its trace, and when it was sent.
struct Sent {
    context: TraceContext,
    at: SystemTime,
}

impl Sent {
    /// The sender's trace, when it is sampled. The HTTP layer makes a request's context
    /// OpenTelemetry's current one while its handler runs.
    fn now() -> Option<Self> {
        let context = TraceContext::current();
        traces::sampled(&context).then(|| Self {
            context,
            at: SystemTime::now(),
        })
    }
}

impl<M: Message> Message for Queued<M> {
    type Result = M::Result;
}

/// A message an executor answers with a future of its own (`DbExecutor::run`, or the wait for
/// a batch), which `Queued` hands on as its own answer: no second reply channel and task.
pub trait Job: Message + 'static {
    fn start(
        self,
        executor: &mut DbExecutor,
        ctx: &mut Context<DbExecutor>,
    ) -> ResponseFuture<Self::Result>;
}

impl<M> Job for M
where
    M: Message + 'static,
    DbExecutor: Handler<M, Result = ResponseFuture<M::Result>>,
{
    fn start(
        self,
        executor: &mut DbExecutor,
        ctx: &mut Context<DbExecutor>,
    ) -> ResponseFuture<M::Result> {
        <DbExecutor as Handler<M>>::handle(executor, self, ctx)
    }
}

impl<M: Job> Handler<Queued<M>> for DbExecutor {
    type Result = ResponseFuture<M::Result>;

    fn handle(
        &mut self,
        Queued {
            message,
            ticket,
            sent,
        }: Queued<M>,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        // Counted out as its handling starts.
        drop(ticket);
        // Its wait in the mailbox as a span; its context is the current one while its handler
        // starts, for the spans the handler makes.
        let _current = sent.map(|sent| {
            if let Some(traces) = &self.traces {
                let mut waited = traces.build(
                    traces
                        .builder("executor wait")
                        .with_kind(SpanKind::Internal)
                        .with_start_time(sent.at),
                    &sent.context,
                );
                waited.end();
            }
            sent.context.attach()
        });
        message.start(self, ctx)
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
