//! Builds the running service: migrations, pool, executors, HTTP server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use tokio::sync::watch;

use crate::actors::{
    listen_for_events, start_dispatcher, DispatcherHandle, Executor, Executors, Heartbeat,
    PurgeEvents, PurgeIdempotencyKeys, Relay, Replicas,
};
use crate::api::{Draining, EventSignal};
use crate::config::Config;
use crate::db::{run_migrations, MigrationError, Pool, PoolSettings};
use crate::traces::{Traces, TracesError};

/// How long an idle keep-alive connection stays open.
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// How long a closing connection may take to shut down cleanly before it is dropped.
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Open connections per worker; more wait in the listen backlog. The database pool, not the
/// socket count, bounds throughput, so this only caps what idle or slow clients can hold.
const MAX_CONNECTIONS_PER_WORKER: usize = 4096;
/// Connections the kernel queues until a worker accepts them. Clients that open a connection
/// per request (Go's default transport keeps 2 idle ones) arrive hundreds at once; when the
/// queue is full the kernel drops their SYNs, and each waits a second for the retransmission.
const BACKLOG: u32 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Migration(#[from] MigrationError),
    #[error("cannot listen on the configured address: {0}")]
    Bind(#[from] std::io::Error),
    #[error(transparent)]
    Traces(#[from] TracesError),
}

pub struct Application {
    port: u16,
    server: Server,
    draining: web::Data<Draining>,
    shutdown_grace: Duration,
    /// The webhook dispatcher, when webhooks are configured.
    dispatcher: Option<DispatcherHandle>,
    /// The tracer, when traces are on.
    traces: Option<Traces>,
}

impl Application {
    /// Migrates the database, starts the components and binds the listener (port 0 picks a
    /// free port, which tests use). Serving starts with `run_until_stopped`.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let components = Components::start(&config).await?;
        let draining = web::Data::new(Draining::default());
        let (server, port) = serve(&config, &components, &draining)?;
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
        Ok(Self {
            port,
            server,
            draining,
            shutdown_grace: config.shutdown_grace,
            dispatcher: components.dispatcher,
            traces: components.traces,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or SIGINT, then drains: reports not ready at once, keeps serving
    /// for the grace period, then stops accepting and lets in-flight requests finish, and
    /// webhooks already sent.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        actix_web::rt::spawn(drain_on_signal(
            self.server.handle(),
            self.draining,
            self.shutdown_grace,
        ));
        let served = self.server.await;
        if let Some(dispatcher) = self.dispatcher {
            dispatcher.stop().await;
        }
        if let Some(traces) = self.traces {
            // The exporter's thread blocks while it sends.
            let _ = actix_web::rt::task::spawn_blocking(move || traces.flush()).await;
        }
        served
    }
}

/// What the HTTP server serves from, started before it binds.
struct Components {
    /// Every executor: the workers start theirs on their threads.
    executors: web::Data<Executors>,
    /// What follows the commits of every executor.
    relay: Relay,
    /// Moves when events commit, on this instance or another.
    event_signal: web::Data<EventSignal>,
    /// The webhook dispatcher, when webhooks are configured.
    dispatcher: Option<DispatcherHandle>,
    /// The tracer, when traces are on.
    traces: Option<Traces>,
}

impl Components {
    /// Migrates the database, then starts the relay, the executor of the hourly purge, the
    /// event listener and, with webhooks, the dispatcher.
    async fn start(config: &Config) -> Result<Self, StartupError> {
        let applied = run_migrations(&config.database).await?;
        let traces = config.traces.as_ref().map(Traces::start).transpose()?;
        log::info!("database ready ({applied} migration(s) applied)");
        // Background work (the NOTIFY to other instances, the hourly purge) has an executor
        // and a connection of its own on this thread, beside the workers' shares of the pool.
        let background = Pool::build(
            &config.database,
            &PoolSettings {
                max_size: 1,
                min_idle: 0,
                ..config.pool.clone()
            },
            None,
        );
        let (events_committed, events) = watch::channel(());
        let (relay, handoffs) = Relay::start(
            background.clone(),
            events_committed.clone(),
            config.webhooks.as_ref(),
        );
        let executors = web::Data::new(Executors::traced(traces.clone()));
        let purger = executors.start(background, None, config.ping_timeout, relay.clone());
        if let Some(reads) = &config.reads {
            actix_web::rt::spawn(heartbeat(purger.clone(), reads.max_lag / 4));
        }
        actix_web::rt::spawn(purge_expired(purger, config.events_retention));
        listen_for_events(config.database.clone(), events_committed);
        // The relay has handoffs exactly when there are webhooks.
        let dispatcher = config
            .webhooks
            .clone()
            .zip(handoffs)
            .and_then(|(settings, handoffs)| {
                start_dispatcher(config.database.clone(), settings, handoffs, traces.clone())
            });
        Ok(Self {
            executors,
            relay,
            event_signal: web::Data::new(EventSignal(events)),
            dispatcher,
            traces,
        })
    }
}

/// Builds the HTTP server on the components, binds its listener and starts it; answers the
/// port it listens on.
fn serve(
    config: &Config,
    components: &Components,
    draining: &web::Data<Draining>,
) -> std::io::Result<(Server, u16)> {
    let executors = components.executors.clone();
    let relay = components.relay.clone();
    let (workers, database, pool, reads, ping_timeout) = (
        config.executors,
        config.database.clone(),
        config.pool.clone(),
        config.reads.clone(),
        config.ping_timeout,
    );
    let next_worker = Arc::new(AtomicUsize::new(0));
    let event_signal = components.event_signal.clone();
    let api_keys = web::Data::new(config.api_keys.clone());
    let draining = draining.clone();
    let cors_origins = config.cors_allowed_origins.clone();
    let request_timeout = config.request_timeout;
    let traces = components.traces.clone();
    // Called once on each worker's thread: its executor and its share of the pool live there.
    let server = HttpServer::new(move || {
        let worker = next_worker.fetch_add(1, Ordering::Relaxed) % workers;
        let replicas = reads.as_ref().map(|reads| {
            let share = reads.pool.share(worker, workers);
            Replicas::new(Pool::build(&reads.database, &share, traces.as_ref()), reads)
        });
        let executor = web::Data::new(executors.start(
            Pool::build(&database, &pool.share(worker, workers), traces.as_ref()),
            replicas,
            ping_timeout,
            relay.clone(),
        ));
        App::new()
            .wrap(from_fn(move |req, next| {
                crate::api::body_deadline(req, next, request_timeout)
            }))
            .wrap(crate::api::cors(&cors_origins))
            // Sees every answer, the other middleware's included, and gives error answers
            // their JSON body.
            .wrap(from_fn({
                let traces = traces.clone();
                move |req, next| crate::api::observe(req, next, traces.clone())
            }))
            // Outermost, so that it compresses the body that leaves (an error's too): gzip,
            // br or zstd when the client asks and the body is large enough to gain (a
            // 100-order page shrinks ~10×).
            .wrap(from_fn(crate::api::compress))
            .app_data(executor)
            .app_data(executors.clone())
            .app_data(api_keys.clone())
            .app_data(draining.clone())
            .app_data(event_signal.clone())
            .configure(crate::api::configure)
    })
    .workers(workers)
    .client_request_timeout(config.request_timeout)
    .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
    .keep_alive(KEEP_ALIVE)
    .max_connections(MAX_CONNECTIONS_PER_WORKER)
    .backlog(BACKLOG)
    // Stopping is ours: first drain (see `run_until_stopped`), then actix's graceful stop.
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_TIMEOUT.as_secs())
    // Bound by actix, which listens with `BACKLOG`: a listener bound by the standard
    // library listens with 128 whatever `backlog` says.
    .bind((config.host, config.port))?;
    let port = server
        .addrs()
        .first()
        .map_or(config.port, |addr| addr.port());
    Ok((server.run(), port))
}

/// How long in-flight requests may take to finish once the listener has closed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

async fn drain_on_signal(server: ServerHandle, draining: web::Data<Draining>, grace: Duration) {
    use actix_web::rt::signal::unix::{signal, SignalKind};

    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        log::error!("cannot listen for SIGTERM/SIGINT; stop the server with SIGKILL");
        return;
    };
    let name = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    draining.begin();
    log::info!(
        "{name}: reporting not ready, serving for {:.1} s more, then stopping (a second signal stops at once)",
        grace.as_secs_f64()
    );
    tokio::select! {
        _ = actix_web::rt::time::sleep(grace) => {},
        _ = terminate.recv() => {},
        _ = interrupt.recv() => {},
    }
    log::info!("no longer accepting connections; finishing in-flight requests");
    server.stop(true).await;
}

/// While reads go to replicas: an empty commit every `every`, so that a standby that keeps up
/// never looks older than `4 × every` (`DB_READ_MAX_LAG`), even while no order is written.
async fn heartbeat(executor: Executor, every: Duration) {
    let mut ticks = actix_web::rt::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = executor.send(Heartbeat).await {
            log::debug!("no replication heartbeat: {e}");
        }
    }
}

/// Idempotency keys protect retries of recent requests only: after a day they may go.
const IDEMPOTENCY_KEY_TTL: Duration = Duration::from_secs(24 * 60 * 60);
const PURGE_EVERY: Duration = Duration::from_secs(60 * 60);

/// Deletes expired idempotency keys and events once an hour, for as long as the server runs.
/// Every instance does it; two purges at once delete each row once and the other finds none.
async fn purge_expired(executor: Executor, events_retention: Duration) {
    let mut ticks = actix_web::rt::time::interval(PURGE_EVERY);
    loop {
        ticks.tick().await;
        match executor
            .send(PurgeIdempotencyKeys(IDEMPOTENCY_KEY_TTL))
            .await
        {
            Ok(0) => {}
            Ok(n) => log::info!("purged {n} idempotency key(s) older than a day"),
            Err(e) => log::warn!("could not purge idempotency keys: {e}"),
        }
        match executor.send(PurgeEvents(events_retention)).await {
            Ok(0) => {}
            Ok(n) => log::info!(
                "purged {n} event(s) older than {}",
                humantime::format_duration(events_retention)
            ),
            Err(e) => log::warn!("could not purge events: {e}"),
        }
    }
}
