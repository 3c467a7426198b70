use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, Handler, Message, Supervisor};

use super::{DbExecutor, ExecutorError};
use crate::db::Pool;

/// The supervised executors and a round-robin dispatcher over them.
///
/// Each executor's mailbox is bounded (actix's default of 16 messages) and `send` waits for
/// room: under overload, requests queue here instead of piling up inside the actors.
pub struct Executors {
    addrs: Vec<Addr<DbExecutor>>,
    next: AtomicUsize,
    restarts: Arc<AtomicU64>,
}

impl Executors {
    /// Starts `count` executors on the current arbiter, each under a `Supervisor`.
    pub fn start(count: usize, pool: Pool, ping_timeout: Duration) -> Self {
        let restarts = Arc::new(AtomicU64::new(0));
        let addrs = (0..count.max(1))
            .map(|index| {
                let (pool, restarts) = (pool.clone(), restarts.clone());
                Supervisor::start(move |_| DbExecutor::new(index, pool, ping_timeout, restarts))
            })
            .collect();
        Self {
            addrs,
            next: AtomicUsize::new(0),
            restarts,
        }
    }

    /// How many times an executor was restarted after a panic since start-up.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    pub async fn send<M, T>(&self, message: M) -> Result<T, ExecutorError>
    where
        M: Message<Result = Result<T, ExecutorError>> + Send + 'static,
        T: Send + 'static,
        DbExecutor: Handler<M>,
    {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.addrs.len();
        self.addrs[turn].send(message).await?
    }
}
