use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError, PoolableConnection, RecyclingMethod,
};
use diesel_async::AsyncPgConnection;
use futures_util::FutureExt;

pub type Pool = bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub max_size: u32,
    pub min_idle: u32,
    pub max_lifetime: Duration,
    pub idle_timeout: Duration,
    /// How long a request may wait for a connection before it is answered 503.
    pub connection_timeout: Duration,
}

/// Builds the pool without connecting: the service starts (and reports itself unhealthy)
/// even while the database is still coming up.
pub fn build_pool(database_url: &str, settings: &PoolSettings) -> Pool {
    let mut config = ManagerConfig::default();
    // A query per checkout would cost a round trip on every request. Checking that the socket is
    // still open is free and drops connections a database restart has closed.
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
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(database_url, config);
    bb8::Pool::builder()
        .max_size(settings.max_size)
        .min_idle(Some(settings.min_idle))
        .max_lifetime(Some(settings.max_lifetime))
        .idle_timeout(Some(settings.idle_timeout))
        .connection_timeout(settings.connection_timeout)
        .error_sink(Box::new(LogErrors))
        .build_unchecked(manager)
}

/// Connection failures happen in the pool's background tasks; without this they are silent.
#[derive(Debug, Clone, Copy)]
struct LogErrors;

impl bb8::ErrorSink<PoolError> for LogErrors {
    fn sink(&self, error: PoolError) {
        log::warn!("database connection failed: {error}");
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<PoolError>> {
        Box::new(*self)
    }
}
