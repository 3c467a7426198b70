use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorContext, ActorFuture, ActorFutureExt, AsyncContext, Context, Handler, MailboxError,
    Message, ResponseFuture, Supervised, WrapFuture,
};
use diesel_async::AsyncPgConnection;
use futures_util::FutureExt;
use opentelemetry::trace::{FutureExt as _, Link, Span, SpanKind, TraceContextExt};
use opentelemetry::KeyValue;
use tokio::sync::oneshot;

use super::messages::{
    ChangeStatus, CheckHealth, CreateOrder, GetDeliveries, GetHistory, GetOrder, Heartbeat,
    ListEvents, ListOrders, PurgeEvents, PurgeIdempotencyKeys,
};
use super::reads::{Positioned, Read, Replicas};
use super::Relay;
use crate::db::{self, Created, EventPage, OrderPage, Pool, StoreError};
use crate::domain::{ConsistencyToken, CreateRequest, DeliveryReport, Order, StatusChange};
use crate::metrics;
use crate::traces::{self, TraceContext, Traces};

/// Most orders written in one transaction. Batches travel as one array per column, so no
/// bind-parameter limit applies; the cap bounds what one batch costs its requests: each waits
/// for the whole batch's statement and commit, and a batch that fails is written again one
/// order at a time. 100 keeps nearly all the throughput of a larger cap with a smaller
/// worst-case retry (docs/PERFORMANCE.md has the measurements).
const MAX_BATCH: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database executor panicked")]
    Panicked,
    #[error("database executor unreachable: {0}")]
    Mailbox(#[from] MailboxError),
    #[error("database executor stopped before answering")]
    Interrupted,
}

/// A create request waiting for the next batch.
struct PendingCreate {
    request: CreateRequest,
    reply: oneshot::Sender<Result<Positioned<Created>, ExecutorError>>,
    /// The request's trace, when it is sampled.
    trace: Option<TraceContext>,
}

/// Runs queries for the messages it receives, each on a pooled connection.
///
/// Reads and status changes run as tasks of their own (`task`), so one executor has many
/// queries in flight; its pool bounds how many reach the database at once. With replicas
/// configured, reads of orders, history and list pages go there (`reads`), and every write
/// answers the point it committed at.
///
/// Creates are group-committed: while one batch transaction is in flight, the creates that
/// arrive queue up and go together as the next transaction. A lone create is written at once
/// (no timer), and under load one commit carries many orders, which is where the time goes.
pub struct DbExecutor {
    index: usize,
    pool: Pool,
    /// Its share of the read pool, when reads may go to replicas.
    replicas: Option<Replicas>,
    ping_timeout: Duration,
    /// Where the events of the changes it commits go.
    relay: Relay,
    /// Shared with the executor set: how many times any executor was restarted.
    restarts: Arc<AtomicU64>,
    pending: VecDeque<PendingCreate>,
    flushing: bool,
    /// The tracer of sampled requests' messages; none when traces are off.
    pub(super) traces: Option<Traces>,
}

impl DbExecutor {
    pub fn new(
        index: usize,
        pool: Pool,
        replicas: Option<Replicas>,
        ping_timeout: Duration,
        relay: Relay,
        restarts: Arc<AtomicU64>,
        traces: Option<Traces>,
    ) -> Self {
        Self {
            index,
            pool,
            replicas,
            ping_timeout,
            relay,
            restarts,
            pending: VecDeque::new(),
            flushing: false,
            traces,
        }
    }

    /// Runs `job` inside the actor. A panic inside it is caught here, answered as `Panicked`,
    /// and stops the actor so that its `Supervisor` starts it afresh.
    fn guarded<T: 'static>(
        &self,
        job: impl Future<Output = Result<T, ExecutorError>> + 'static,
    ) -> impl ActorFuture<Self, Output = Result<T, ExecutorError>> + 'static {
        AssertUnwindSafe(job)
            .catch_unwind()
            .into_actor(self)
            .map(|outcome, executor, ctx| {
                outcome.unwrap_or_else(|panic| {
                    ctx.stop();
                    Err(caught(executor.index, panic))
                })
            })
    }

    /// Runs `work` on a connection to the primary, as a `task`.
    fn run<T, F>(&self, ctx: &Context<Self>, work: F) -> ResponseFuture<Result<T, ExecutorError>>
    where
        T: 'static,
        F: AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, StoreError> + 'static,
    {
        let pool = self.pool.clone();
        self.task(ctx, async move {
            let mut conn = pool.get().await?;
            work(&mut conn)
                .await
                .map_err(|e| e.on_connection(&mut conn))
        })
    }

    /// Runs the read `work` where `read` may be served (a replica, or the primary), as a
    /// `task`. An answer that `found` says is empty is given only once the primary agrees.
    fn read<T, F>(
        &self,
        ctx: &Context<Self>,
        read: Read,
        found: fn(&T) -> bool,
        work: F,
    ) -> ResponseFuture<Result<Positioned<T>, ExecutorError>>
    where
        T: 'static,
        F: AsyncFn(&AsyncPgConnection) -> Result<T, StoreError> + 'static,
    {
        let (primary, replicas) = (self.pool.clone(), self.replicas.clone());
        self.task(ctx, async move {
            read.run(&primary, replicas.as_ref(), found, work).await
        })
    }

    /// Runs `job` as a task of its own rather than inside the actor: actix polls every future
    /// in an actor's context whenever any one of them wakes, so the dozens of queries an
    /// executor has in flight would each be polled at every wake-up of the others. A panic is
    /// answered as `Panicked` and restarts the actor, as in `guarded`.
    fn task<T: 'static>(
        &self,
        ctx: &Context<Self>,
        job: impl Future<Output = Result<T, StoreError>> + 'static,
    ) -> ResponseFuture<Result<T, ExecutorError>> {
        let (index, executor) = (self.index, ctx.address());
        // The context the mailbox made current (`Queued`), for the statements' spans.
        let trace = self.trace();
        let job = async move {
            match trace {
                Some(trace) => job.with_context(trace).await,
                None => job.await,
            }
        };
        Box::pin(async move {
            match AssertUnwindSafe(job).catch_unwind().await {
                Ok(result) => result.map_err(ExecutorError::from),
                Err(panic) => {
                    executor.do_send(Restart);
                    Err(caught(index, panic))
                }
            }
        })
    }

    /// The trace of the message being handled, when traces are on and it is sampled: the
    /// context the mailbox made current (`Queued`), the request's.
    fn trace(&self) -> Option<TraceContext> {
        self.traces
            .as_ref()
            .map(|_| TraceContext::current())
            .filter(traces::sampled)
    }

    /// Writes the next batch of waiting creates, then the next, until none wait.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        let size = self.pending.len().min(MAX_BATCH);
        self.flushing = size > 0;
        if size == 0 {
            return;
        }
        let mut traced = Vec::new();
        let (requests, replies): (Vec<_>, Vec<_>) = self
            .pending
            .drain(..size)
            .map(|p| {
                traced.extend(p.trace);
                (p.request, p.reply)
            })
            .unzip();
        let batch = self
            .traces
            .as_ref()
            .and_then(|traces| batch_span(traces, &traced, requests.len()));
        let (pool, relay) = (self.pool.clone(), self.relay.clone());
        let positioned = self.replicas.is_some();
        let job = async move {
            let (results, position) = match &batch {
                // The batch's statements are its children.
                Some(batch) => {
                    store_batch(&pool, &requests, &relay, positioned)
                        .with_context(batch.clone())
                        .await
                }
                None => store_batch(&pool, &requests, &relay, positioned).await,
            };
            if let Some(batch) = batch {
                batch.span().end();
            }
            let created = results
                .iter()
                .filter(|result| matches!(result, Ok(Created::New(_))))
                .count();
            metrics::create_batch(requests.len(), created);
            for (reply, result) in replies.into_iter().zip(results) {
                // The requester may have gone away; its order is stored all the same.
                let _ = reply.send(
                    result
                        .map(|value| Positioned { value, position })
                        .map_err(ExecutorError::from),
                );
            }
            Ok(())
        };
        ctx.spawn(self.guarded(job).map(|outcome, executor, ctx| {
            if outcome.is_ok() {
                executor.flush(ctx);
            }
        }));
    }
}

/// The span of a batch transaction that serves the sampled requests `traced` (of `orders` in
/// all), linked to each of them and each of them to it. It belongs to the trace of the first:
/// started as a root, it would be sampled on its own, and at a low ratio most sampled requests
/// would link to a batch that was never recorded.
fn batch_span(traces: &Traces, traced: &[TraceContext], orders: usize) -> Option<TraceContext> {
    let first = traced.first()?;
    let links = traced
        .iter()
        .map(|request| Link::with_context(request.span().span_context().clone()))
        .collect();
    let batch = traces.build(
        traces
            .builder("order batch")
            .with_kind(SpanKind::Internal)
            .with_links(links)
            .with_attributes([
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.operation.name", "INSERT"),
                KeyValue::new("db.collection.name", "orders"),
                KeyValue::new("db.operation.batch.size", orders as i64),
            ]),
        first,
    );
    for request in traced {
        request
            .span()
            .add_link(batch.span_context().clone(), Vec::new());
    }
    Some(traces::context_of(first, batch))
}

/// Writes a batch in one transaction. If that fails for any reason but an unreachable
/// database, writes each request alone, so that one bad order cannot fail the others. With
/// `positioned`, also answers the point after the commits, for the requests' tokens.
async fn store_batch(
    pool: &Pool,
    requests: &[CreateRequest],
    relay: &Relay,
    positioned: bool,
) -> (Vec<Result<Created, StoreError>>, Option<ConsistencyToken>) {
    let unavailable = |cause: &str| {
        let results = requests
            .iter()
            .map(|_| Err(StoreError::Unavailable(cause.to_owned())))
            .collect();
        (results, None)
    };
    let mut conn = match pool.get().await {
        Ok(conn) => conn,
        Err(StoreError::Unavailable(cause)) => return unavailable(&cause),
        Err(e) => return unavailable(&e.to_string()),
    };
    let results = match insert(&mut conn, requests, relay)
        .await
        .map_err(|e| e.on_connection(&mut conn))
    {
        Ok(outcomes) => outcomes,
        Err(StoreError::Unavailable(cause)) => return unavailable(&cause),
        Err(e) => {
            if requests.len() > 1 {
                log::warn!(
                    "a batch of {} orders failed ({e}); writing them one by one",
                    requests.len()
                );
            }
            let mut results = Vec::with_capacity(requests.len());
            for request in requests {
                results.push(store_one(&mut conn, request, relay).await);
            }
            results
        }
    };
    let position = if positioned {
        committed_position(pool, &conn).await
    } else {
        None
    };
    (results, position)
}

/// The point after a commit, for its clients' tokens: asked on the connection that committed,
/// or, if that broke (a switchover right after the commit), on a fresh one to the primary,
/// which is past every acknowledged commit. `None` if neither answers: the write stands, and
/// its client is answered without a token rather than told to retry what is done.
async fn committed_position(pool: &Pool, conn: &AsyncPgConnection) -> Option<ConsistencyToken> {
    let first = match db::current_position(conn).await {
        Ok(position) => return Some(position),
        Err(e) => e,
    };
    let again = match pool.get().await {
        Ok(fresh) => db::current_position(&fresh).await,
        Err(e) => Err(e),
    };
    again
        .inspect_err(|e| log::warn!("no consistency token after a commit ({first}; then {e})"))
        .ok()
}

/// Writes one request in its own transaction. A key that a concurrent request inserted first
/// makes the insert fail on the key's unique index once that request commits; the second
/// attempt then finds the key and answers with that request's order.
async fn store_one(
    conn: &mut AsyncPgConnection,
    request: &CreateRequest,
    relay: &Relay,
) -> Result<Created, StoreError> {
    let mut retry = request.key.is_some();
    loop {
        let outcome = match insert(conn, std::slice::from_ref(request), relay).await {
            Ok(mut one) => one.pop().unwrap_or_else(|| {
                Err(StoreError::Impossible(
                    "no outcome for a one-order batch".into(),
                ))
            }),
            Err(e) => Err(e),
        };
        if retry && matches!(outcome, Err(StoreError::ConstraintViolated(_))) {
            retry = false;
            continue;
        }
        return outcome;
    }
}

/// Writes `requests` in one transaction and, once it has committed, relays its events. The
/// error fails them all; an outcome's error belongs to its request alone.
async fn insert(
    conn: &mut AsyncPgConnection,
    requests: &[CreateRequest],
    relay: &Relay,
) -> Result<Vec<Result<Created, StoreError>>, StoreError> {
    let batch = db::insert_orders(conn, requests, &relay.delivery_rows()).await?;
    relay.created(&batch, requests);
    Ok(batch.outcomes)
}

/// Sent by a request's task that caught a panic: the executor stops, and its `Supervisor`
/// starts it afresh.
struct Restart;

impl Message for Restart {
    type Result = ();
}

impl Handler<Restart> for DbExecutor {
    type Result = ();

    fn handle(&mut self, _: Restart, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// A panic caught in an executor's work, logged; answered as `Panicked`.
fn caught(index: usize, panic: Box<dyn Any + Send>) -> ExecutorError {
    log::error!(
        "db executor {index} panicked ({}); restarting it",
        panic_message(panic.as_ref())
    );
    ExecutorError::Panicked
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}

impl Actor for DbExecutor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // After a restart, creates that were waiting for a batch are still queued.
        self.flush(ctx);
    }
}

impl Supervised for DbExecutor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.flushing = false;
        self.restarts.fetch_add(1, Ordering::Relaxed);
        log::warn!("db executor {} restarted", self.index);
    }
}

impl Handler<CreateOrder> for DbExecutor {
    type Result = ResponseFuture<Result<Positioned<Created>, ExecutorError>>;

    fn handle(
        &mut self,
        CreateOrder(mut request): CreateOrder,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        let trace = self.trace();
        request.traceparent = trace.as_ref().map(traces::traceparent);
        self.pending.push_back(PendingCreate {
            request,
            reply,
            trace,
        });
        if !self.flushing {
            self.flush(ctx);
        }
        Box::pin(async move { answer.await.unwrap_or(Err(ExecutorError::Interrupted)) })
    }
}

impl Handler<GetOrder> for DbExecutor {
    type Result = ResponseFuture<Result<Positioned<Option<Order>>, ExecutorError>>;

    fn handle(&mut self, GetOrder { id, at }: GetOrder, ctx: &mut Context<Self>) -> Self::Result {
        self.read(ctx, Read::seeing(at), Option::is_some, async move |conn| {
            db::find_order(conn, id).await
        })
    }
}

impl Handler<GetHistory> for DbExecutor {
    type Result = ResponseFuture<Result<Positioned<Option<Vec<StatusChange>>>, ExecutorError>>;

    fn handle(
        &mut self,
        GetHistory { id, at }: GetHistory,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        self.read(ctx, Read::seeing(at), Option::is_some, async move |conn| {
            db::status_history(conn, id).await
        })
    }
}

impl Handler<ListOrders> for DbExecutor {
    type Result = ResponseFuture<Result<Positioned<OrderPage>, ExecutorError>>;

    fn handle(
        &mut self,
        ListOrders { page, at }: ListOrders,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        // The next page must be read at this page's point or later.
        let read = Read::page(at, self.replicas.is_some());
        self.read(
            ctx,
            read,
            |_| true,
            async move |conn| db::orders_page(conn, &page).await,
        )
    }
}

impl Handler<ChangeStatus> for DbExecutor {
    type Result = ResponseFuture<Result<Positioned<Order>, ExecutorError>>;

    fn handle(
        &mut self,
        ChangeStatus {
            id,
            to,
            precondition,
        }: ChangeStatus,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        let relay = self.relay.clone();
        let traceparent = self.trace().as_ref().map(traces::traceparent);
        let positioned = self.replicas.is_some();
        let pool = self.pool.clone();
        self.run(ctx, async move |conn| {
            let changed = db::change_status(
                conn,
                id,
                to,
                precondition.as_ref(),
                traceparent.as_deref(),
                &relay.delivery_rows(),
            )
            .await?;
            // Once committed: a rolled-back change did not happen.
            if let Some(moved) = changed.moved {
                metrics::status_changed(moved.event.from, moved.event.to);
                relay.status_changed(changed.began, moved);
            }
            let position = if positioned {
                committed_position(&pool, conn).await
            } else {
                None
            };
            Ok(Positioned {
                value: changed.order,
                position,
            })
        })
    }
}

impl Handler<CheckHealth> for DbExecutor {
    type Result = ResponseFuture<Result<(), ExecutorError>>;

    fn handle(&mut self, _: CheckHealth, ctx: &mut Context<Self>) -> Self::Result {
        let timeout = self.ping_timeout;
        self.run(ctx, async move |conn| {
            tokio::time::timeout(timeout, db::ping(conn))
                .await
                .map_err(|_| {
                    StoreError::Unavailable(format!("no answer to SELECT 1 within {timeout:?}"))
                })?
        })
    }
}

impl Handler<ListEvents> for DbExecutor {
    type Result = ResponseFuture<Result<EventPage, ExecutorError>>;

    fn handle(
        &mut self,
        ListEvents { request, waiting }: ListEvents,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        self.run(ctx, async move |conn| {
            db::events_page(conn, &request, waiting).await
        })
    }
}

impl Handler<GetDeliveries> for DbExecutor {
    type Result = ResponseFuture<Result<Option<Vec<DeliveryReport>>, ExecutorError>>;

    fn handle(
        &mut self,
        GetDeliveries(event): GetDeliveries,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        self.run(ctx, async move |conn| {
            db::event_deliveries(conn, event).await
        })
    }
}

impl Handler<PurgeEvents> for DbExecutor {
    type Result = ResponseFuture<Result<usize, ExecutorError>>;

    fn handle(&mut self, PurgeEvents(age): PurgeEvents, ctx: &mut Context<Self>) -> Self::Result {
        self.run(ctx, async move |conn| db::purge_events(conn, age).await)
    }
}

impl Handler<Heartbeat> for DbExecutor {
    type Result = ResponseFuture<Result<(), ExecutorError>>;

    fn handle(&mut self, _: Heartbeat, ctx: &mut Context<Self>) -> Self::Result {
        self.run(ctx, async move |conn| db::heartbeat(conn).await)
    }
}

impl Handler<PurgeIdempotencyKeys> for DbExecutor {
    type Result = ResponseFuture<Result<usize, ExecutorError>>;

    fn handle(
        &mut self,
        PurgeIdempotencyKeys(age): PurgeIdempotencyKeys,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        self.run(ctx, async move |conn| {
            db::purge_idempotency_keys(conn, age).await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use actix::{Handler, Message};

    use super::*;
    use crate::actors::{CheckHealth, Executors};
    use crate::db::{ConnectOptions, PoolSettings};

    /// A message whose handler panics inside the executor's guarded boundary, as a bug would.
    struct Explode;

    impl Message for Explode {
        type Result = Result<(), ExecutorError>;
    }

    impl Handler<Explode> for DbExecutor {
        type Result = ResponseFuture<Result<(), ExecutorError>>;

        fn handle(&mut self, _: Explode, ctx: &mut Context<Self>) -> Self::Result {
            self.run(ctx, async |_conn| panic!("simulated bug"))
        }
    }

    fn pool() -> Pool {
        // Only `SELECT 1` runs.
        let url = crate::actors::test_database_url();
        let settings = PoolSettings {
            max_size: 2,
            min_idle: 0,
            max_lifetime: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            connection_timeout: Duration::from_secs(5),
        };
        let options = ConnectOptions::parse(&url).expect("TEST_DATABASE_URL is a PostgreSQL URL");
        Pool::build(&options, &settings, None)
    }

    #[actix_rt::test]
    async fn a_panicking_executor_is_restarted_and_serves_the_next_request() {
        // The next message must be served by the restarted actor.
        let pool = pool();
        let (relay, _) = Relay::start(pool.clone(), tokio::sync::watch::Sender::new(()), None);
        let executors = Executors::default();
        let executor = executors.start(pool, None, Duration::from_secs(2), relay);
        executor
            .send(CheckHealth)
            .await
            .expect("the database is reachable");

        let outcome = executor.send(Explode).await;

        assert!(
            matches!(outcome, Err(ExecutorError::Panicked)),
            "the panic is answered: {outcome:?}"
        );
        executor
            .send(CheckHealth)
            .await
            .expect("the restarted executor serves again");
        assert_eq!(
            executors.restarts(),
            1,
            "the supervisor restarted the executor once"
        );
    }
}
