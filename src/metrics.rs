//! The Prometheus series of the service, and their text exposition for `GET /metrics`.
//!
//! Counters and histograms that requests move are process-wide, like the process they describe:
//! any layer records with one call (`metrics::status_changed(..)`), and no handle is threaded
//! through actors and queries. Each record is a few atomic operations. What is cheaper to read
//! than to track (the pool's connections and waits, the executors' mailboxes) is read only when
//! the series are rendered. This module knows label values, never HTTP requests, actors or rows.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{
    Counter, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::domain::OrderStatus;

/// Media type of the text exposition format.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

struct Series {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    orders_created: IntCounter,
    create_batch_size: Histogram,
    status_transitions: IntCounterVec,
    db_errors: IntCounterVec,
    webhook_attempts: IntCounterVec,
    webhook_backlog_age: Gauge,
    trace_spans_dropped: IntCounter,
    db_reads: IntCounterVec,
    db_read_fallbacks: IntCounterVec,
    db_read_wait: Histogram,
}

static SERIES: LazyLock<Series> = LazyLock::new(Series::register);

impl Series {
    fn register() -> Self {
        let registry = Registry::new();
        let series = Self {
            http_requests: IntCounterVec::new(
                Opts::new(
                    "ordersvc_http_requests_total",
                    "HTTP requests answered, by method, route pattern and status",
                ),
                &["method", "route", "status"],
            )
            .expect("valid metric"),
            http_duration: HistogramVec::new(
                HistogramOpts::new(
                    "ordersvc_http_request_duration_seconds",
                    "Time from a request's arrival to its response, by method and route pattern",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["method", "route"],
            )
            .expect("valid metric"),
            orders_created: IntCounter::new(
                "ordersvc_orders_created_total",
                "Orders stored (idempotent replays not counted)",
            )
            .expect("valid metric"),
            create_batch_size: Histogram::with_opts(
                HistogramOpts::new(
                    "ordersvc_create_batch_size",
                    "Create requests written per group-commit transaction",
                )
                .buckets(vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]),
            )
            .expect("valid metric"),
            status_transitions: IntCounterVec::new(
                Opts::new(
                    "ordersvc_order_status_transitions_total",
                    "Status changes committed, by from and to status",
                ),
                &["from", "to"],
            )
            .expect("valid metric"),
            db_errors: IntCounterVec::new(
                Opts::new(
                    "ordersvc_db_errors_total",
                    "Database and connection pool errors, by kind",
                ),
                &["kind"],
            )
            .expect("valid metric"),
            webhook_attempts: IntCounterVec::new(
                Opts::new(
                    "ordersvc_webhook_attempts_total",
                    "Webhook delivery attempts by outcome: delivered (2xx), retry (another attempt \
                     is scheduled) or failed (the retry schedule is spent)",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
            webhook_backlog_age: Gauge::new(
                "ordersvc_webhook_oldest_pending_seconds",
                "Age of the event behind the oldest webhook delivery not yet delivered (0 when \
                 none is pending); measured every 10 s by each instance's dispatcher",
            )
            .expect("valid metric"),
            trace_spans_dropped: IntCounter::new(
                "ordersvc_trace_spans_dropped_total",
                "Spans that were not exported: their export to the OTLP endpoint failed, or 2048 spans \
                 already waited for export",
            )
            .expect("valid metric"),
            db_reads: IntCounterVec::new(
                Opts::new(
                    "ordersvc_db_reads_total",
                    "Reads of orders, their history and list pages, by the node that served them \
                     (replica or primary); counted only with DATABASE_READ_URL set",
                ),
                &["served_by"],
            )
            .expect("valid metric"),
            db_read_fallbacks: IntCounterVec::new(
                Opts::new(
                    "ordersvc_db_read_fallbacks_total",
                    "Reads meant for a replica that the primary served, by reason: token_wait (no \
                     replica reached the request's Consistency-Token in time), lag (the replica was \
                     further behind than DB_READ_MAX_LAG), not_found (a replica's 404, asked again) \
                     or replica_error",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            db_read_wait: Histogram::with_opts(
                HistogramOpts::new(
                    "ordersvc_db_read_wait_seconds",
                    "Time reads with a Consistency-Token waited for a replica to reach it (reads \
                     that did not wait are not counted)",
                )
                .buckets(vec![0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2]),
            )
            .expect("valid metric"),
            registry,
        };
        // Every legal move is shown from the start, at 0, so that rates exist before the first one.
        for from in OrderStatus::ALL {
            for to in from.next() {
                series
                    .status_transitions
                    .with_label_values(&[from.as_str(), to.as_str()]);
            }
        }
        for served_by in ["replica", "primary"] {
            series.db_reads.with_label_values(&[served_by]);
        }
        for reason in ["token_wait", "lag", "not_found", "replica_error"] {
            series.db_read_fallbacks.with_label_values(&[reason]);
        }
        let collectors: [Box<dyn Collector>; 12] = [
            Box::new(series.http_requests.clone()),
            Box::new(series.http_duration.clone()),
            Box::new(series.orders_created.clone()),
            Box::new(series.create_batch_size.clone()),
            Box::new(series.status_transitions.clone()),
            Box::new(series.db_errors.clone()),
            Box::new(series.webhook_attempts.clone()),
            Box::new(series.webhook_backlog_age.clone()),
            Box::new(series.trace_spans_dropped.clone()),
            Box::new(series.db_reads.clone()),
            Box::new(series.db_read_fallbacks.clone()),
            Box::new(series.db_read_wait.clone()),
        ];
        for collector in collectors {
            series
                .registry
                .register(collector)
                .expect("metric names are unique");
        }
        series
    }
}

/// One answered HTTP request. `route` is the matched pattern (`/api/v1/orders/{id}`), never the
/// raw path, so that the number of series stays bounded.
pub fn http_request(method: &str, route: &str, status: &str, elapsed: Duration) {
    let series = &*SERIES;
    series
        .http_requests
        .with_label_values(&[method, route, status])
        .inc();
    series
        .http_duration
        .with_label_values(&[method, route])
        .observe(elapsed.as_secs_f64());
}

/// One group-commit transaction of `size` create requests, of which `created` stored a new order.
pub fn create_batch(size: usize, created: usize) {
    SERIES.create_batch_size.observe(size as f64);
    SERIES.orders_created.inc_by(created as u64);
}

/// A committed status change.
pub fn status_changed(from: OrderStatus, to: OrderStatus) {
    SERIES
        .status_transitions
        .with_label_values(&[from.as_str(), to.as_str()])
        .inc();
}

/// A database or pool error of the given kind (`unique_violation`, `pool_timeout` …).
pub fn db_error(kind: &str) {
    SERIES.db_errors.with_label_values(&[kind]).inc();
}

/// The age of the event behind the oldest pending webhook delivery.
pub fn webhook_backlog_age(age: std::time::Duration) {
    SERIES.webhook_backlog_age.set(age.as_secs_f64());
}

/// `count` webhook delivery attempts had this outcome: `delivered`, `retry` or `failed`.
pub fn webhook_attempts(outcome: &str, count: usize) {
    SERIES
        .webhook_attempts
        .with_label_values(&[outcome])
        .inc_by(count as u64);
}

/// `count` spans were lost: their export failed.
pub fn trace_spans_dropped(count: usize) {
    SERIES.trace_spans_dropped.inc_by(count as u64);
}

/// A read was served by `served_by`: `replica` or `primary`.
pub fn db_read(served_by: &str) {
    SERIES.db_reads.with_label_values(&[served_by]).inc();
}

/// A read meant for a replica went to the primary, for `reason`.
pub fn db_read_fallback(reason: &str) {
    SERIES.db_read_fallbacks.with_label_values(&[reason]).inc();
}

/// A read waited this long for a replica to reach its token.
pub fn db_read_wait(waited: Duration) {
    SERIES.db_read_wait.observe(waited.as_secs_f64());
}

/// What the executors and their pool look like at the moment of a scrape.
pub struct Snapshot {
    pub pool: PoolSnapshot,
    pub mailbox_depths: Vec<usize>,
    pub executor_restarts: u64,
}

/// The pools' connections now, and their checkout history since start-up, summed over the
/// executors' pools.
#[derive(Debug, Default)]
pub struct PoolSnapshot {
    pub in_use: u32,
    pub idle: u32,
    pub pending_checkouts: u64,
    pub checkouts_direct: u64,
    pub checkouts_waited: u64,
    pub checkouts_timed_out: u64,
    pub wait_time: Duration,
}

impl FromIterator<bb8::State> for PoolSnapshot {
    fn from_iter<I: IntoIterator<Item = bb8::State>>(states: I) -> Self {
        states.into_iter().fold(Self::default(), |sum, state| {
            let stats = &state.statistics;
            Self {
                in_use: sum.in_use + state.connections - state.idle_connections,
                idle: sum.idle + state.idle_connections,
                pending_checkouts: sum.pending_checkouts + stats.pending_gets(),
                checkouts_direct: sum.checkouts_direct + stats.get_direct,
                checkouts_waited: sum.checkouts_waited + stats.get_waited,
                checkouts_timed_out: sum.checkouts_timed_out + stats.get_timed_out,
                wait_time: sum.wait_time + stats.get_wait_time,
            }
        })
    }
}

/// Every series in Prometheus' text exposition format.
pub fn render(now: &Snapshot) -> Result<String, prometheus::Error> {
    let mut families = SERIES.registry.gather();
    families.extend(sampled(now)?);
    families.sort_by(|a, b| a.name().cmp(b.name()));
    TextEncoder::new().encode_to_string(&families)
}

fn sampled(now: &Snapshot) -> Result<Vec<MetricFamily>, prometheus::Error> {
    let pool = &now.pool;
    let connections = IntGaugeVec::new(
        Opts::new(
            "ordersvc_db_pool_connections",
            "Pooled database connections, by state",
        ),
        &["state"],
    )?;
    connections
        .with_label_values(&["in_use"])
        .set(pool.in_use.into());
    connections
        .with_label_values(&["idle"])
        .set(pool.idle.into());

    let pending = IntGauge::new(
        "ordersvc_db_pool_pending_checkouts",
        "Requests waiting for a pooled connection now",
    )?;
    pending.set(saturating_i64(pool.pending_checkouts));

    let checkouts = IntCounterVec::new(
        Opts::new(
            "ordersvc_db_pool_checkouts_total",
            "Connection checkouts, by whether they got one at once, after a wait, or timed out",
        ),
        &["outcome"],
    )?;
    for (outcome, count) in [
        ("direct", pool.checkouts_direct),
        ("waited", pool.checkouts_waited),
        ("timed_out", pool.checkouts_timed_out),
    ] {
        checkouts.with_label_values(&[outcome]).inc_by(count);
    }

    let wait_time = Counter::new(
        "ordersvc_db_pool_wait_seconds_total",
        "Time requests spent waiting for a pooled connection",
    )?;
    wait_time.inc_by(pool.wait_time.as_secs_f64());

    let mailboxes = IntGaugeVec::new(
        Opts::new(
            "ordersvc_db_executor_mailbox_depth",
            "Messages sent to a DbExecutor that it has not started handling yet",
        ),
        &["executor"],
    )?;
    for (index, depth) in now.mailbox_depths.iter().enumerate() {
        mailboxes
            .with_label_values(&[index.to_string()])
            .set(saturating_i64(*depth as u64));
    }

    let restarts = IntCounter::new(
        "ordersvc_db_executor_restarts_total",
        "DbExecutors restarted after a panic",
    )?;
    restarts.inc_by(now.executor_restarts);

    let collectors: [&dyn Collector; 6] = [
        &connections,
        &pending,
        &checkouts,
        &wait_time,
        &mailboxes,
        &restarts,
    ];
    Ok(collectors.iter().flat_map(|c| c.collect()).collect())
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_in_the_text_format() {
        status_changed(OrderStatus::Pending, OrderStatus::Processing);
        http_request(
            "GET",
            "/api/v1/orders/{id}",
            "200",
            Duration::from_millis(3),
        );
        let text = render(&Snapshot {
            pool: PoolSnapshot::default(),
            mailbox_depths: vec![0, 3],
            executor_restarts: 0,
        })
        .unwrap();

        for line in [
            "# TYPE ordersvc_http_requests_total counter",
            "# TYPE ordersvc_http_request_duration_seconds histogram",
            "# TYPE ordersvc_orders_created_total counter",
            "# TYPE ordersvc_create_batch_size histogram",
            "# TYPE ordersvc_db_pool_connections gauge",
            "# TYPE ordersvc_db_pool_wait_seconds_total counter",
            "ordersvc_order_status_transitions_total{from=\"processing\",to=\"completed\"} 0",
            "ordersvc_db_executor_mailbox_depth{executor=\"1\"} 3",
            "ordersvc_db_pool_connections{state=\"in_use\"} 0",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        assert!(text.contains(
            "ordersvc_http_requests_total{method=\"GET\",route=\"/api/v1/orders/{id}\",status=\"200\"}"
        ));
    }
}
