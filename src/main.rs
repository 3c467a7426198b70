use std::process::ExitCode;

use order_service::config::Config;
use order_service::startup::Application;

/// Every request allocates and frees many small buffers across threads (HTTP worker, executor,
/// connection task); mimalloc's per-thread free lists do that with less contention and
/// fragmentation than glibc's malloc (measured with `make bench`: see docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> ExitCode {
    let dotenv = dotenvy::dotenv();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(e) = dotenv.as_ref().map_err(|e| (e.not_found(), e)) {
        if !e.0 {
            log::error!("cannot read .env: {}", e.1);
            return ExitCode::FAILURE;
        }
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            log::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("server failed: {e}");
            ExitCode::FAILURE
        }
    }
}
