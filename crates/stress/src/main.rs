//! `stress`: load generator for ordersvc. Keeps a fixed number of requests in flight, prints
//! throughput and latency, and after a create run checks that every acknowledged order was
//! stored as sent. `stress --help` lists the flags; the last line of output is a `RESULT` line
//! for scripts.

mod api;
mod args;
mod load;
mod order;
mod report;
mod verify;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use api::{Api, Request};
use args::{Args, Mode};
use load::Stop;
use report::Figures;
use verify::{CountBefore, Verdict};

/// Get mode reads orders it created itself, at most this many.
const ORDERS_TO_READ: u64 = 1000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("stress: {e}");
            ExitCode::from(2)
        }
    }
}

/// Whether the run met --min-success and passed verification; `Err` when it could not run.
async fn run(args: &Args) -> Result<bool, String> {
    args.check()?;
    let concurrency = args.concurrency as usize;
    let api = Api::new(
        &args.base_url,
        args.api_key(),
        args.accept_encoding.as_deref(),
        args.consistency_token.as_deref(),
        args.timeout,
        args.max_idle,
    )?;
    let stop = match args.duration {
        Some(duration) => Stop::Time {
            warmup: args.warmup,
            duration,
        },
        None => Stop::Count(args.orders),
    };
    let verify = args.mode == Mode::Create && !args.no_verify;
    // Taken before the load, so that the table's growth can be compared with the 201s.
    let count_before = match args.database_url().filter(|_| verify) {
        Some(database_url) => Some(CountBefore {
            database_url,
            orders: verify::count_orders(database_url).await?,
        }),
        None => None,
    };

    println!(
        "stress:     {} against {}, {}, {concurrency} in flight, {}",
        args.mode.name(),
        args.base_url,
        describe(stop),
        match args.max_idle {
            Some(n) => format!("at most {n} idle connections"),
            None => "one connection per worker".to_owned(),
        }
    );
    let mut setup_sent = 0;
    let request = match args.mode {
        Mode::Create => Request::CreateOrder,
        Mode::Get => {
            let wanted = args.orders.min(ORDERS_TO_READ);
            setup_sent = wanted;
            Request::GetOrder {
                among: create_orders(&api, wanted, concurrency, "read").await?,
            }
        }
        Mode::List => Request::ListOrders {
            query: args.list_query.clone(),
        },
        Mode::Events => Request::ListEvents,
        Mode::Status => {
            setup_sent = args.orders;
            Request::ChangeStatus {
                among: create_orders(&api, args.orders, concurrency, "move").await?,
            }
        }
    };
    let most = request.most();
    let outcome = load::run(&api, request, stop, concurrency, progress_bar(stop)).await;
    let mut figures = Figures::of(&outcome);
    if matches!(stop, Stop::Time { .. }) && most.is_some_and(|most| figures.sent >= most) {
        eprintln!(
            "stress: the run ended before its time was up, with nothing left to send: \
             ask for more --orders"
        );
    }
    figures.sent += setup_sent;
    report::print(args.mode, &outcome, &figures);

    let verdict = if verify {
        verify::verify(&api, &outcome.tally.acked, count_before).await
    } else {
        Verdict::Skipped
    };
    let enough = figures.success_pct >= args.min_success;
    if !enough {
        eprintln!(
            "stress: success rate {:.2} % is below --min-success {}",
            figures.success_pct, args.min_success
        );
    }
    println!("{}", figures.result_line(args.mode, verdict));
    Ok(enough && verdict != Verdict::No)
}

/// Creates the orders that get mode reads or status mode moves, so that every id it sends
/// exists (and is pending). Not measured.
async fn create_orders(
    api: &Api,
    wanted: u64,
    concurrency: usize,
    to: &str,
) -> Result<Vec<i64>, String> {
    let setup = load::run(
        api,
        Request::CreateOrder,
        Stop::Count(wanted),
        concurrency,
        ProgressBar::hidden(),
    )
    .await;
    let ids: Vec<i64> = setup.tally.acked.iter().map(|&(_, id)| id).collect();
    println!("setup:      created {}/{wanted} orders to {to}", ids.len());
    if ids.is_empty() {
        return Err(format!("no order could be created to {to}"));
    }
    Ok(ids)
}

fn describe(stop: Stop) -> String {
    match stop {
        Stop::Count(n) => format!("{n} requests"),
        Stop::Time { warmup, duration } if warmup.is_zero() => {
            format!("for {}", humantime::format_duration(duration))
        }
        Stop::Time { warmup, duration } => format!(
            "for {} after a {} warm-up",
            humantime::format_duration(duration),
            humantime::format_duration(warmup)
        ),
    }
}

/// A bar for people watching; nothing when stderr goes to a file or a pipe (CI logs).
fn progress_bar(stop: Stop) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match stop {
        Stop::Count(n) => (
            ProgressBar::new(n),
            "{bar:40} {pos}/{len} requests, {per_sec}, {elapsed}",
        ),
        Stop::Time { .. } => (
            ProgressBar::new_spinner(),
            "{spinner} {pos} requests, {per_sec}, {elapsed}",
        ),
    };
    bar.set_style(ProgressStyle::with_template(template).expect("the templates are valid"));
    // Redrawn even while no answer comes, so that a stalled server shows as a stalled clock.
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}
