//! The bb8 pool of diesel-async connections, and what it knows of the database's reachability.
//!
//! bb8 hides a failed connection attempt from the request waiting for it: the waiter sleeps
//! until the pool's `connection_timeout` (3 s) while bb8 retries. During an outage every
//! request, and every load balancer's health probe, would take those 3 s. So a failed attempt
//! (reported to the pool's error sink) opens an outage: waiting requests are answered at once,
//! new ones fail fast without touching the pool, and a background probe connects every
//! `PROBE_EVERY` until one attempt succeeds, which closes the outage.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError, PoolableConnection, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::FutureExt;
use tokio::sync::watch;

use super::statements::StatementSpans;
use super::{ConnectOptions, StoreError};
use crate::metrics;
use crate::traces::Traces;

type Manager = AsyncDieselConnectionManager<AsyncPgConnection>;
pub type PooledConnection = bb8::PooledConnection<'static, Manager>;

/// How often a database found unreachable is tried again. Short, since a probe is one
/// connection attempt and readiness comes back only when one succeeds.
const PROBE_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub max_size: u32,
    pub min_idle: u32,
    pub max_lifetime: Duration,
    pub idle_timeout: Duration,
    /// How long a request may wait for a connection before it is answered 503.
    pub connection_timeout: Duration,
}

impl PoolSettings {
    /// Part `index` of `parts` pools that together keep to these settings: the sizes are
    /// divided, and the first pools take what does not divide evenly.
    pub fn share(&self, index: usize, parts: usize) -> Self {
        let parts = u32::try_from(parts.max(1)).unwrap_or(u32::MAX);
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let part = |total: u32| total / parts + u32::from(index < total % parts);
        Self {
            max_size: part(self.max_size),
            min_idle: part(self.min_idle),
            ..self.clone()
        }
    }
}

#[derive(Clone)]
pub struct Pool {
    connections: bb8::Pool<Manager>,
    outage: Arc<Outage>,
}

impl Pool {
    /// Builds the pool without connecting: the service starts (and reports itself not ready)
    /// even while the database is still coming up. With `traces`, its connections make a span
    /// of each statement a sampled trace runs.
    pub fn build(
        options: &ConnectOptions,
        settings: &PoolSettings,
        traces: Option<&Traces>,
    ) -> Self {
        let outage = Arc::new(Outage {
            since: watch::Sender::new(None),
            options: options.clone(),
        });
        let mut config = ManagerConfig::default();
        let connect = options.clone();
        let traces = traces.cloned();
        config.custom_setup = Box::new(move |_url| {
            let (connect, traces) = (connect.clone(), traces.clone());
            async move {
                let mut conn = connect.connect().await?;
                if let Some(traces) = traces {
                    conn.set_instrumentation(StatementSpans::new(traces));
                }
                Ok(conn)
            }
            .boxed()
        });
        // A query per checkout would cost a round trip on every request. Checking that the
        // socket is still open is free and drops connections a database restart has closed.
        config.recycling_method =
            RecyclingMethod::CustomFunction(Box::new(|conn: &mut AsyncPgConnection| {
                let broken = conn.is_broken();
                async move {
                    if broken {
                        Err(DieselError::DatabaseError(
                            DatabaseErrorKind::ClosedConnection,
                            Box::new("connection closed".to_owned()),
                        ))
                    } else {
                        Ok(())
                    }
                }
                .boxed()
            }));
        // The URL is unused: `custom_setup` connects with the parsed options.
        let manager = Manager::new_with_config("", config);
        let connections = bb8::Pool::builder()
            .max_size(settings.max_size)
            .min_idle(Some(settings.min_idle))
            .max_lifetime(Some(settings.max_lifetime))
            .idle_timeout(Some(settings.idle_timeout))
            .connection_timeout(settings.connection_timeout)
            .error_sink(Box::new(OutageSink(Arc::downgrade(&outage))))
            .build_unchecked(manager);
        Self {
            connections,
            outage,
        }
    }

    /// A pooled connection, or `Unavailable` at once while the database is known unreachable.
    pub async fn get(&self) -> Result<PooledConnection, StoreError> {
        let mut since = self.outage.since.subscribe();
        if since.borrow_and_update().is_some() {
            return Err(self.outage.unavailable());
        }
        tokio::select! {
            biased;
            conn = self.connections.get_owned() => conn.map_err(StoreError::from),
            _ = since.wait_for(Option::is_some) => Err(self.outage.unavailable()),
        }
    }

    /// Connections open and idle, and the history of waits for one.
    pub fn state(&self) -> bb8::State {
        self.connections.state()
    }
}

/// Whether the database is unreachable, and since when. Shared by the pool, its error sink and
/// the probe; the sink and the probe hold it weakly, so dropping the pool ends the probe.
struct Outage {
    since: watch::Sender<Option<Instant>>,
    options: ConnectOptions,
}

impl Outage {
    fn unavailable(&self) -> StoreError {
        metrics::db_error("unreachable");
        StoreError::Unavailable("the database is unreachable; retrying in the background".into())
    }

    /// A connection attempt failed: open an outage unless one is open, and start probing.
    fn begin(self: &Arc<Self>, error: &PoolError) {
        let opened = self.since.send_if_modified(|since| {
            let closed = since.is_none();
            if closed {
                *since = Some(Instant::now());
            }
            closed
        });
        if !opened {
            return;
        }
        // A read pool's requests go to the primary meanwhile; the primary's are answered 503.
        log::warn!(
            "database {:?} unreachable ({error}); its requests fail at once until a connection succeeds",
            self.options
        );
        // The sink runs inside bb8's tasks, on the runtime that serves the pool.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(probe(Arc::downgrade(self)));
            }
            Err(_) => log::error!("no runtime to probe the database from"),
        }
    }
}

/// Connects every `PROBE_EVERY` until an attempt succeeds, then closes the outage.
async fn probe(outage: Weak<Outage>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(outage) = outage.upgrade() else {
            return;
        };
        if outage.options.connect().await.is_ok() {
            if let Some(since) = outage.since.send_replace(None) {
                log::info!(
                    "database reachable again after {:.1} s",
                    since.elapsed().as_secs_f64()
                );
            }
            return;
        }
    }
}

/// Connection failures happen in the pool's background tasks; this is where they are seen.
#[derive(Clone)]
struct OutageSink(Weak<Outage>);

impl std::fmt::Debug for OutageSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutageSink")
    }
}

impl bb8::ErrorSink<PoolError> for OutageSink {
    fn sink(&self, error: PoolError) {
        match (&error, self.0.upgrade()) {
            (PoolError::ConnectionError(_), Some(outage)) => {
                metrics::db_error("connect");
                outage.begin(&error);
            }
            // A pooled connection found closed at checkout says nothing of the database now
            // (a restart, a proxy's idle timeout): the next attempt to connect will tell.
            _ => log::warn!("database connection dropped: {error}"),
        }
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<PoolError>> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_of_the_pool_settings_add_up_to_them() {
        let whole = PoolSettings {
            max_size: 16,
            min_idle: 3,
            max_lifetime: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30),
            connection_timeout: Duration::from_secs(3),
        };
        for parts in 1..=5 {
            let shares: Vec<_> = (0..parts).map(|i| whole.share(i, parts)).collect();
            let sizes: Vec<u32> = shares.iter().map(|share| share.max_size).collect();
            assert_eq!(sizes.iter().sum::<u32>(), 16, "{parts} parts: {sizes:?}");
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            let idle: u32 = shares.iter().map(|share| share.min_idle).sum();
            assert_eq!(idle, 3, "{parts} parts");
            assert!(shares.iter().all(|share| share.min_idle <= share.max_size));
            assert!(shares
                .iter()
                .all(|share| share.connection_timeout == whole.connection_timeout));
        }
    }
}
