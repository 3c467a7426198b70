//! Builds the running service: migrations, pool, executors, HTTP server.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::Logger;
use actix_web::{web, App, HttpServer};

use crate::actors::{Executors, PurgeIdempotencyKeys};
use crate::config::Config;
use crate::db::{build_pool, run_migrations, MigrationError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Migration(#[from] MigrationError),
    #[error("cannot listen on the configured address: {0}")]
    Bind(#[from] std::io::Error),
}

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Migrates the database, starts the executors and binds the listener (port 0 picks a free
    /// port, which tests use). Serving starts with `run_until_stopped`.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let applied = run_migrations(&config.database_url).await?;
        log::info!("database ready ({applied} migration(s) applied)");
        let pool = build_pool(&config.database_url, &config.pool);
        let executors = web::Data::new(Executors::start(
            config.executors,
            pool,
            config.ping_timeout,
        ));
        actix_web::rt::spawn(purge_idempotency_keys(executors.clone()));
        let listener = TcpListener::bind((config.host, config.port))?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(Logger::new(r#"%a "%r" %s %b %Dms"#))
                .app_data(executors.clone())
                .configure(crate::api::configure)
        })
        .listen(listener)?
        .run();
        log::info!(
            "listening on {}:{port} with {} db executor(s)",
            config.host,
            config.executors
        );
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Idempotency keys protect retries of recent requests only: after a day they may go.
const IDEMPOTENCY_KEY_TTL: Duration = Duration::from_secs(24 * 60 * 60);
const PURGE_EVERY: Duration = Duration::from_secs(60 * 60);

/// Deletes expired idempotency keys once an hour, for as long as the server runs.
async fn purge_idempotency_keys(executors: web::Data<Executors>) {
    let mut ticks = actix_web::rt::time::interval(PURGE_EVERY);
    loop {
        ticks.tick().await;
        match executors
            .send(PurgeIdempotencyKeys(IDEMPOTENCY_KEY_TTL))
            .await
        {
            Ok(0) => {}
            Ok(n) => log::info!("purged {n} idempotency key(s) older than a day"),
            Err(e) => log::warn!("could not purge idempotency keys: {e}"),
        }
    }
}
