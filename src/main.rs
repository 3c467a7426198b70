use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use order_service::config::Config;
use order_service::startup::Application;

/// Every request allocates and frees many small buffers across threads (HTTP worker, executor,
/// connection task); mimalloc's per-thread free lists do that with less contention and
/// fragmentation than glibc's malloc (measured with `make bench`: see docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: order-service [healthcheck [ready|live]]";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None => serve(),
        Some("healthcheck") => match (args.next().as_deref(), args.next()) {
            (None | Some("ready"), None) => healthcheck("/health/ready"),
            (Some("live"), None) => healthcheck("/health/live"),
            _ => usage(),
        },
        Some(_) => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

#[actix_web::main]
async fn serve() -> ExitCode {
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

/// `order-service healthcheck`: asks the server running beside it (same environment, so the
/// same HOST and PORT) for `path` and exits 0 on a 200, 1 otherwise. A container image's
/// HEALTHCHECK runs it, so the image needs no shell or curl; plain HTTP/1.1 over std's TCP is
/// all a probe of our own loopback listener takes.
fn healthcheck(path: &str) -> ExitCode {
    // A .env that the server read counts here too; an unreadable one shows up in the config.
    let _ = dotenvy::dotenv();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("healthcheck: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A server bound to every address (the default) is asked on loopback.
    let host = match config.host {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let addr = SocketAddr::new(host, config.port);
    match http_status(addr, path) {
        Ok(200) => {
            println!("healthcheck: {path} on {addr} answered 200");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            eprintln!("healthcheck: {path} on {addr} answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("healthcheck: {path} on {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The status code of `GET path`, read from the answer's first line.
fn http_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    // Within the 3 s timeout the image's HEALTHCHECK gives, so that a hung server fails the
    // probe here with a message rather than by being killed.
    const TIMEOUT: Duration = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    // "HTTP/1.1 200 OK" and more: the status line fits in the first 64 bytes.
    let mut head = Vec::with_capacity(64);
    stream.take(64).read_to_end(&mut head)?;
    let head = String::from_utf8_lossy(&head);
    head.strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            let line = head.lines().next().unwrap_or_default();
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not an HTTP answer: {line:?}"),
            )
        })
}
