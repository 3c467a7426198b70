//! Builds the running service: migrations, pool, executors, HTTP server.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{from_fn, Logger};
use actix_web::{web, App, HttpServer};

use crate::actors::Executors;
use crate::config::Config;
use crate::db::{build_pool, run_migrations, MigrationError};

/// How long an idle keep-alive connection stays open.
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// How long a closing connection may take to shut down cleanly before it is dropped.
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Open connections per worker; more wait in the listen backlog. The database pool, not the
/// socket count, bounds throughput, so this only caps what idle or slow clients can hold.
const MAX_CONNECTIONS_PER_WORKER: usize = 4096;
/// Connections the kernel queues while every worker is at its maximum.
const BACKLOG: u32 = 1024;

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
        let api_keys = web::Data::new(config.api_keys.clone());
        let request_timeout = config.request_timeout;
        let listener = TcpListener::bind((config.host, config.port))?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(move |req, next| {
                    crate::api::body_deadline(req, next, request_timeout)
                }))
                .wrap(Logger::new(r#"%a "%r" %s %b %Dms"#))
                .app_data(executors.clone())
                .app_data(api_keys.clone())
                .configure(crate::api::configure)
        })
        .client_request_timeout(config.request_timeout)
        .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
        .keep_alive(KEEP_ALIVE)
        .max_connections(MAX_CONNECTIONS_PER_WORKER)
        .backlog(BACKLOG)
        .listen(listener)?
        .run();
        log::info!(
            "listening on {}:{port} with {} db executor(s); API keys {}",
            config.host,
            config.executors,
            if config.api_keys.required() {
                "required on /api/v1"
            } else {
                "not required"
            }
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
