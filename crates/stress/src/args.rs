//! Command-line flags of the stress client.

use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "stress",
    about = "Load generator for ordersvc: a fixed number of requests in flight, throughput and \
             latency figures, and (create mode) a read-back of every acknowledged order",
    after_help = "The count check compares `SELECT count(*) FROM orders` before and after the run \
                  with the number of 201 answers: it assumes nobody else writes orders meanwhile. \
                  Latency figures cover successful requests only; failures are counted by cause. \
                  The last line of output is machine-readable and starts with `RESULT `."
)]
pub struct Args {
    /// Server to load.
    #[arg(long, env = "BASE_URL", default_value = "http://127.0.0.1:8080")]
    pub base_url: String,

    /// Requests to send (create: orders to create). Ignored with --duration, except that get
    /// mode creates at most 1,000 orders to read, fewer when this is smaller, and status mode
    /// creates this many orders to move: each can move once, so the run ends when all have,
    /// before --duration is up if need be.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub orders: u64,

    /// Requests in flight at any time.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,

    /// Time one request may take, body included, e.g. 10s.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Sustained mode: send requests for this long instead of --orders of them, e.g. 10s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,

    /// Sustained mode: load for this long first, without counting, e.g. 2s.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,

    /// Exit non-zero when fewer than this percentage of requests succeed.
    #[arg(long, default_value_t = 100.0, value_parser = percentage)]
    pub min_success: f64,

    /// What to send: create orders, read random orders by id, list the newest ten (or the page
    /// --list-query asks for), read the event feed's first page (its ten oldest events), or
    /// move orders from pending to processing (orders it creates first, unmeasured).
    #[arg(long, value_enum, default_value_t = Mode::Create)]
    pub mode: Mode,

    /// List mode: the query string of the page to ask for, e.g. `status=pending&limit=10`.
    #[arg(long, value_name = "QUERY", default_value = "limit=10", value_parser = query_string)]
    pub list_query: String,

    /// Sent as `Authorization: Bearer <key>`, for a server with API_KEYS set.
    #[arg(long, env = "API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// The server's database, for the count check (create mode); skipped when absent.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Skip the read-back and the count check after a create run.
    #[arg(long)]
    pub no_verify: bool,

    /// Keep at most this many idle connections between requests, as Go's default HTTP
    /// transport does with 2 (`MaxIdleConnsPerHost`), the client of the seed's stress test:
    /// with more requests in flight than that, most of them open a new connection and close it
    /// after the answer. Without it, every worker keeps one connection for the whole run.
    #[arg(long, value_name = "N")]
    pub max_idle: Option<usize>,

    /// Send `Accept-Encoding` with this value (gzip, br, zstd) on every load request, to measure
    /// what compressing the answers costs the server.
    #[arg(long)]
    pub accept_encoding: Option<String>,

    /// Send `Consistency-Token` with this value on every load request, to measure what the
    /// server's check of a token costs reads served by replicas.
    #[arg(long, value_name = "TOKEN")]
    pub consistency_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Create,
    Get,
    List,
    Events,
    Status,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Create => "create",
            Mode::Get => "get",
            Mode::List => "list",
            Mode::Events => "events",
            Mode::Status => "status",
        }
    }
}

impl Args {
    /// Flags that cannot be checked one at a time.
    pub fn check(&self) -> Result<(), String> {
        if !self.warmup.is_zero() && self.duration.is_none() {
            return Err("--warmup needs --duration".into());
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err("--duration must be longer than zero".into());
        }
        Ok(())
    }

    /// An empty variable (`API_KEY=`) means no key, as an unset one does.
    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref().filter(|k| !k.is_empty())
    }

    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref().filter(|u| !u.is_empty())
    }
}

fn percentage(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err("expected a percentage from 0 to 100".into()),
    }
}

/// Checked once here: a query string that is not one would fail every request of the run.
fn query_string(raw: &str) -> Result<String, String> {
    match http::uri::PathAndQuery::try_from(format!("/?{raw}")) {
        Ok(parsed) if parsed.query() == Some(raw) => Ok(raw.to_owned()),
        _ => Err("expected a URL query string, e.g. status=pending&limit=10".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Scripts pass the name they read in a RESULT line's `mode=` back to --mode: the two must
    // agree for every mode.
    #[test]
    fn every_mode_is_asked_for_by_the_name_it_reports() {
        for &mode in Mode::value_variants() {
            let args = Args::try_parse_from(["stress", "--mode", mode.name()])
                .unwrap_or_else(|e| panic!("--mode {}: {e}", mode.name()));
            assert_eq!(args.mode, mode, "--mode {}", mode.name());
        }
    }

    #[test]
    fn list_query_must_be_a_url_query_string() {
        for good in [
            "limit=10",
            "status=pending&limit=10",
            "customer_email=a%40b.c",
            "",
        ] {
            let args = Args::try_parse_from(["stress", "--list-query", good])
                .unwrap_or_else(|e| panic!("--list-query {good:?}: {e}"));
            assert_eq!(args.list_query, good);
        }
        for bad in ["status=pending limit=10", "limit=10#top", "limit=\n10"] {
            assert!(
                Args::try_parse_from(["stress", "--list-query", bad]).is_err(),
                "--list-query {bad:?} must be rejected"
            );
        }
    }
}
