use diesel::Connection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::AsyncPgConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("cannot connect to the database to migrate it: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("migration failed: {0}")]
    Run(String),
    #[error("migration thread failed: {0}")]
    Join(String),
}

/// Applies pending migrations and returns how many ran.
///
/// diesel's migration harness is synchronous; it runs on a plain thread through
/// `AsyncConnectionWrapper`, which brings its own runtime (actix's current-thread runtime cannot
/// block in place).
pub async fn run_migrations(database_url: &str) -> Result<usize, MigrationError> {
    let url = database_url.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = (|| {
            let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)?;
            conn.run_pending_migrations(MIGRATIONS)
                .map(|applied| applied.len())
                .map_err(|e| MigrationError::Run(e.to_string()))
        })();
        let _ = tx.send(result);
    });
    rx.await.map_err(|e| MigrationError::Join(e.to_string()))?
}
