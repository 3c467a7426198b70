//! Chaos: the real server binary against its own durable PostgreSQL, which is restarted in
//! immediate mode (a crash, as far as clients can tell) in the middle of a create load whose
//! clients retry with idempotency keys; then SIGTERM in the middle of another load, which the
//! server drains: not ready within the grace period, still serving through it, then exit 0.
//!
//! Checks that no acknowledged order is lost, none is duplicated, the server never exits on
//! its own, and it shuts down cleanly. Runs under `make test` (a test target without libtest's
//! harness, so its figures are printed).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::load::{verify, Load, Stats};
use support::postgres::Cluster;
use support::server::Server;

const CLIENTS: usize = 40;
const CRASH_LOAD: Duration = Duration::from_secs(6);
const CRASH_AT: Duration = Duration::from_secs(2);
const SHUTDOWN_LOAD: Duration = Duration::from_secs(5);
const SIGTERM_AT: Duration = Duration::from_secs(1);
/// The server's `SHUTDOWN_GRACE` in the drain phase.
const GRACE: Duration = Duration::from_secs(2);

fn main() {
    let outcome = actix_rt::System::new().block_on(run());
    if let Err(failure) = outcome {
        eprintln!("chaos: FAILED: {failure}");
        std::process::exit(1);
    }
    println!("chaos: passed");
}

async fn run() -> Result<(), String> {
    let cluster = Cluster::start_new("chaos-pg")?;
    let mut server = Server::start("chaos", &cluster.url(), &[("SHUTDOWN_GRACE", "2s")])?;
    let base = server.base.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;

    // Phase 1: a crash of the database under load, with retrying clients.
    let stats = Arc::new(Stats::default());
    // On a thread of its own, so that the clients keep sending while the database is down.
    let restart = actix_rt::task::spawn_blocking(move || {
        std::thread::sleep(CRASH_AT);
        cluster
            .pg_ctl(&["-m", "immediate", "restart"])
            .map(|()| cluster)
    });
    let crash = Load {
        base: &base,
        prefix: "chaos-crash",
        clients: CLIENTS,
        duration: CRASH_LOAD,
        retry: true,
    };
    let acked = crash.run(&http, &stats).await;
    let cluster = restart
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("restart in immediate mode: {e}"))?;
    if let Some(status) = server.exited() {
        return Err(format!(
            "the server exited during the database crash ({status})"
        ));
    }
    let report = verify(&cluster.url(), crash.prefix, &acked, true).await?;
    println!(
        "chaos: crash phase: {} requests, {} acknowledged (201), {} retries, {} replays, {} orders found, duplicates: {}, lost: {}; server still running",
        Stats::get(&stats.requests),
        acked.len(),
        Stats::get(&stats.retries),
        Stats::get(&stats.replays),
        report.found,
        report.duplicates,
        report.lost,
    );
    report.check()?;

    // Phase 2: SIGTERM under load. Readiness turns 503 at once, creates are still answered
    // through the grace period, in-flight requests finish, and every 201 is in the database.
    let stats = Arc::new(Stats::default());
    let drain = Load {
        base: &base,
        prefix: "chaos-shutdown",
        clients: CLIENTS,
        duration: SHUTDOWN_LOAD,
        retry: false,
    };
    // The signal reaches the server asynchronously: probe readiness as a load balancer would,
    // until it turns 503 or the grace period is over.
    let sigterm = async {
        actix_rt::time::sleep(SIGTERM_AT).await;
        server.terminate()?;
        let sent = Instant::now();
        loop {
            let ready = http
                .get(format!("{base}/health/ready"))
                .send()
                .await
                .map_err(|e| format!("/health/ready after SIGTERM: {e}"))?;
            if ready.status() == 503 || sent.elapsed() > GRACE {
                // Every answer of a draining instance tells the client to reconnect elsewhere.
                let closes = ready
                    .headers()
                    .get("connection")
                    .is_some_and(|value| value == "close");
                return Ok::<_, String>((sent, ready.status(), sent.elapsed(), closes));
            }
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let (acked, signalled) = futures_util::join!(drain.run(&http, &stats), sigterm);
    let (sent, ready_status, ready_after, closes) = signalled?;
    let status = server.wait(Duration::from_secs(15))?;
    let report = verify(&cluster.url(), drain.prefix, &acked, false).await?;
    let answered_in_grace = acked.iter().filter(|a| a.at > sent).count();
    let last_ack = acked.iter().map(|a| a.at).max().unwrap_or(sent);
    println!(
        "chaos: shutdown phase: {} requests, {} acknowledged (201), /health/ready answered {} {:.1} ms after SIGTERM, {} creates acknowledged after SIGTERM (the last {:.2} s after it, grace {:?}), {} unanswered after the drain, {} orders found, lost: {}; {}",
        Stats::get(&stats.requests),
        acked.len(),
        ready_status.as_u16(),
        ready_after.as_secs_f64() * 1000.0,
        answered_in_grace,
        last_ack.saturating_duration_since(sent).as_secs_f64(),
        GRACE,
        Stats::get(&stats.unanswered),
        report.found,
        report.lost,
        status,
    );
    report.check()?;
    if ready_status != 503 {
        return Err(format!(
            "/health/ready still answered {ready_status} {ready_after:?} after SIGTERM, past the grace period"
        ));
    }
    if !closes {
        return Err("the draining instance's 503 did not carry Connection: close".into());
    }
    if last_ack.saturating_duration_since(sent) < GRACE / 2 {
        return Err(format!(
            "creates stopped being acknowledged {:?} after SIGTERM, inside the grace period of {GRACE:?}",
            last_ack.saturating_duration_since(sent)
        ));
    }
    if Stats::get(&stats.server_errors) > 0 {
        return Err(format!(
            "{} answers were 5xx during shutdown",
            Stats::get(&stats.server_errors)
        ));
    }
    if !status.success() {
        return Err(format!(
            "the server exited with {status} after SIGTERM, expected 0"
        ));
    }
    Ok(())
}
