//! Reads served by replicas, never older than what the client has seen.
//!
//! With `DATABASE_READ_URL` set, an executor reads orders, their history and list pages on a
//! replica when one can serve them, and on the primary when none can:
//! - a read with a consistency token (the commit point of the client's last write, or where
//!   its previous page was read) waits, a bounded time, for its replica to have replayed that
//!   point, and otherwise goes to the primary: never an older state, whatever the lag;
//! - a read without one goes to a replica whose data is at most `max_lag` old;
//! - a replica's "no such order" is asked again on the primary, so that an order a client was
//!   just told about is never answered 404;
//! - any error on the replica side goes to the primary: a replica that stops fails no request.
//!
//! Without it, every read runs on the primary as before, with no question asked first.

use std::time::{Duration, Instant};

use diesel_async::AsyncPgConnection;

use crate::db::{self, ConnectOptions, Pool, PoolSettings, StoreError};
use crate::domain::ConsistencyToken;
use crate::metrics;

/// The first pause between two looks at a replica that has not reached a token; each pause
/// doubles. Replicas close to the primary catch up within a millisecond or two.
const FIRST_PAUSE: Duration = Duration::from_millis(1);

/// Where the replicas are and what a read may accept from them.
#[derive(Debug, Clone)]
pub struct ReadSettings {
    pub database: ConnectOptions,
    pub pool: PoolSettings,
    /// A read without a token goes to a replica only while its data is at most this old.
    pub max_lag: Duration,
    /// How long a read with a token waits for a replica to reach it before the primary
    /// serves it.
    pub wait: Duration,
}

/// An executor's way to the replicas: its share of the read pool.
#[derive(Clone)]
pub struct Replicas {
    pool: Pool,
    max_lag: Duration,
    wait: Duration,
}

impl Replicas {
    pub fn new(pool: Pool, settings: &ReadSettings) -> Self {
        Self {
            pool,
            max_lag: settings.max_lag,
            wait: settings.wait,
        }
    }
}

/// An answer, and with replicas configured the point it stands at: for a write, its commit;
/// for a read, a point its snapshot does not pass.
#[derive(Debug)]
pub struct Positioned<T> {
    pub value: T,
    pub position: Option<ConsistencyToken>,
}

/// Why a read meant for a replica went to the primary.
#[derive(Debug, Clone, Copy)]
enum Fallback {
    TokenWait,
    Lag,
    NotFound,
    ReplicaError,
}

impl Fallback {
    fn label(self) -> &'static str {
        match self {
            Self::TokenWait => "token_wait",
            Self::Lag => "lag",
            Self::NotFound => "not_found",
            Self::ReplicaError => "replica_error",
        }
    }
}

/// One read: what it must see, and whether its answer needs the point it was read at.
pub(super) struct Read {
    /// The client's token: the read must see this point.
    at: Option<ConsistencyToken>,
    /// Whether the answer carries its read position (list pages, for their cursor).
    positioned: bool,
}

impl Read {
    /// A read of one order or its history, which must see `at`.
    pub fn seeing(at: Option<ConsistencyToken>) -> Self {
        Self {
            at,
            positioned: false,
        }
    }

    /// A read of a list page, which must see `at` and, with `positioned`, answers the point it
    /// was read at.
    pub fn page(at: Option<ConsistencyToken>, positioned: bool) -> Self {
        Self { at, positioned }
    }

    /// Runs `work` where this read may be served: a replica that can, else the primary. An
    /// answer that `found` says is empty is only given once the primary has given it too.
    pub async fn run<T>(
        &self,
        primary: &Pool,
        replicas: Option<&Replicas>,
        found: impl Fn(&T) -> bool,
        work: impl AsyncFn(&AsyncPgConnection) -> Result<T, StoreError>,
    ) -> Result<Positioned<T>, StoreError> {
        let Some(replicas) = replicas else {
            let mut conn = primary.get().await?;
            let value = work(&conn).await.map_err(|e| e.on_connection(&mut conn))?;
            return Ok(Positioned {
                value,
                position: None,
            });
        };
        let fallback = match self.on_replica(replicas, &work).await {
            Ok(Ok(read)) if found(&read.value) => {
                metrics::db_read("replica");
                return Ok(read);
            }
            Ok(Ok(_)) => Fallback::NotFound,
            Ok(Err(fallback)) => fallback,
            Err(e) => {
                log::debug!("a read on a replica failed ({e}); reading on the primary");
                Fallback::ReplicaError
            }
        };
        metrics::db_read_fallback(fallback.label());
        metrics::db_read("primary");
        let mut conn = primary.get().await?;
        self.positioned(&conn, &work)
            .await
            .map_err(|e| e.on_connection(&mut conn))
    }

    /// The read on a replica connection, if the replica can serve it; else why not.
    ///
    /// The replica's standing is asked in the same round trip as the read, and before it:
    /// diesel-async sends the statements of a connection's futures in the order they are first
    /// polled (`join!` polls in order; a statement being prepared holds the connection's
    /// statement cache until it is sent, so the next waits), and PostgreSQL runs them in that
    /// order, so the read's snapshot is taken after the standing was. `pipelines_in_order`
    /// below holds diesel-async to that. When the replica is not there yet, the read is thrown
    /// away, and only the standing is asked again until it is.
    async fn on_replica<T>(
        &self,
        replicas: &Replicas,
        work: &impl AsyncFn(&AsyncPgConnection) -> Result<T, StoreError>,
    ) -> Result<Result<Positioned<T>, Fallback>, StoreError> {
        let mut conn = replicas.pool.get().await?;
        let (standing, read) =
            futures_util::join!(db::standing(&conn), self.positioned(&conn, work));
        let standing = standing.map_err(|e| e.on_connection(&mut conn))?;
        let Some(at) = self.at else {
            if standing.lag.is_none_or(|lag| lag > replicas.max_lag) {
                return Ok(Err(Fallback::Lag));
            }
            return read.map(Ok).map_err(|e| e.on_connection(&mut conn));
        };
        if standing.position >= at {
            return read.map(Ok).map_err(|e| e.on_connection(&mut conn));
        }
        let started = Instant::now();
        let mut pause = FIRST_PAUSE;
        loop {
            let left = replicas.wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                metrics::db_read_wait(started.elapsed());
                return Ok(Err(Fallback::TokenWait));
            }
            tokio::time::sleep(pause.min(left)).await;
            pause *= 2;
            let standing = db::standing(&conn)
                .await
                .map_err(|e| e.on_connection(&mut conn))?;
            if standing.position >= at {
                metrics::db_read_wait(started.elapsed());
                // Replay only moves on: a read that starts now sees at least this point.
                return self
                    .positioned(&conn, work)
                    .await
                    .map(Ok)
                    .map_err(|e| e.on_connection(&mut conn));
            }
        }
    }

    /// `work` on `conn` and, if this read wants it, the point it was read at: asked in the
    /// same round trip, after the read, so that the read's snapshot does not pass it.
    async fn positioned<T>(
        &self,
        conn: &AsyncPgConnection,
        work: &impl AsyncFn(&AsyncPgConnection) -> Result<T, StoreError>,
    ) -> Result<Positioned<T>, StoreError> {
        if !self.positioned {
            return Ok(Positioned {
                value: work(conn).await?,
                position: None,
            });
        }
        let (value, position) = futures_util::join!(work(conn), db::current_position(conn));
        Ok(Positioned {
            value: value?,
            position: Some(position?),
        })
    }
}

#[cfg(test)]
mod tests {
    use diesel::sql_types::Text;
    use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};

    use super::*;

    diesel::define_sql_function!(fn nextval(sequence: Text) -> BigInt);

    /// A fresh connection with a sequence of its own; any reachable database will do.
    async fn connection() -> AsyncPgConnection {
        let mut conn = AsyncPgConnection::establish(&crate::actors::test_database_url())
            .await
            .expect("`make test` starts a database");
        conn.batch_execute("CREATE TEMPORARY SEQUENCE pipelined")
            .await
            .expect("a temporary sequence");
        conn
    }

    /// What `Read::on_replica` relies on: two statements' futures on one connection, joined,
    /// run in PostgreSQL in the order they are first polled, whether or not either statement
    /// was prepared on that connection before.
    #[tokio::test]
    async fn pipelines_in_order() {
        let first = || diesel::select(nextval("pipelined"));
        let second = || diesel::select(nextval("pipelined") + 0_i64);
        for warm in [None, Some("first"), Some("second"), Some("both")] {
            let conn = connection().await;
            if matches!(warm, Some("first" | "both")) {
                let _: i64 = first().get_result(&mut &conn).await.unwrap();
            }
            if matches!(warm, Some("second" | "both")) {
                let _: i64 = second().get_result(&mut &conn).await.unwrap();
            }
            for _ in 0..20 {
                let (a, b) = futures_util::join!(
                    first().get_result::<i64>(&mut &conn),
                    second().get_result::<i64>(&mut &conn)
                );
                let (a, b) = (a.unwrap(), b.unwrap());
                assert!(a < b, "prepared before: {warm:?}: {a} ran after {b}");
            }
        }
    }
}
