use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorContext, ActorFutureExt, Context, Handler, MailboxError, ResponseActFuture,
    Supervised, WrapFuture,
};
use diesel_async::AsyncPgConnection;
use futures_util::FutureExt;

use super::messages::{ChangeStatus, CheckHealth, CreateOrder, GetOrder, ListOrders};
use crate::db::{self, OrderPage, Pool, StoreError};
use crate::domain::Order;

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database executor panicked")]
    Panicked,
    #[error("database executor unreachable: {0}")]
    Mailbox(#[from] MailboxError),
}

/// Runs queries for the messages it receives, each on its own pooled connection.
///
/// Handlers return `ResponseActFuture`, which the actor spawns rather than waits on, so one
/// executor has many queries in flight; the pool bounds how many reach the database at once.
pub struct DbExecutor {
    index: usize,
    pool: Pool,
    ping_timeout: Duration,
    /// Shared with the executor set: how many times any executor was restarted.
    restarts: Arc<AtomicU64>,
}

impl DbExecutor {
    pub fn new(index: usize, pool: Pool, ping_timeout: Duration, restarts: Arc<AtomicU64>) -> Self {
        Self {
            index,
            pool,
            ping_timeout,
            restarts,
        }
    }

    /// Runs `work` on a pooled connection. A panic inside it is caught here, answered as
    /// `Panicked`, and stops the actor so that its `Supervisor` starts a fresh one.
    fn run<T, F>(&self, work: F) -> ResponseActFuture<Self, Result<T, ExecutorError>>
    where
        T: 'static,
        F: AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, StoreError> + 'static,
    {
        let pool = self.pool.clone();
        let job = async move {
            let mut conn = pool.get_owned().await?;
            work(&mut conn).await
        };
        Box::pin(AssertUnwindSafe(job).catch_unwind().into_actor(self).map(
            |outcome, executor, ctx| match outcome {
                Ok(result) => result.map_err(ExecutorError::from),
                Err(panic) => {
                    log::error!(
                        "db executor {} panicked ({}); restarting it",
                        executor.index,
                        panic_message(panic.as_ref())
                    );
                    ctx.stop();
                    Err(ExecutorError::Panicked)
                }
            },
        ))
    }
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
}

impl Supervised for DbExecutor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        log::warn!("db executor {} restarted", self.index);
    }
}

impl Handler<CreateOrder> for DbExecutor {
    type Result = ResponseActFuture<Self, Result<Order, ExecutorError>>;

    fn handle(&mut self, CreateOrder(order): CreateOrder, _: &mut Context<Self>) -> Self::Result {
        self.run(async move |conn| db::insert_order(conn, &order).await)
    }
}

impl Handler<GetOrder> for DbExecutor {
    type Result = ResponseActFuture<Self, Result<Option<Order>, ExecutorError>>;

    fn handle(&mut self, GetOrder(id): GetOrder, _: &mut Context<Self>) -> Self::Result {
        self.run(async move |conn| db::find_order(conn, id).await)
    }
}

impl Handler<ListOrders> for DbExecutor {
    type Result = ResponseActFuture<Self, Result<OrderPage, ExecutorError>>;

    fn handle(&mut self, ListOrders(page): ListOrders, _: &mut Context<Self>) -> Self::Result {
        self.run(async move |conn| db::orders_page(conn, page).await)
    }
}

impl Handler<ChangeStatus> for DbExecutor {
    type Result = ResponseActFuture<Self, Result<Order, ExecutorError>>;

    fn handle(
        &mut self,
        ChangeStatus { id, to }: ChangeStatus,
        _: &mut Context<Self>,
    ) -> Self::Result {
        self.run(async move |conn| db::change_status(conn, id, to).await)
    }
}

impl Handler<CheckHealth> for DbExecutor {
    type Result = ResponseActFuture<Self, Result<(), ExecutorError>>;

    fn handle(&mut self, _: CheckHealth, _: &mut Context<Self>) -> Self::Result {
        let timeout = self.ping_timeout;
        self.run(async move |conn| {
            tokio::time::timeout(timeout, db::ping(conn))
                .await
                .map_err(|_| {
                    StoreError::Unavailable(format!("no answer to SELECT 1 within {timeout:?}"))
                })?
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use actix::{Handler, Message};

    use super::*;
    use crate::actors::{CheckHealth, Executors};
    use crate::db::{build_pool, PoolSettings};

    /// A message whose handler panics inside the executor's guarded boundary, as a bug would.
    struct Explode;

    impl Message for Explode {
        type Result = Result<(), ExecutorError>;
    }

    impl Handler<Explode> for DbExecutor {
        type Result = ResponseActFuture<Self, Result<(), ExecutorError>>;

        fn handle(&mut self, _: Explode, _: &mut Context<Self>) -> Self::Result {
            self.run(async |_conn| panic!("simulated bug"))
        }
    }

    fn pool() -> Pool {
        // Any reachable database will do: only `SELECT 1` runs. `make test` starts one.
        let url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".into());
        let settings = PoolSettings {
            max_size: 2,
            min_idle: 0,
            max_lifetime: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            connection_timeout: Duration::from_secs(5),
        };
        build_pool(&url, &settings)
    }

    #[actix_rt::test]
    async fn a_panicking_executor_is_restarted_and_serves_the_next_request() {
        // One executor, so the next message must be served by the restarted actor.
        let executors = Executors::start(1, pool(), Duration::from_secs(2));
        executors
            .send(CheckHealth)
            .await
            .expect("the database is reachable");

        let outcome = executors.send(Explode).await;

        assert!(
            matches!(outcome, Err(ExecutorError::Panicked)),
            "the panic is answered: {outcome:?}"
        );
        executors
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
