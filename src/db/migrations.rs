use diesel::connection::SimpleConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::AsyncPgConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::ConnectOptions;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Held while migrating, so that instances starting together on a new database migrate one
/// after the other: the first applies the migrations, the others find nothing left to do.
const MIGRATION_LOCK: i64 = 0x6f72_6465_7273_7663; // "ordersvc"

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
/// `AsyncConnectionWrapper` (actix's current-thread runtime cannot block in place). The thread
/// has a runtime of its own with one worker, which drives the connection while the harness
/// blocks on it.
pub async fn run_migrations(options: &ConnectOptions) -> Result<usize, MigrationError> {
    let options = options.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = (|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|e| MigrationError::Run(e.to_string()))?;
            let conn = runtime.block_on(options.connect())?;
            let _entered = runtime.enter();
            let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
            let run = |e: diesel::result::Error| MigrationError::Run(e.to_string());
            conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
                .map_err(run)?;
            let applied = conn
                .run_pending_migrations(MIGRATIONS)
                .map(|applied| applied.len())
                .map_err(|e| MigrationError::Run(e.to_string()));
            conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
                .map_err(run)?;
            applied
        })();
        let _ = tx.send(result);
    });
    rx.await.map_err(|e| MigrationError::Join(e.to_string()))?
}
