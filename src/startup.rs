//! Builds the running service: migrations, pool, executors, HTTP server.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::Logger;
use actix_web::{web, App, HttpServer};

use crate::actors::Executors;
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
