//! The figures of a run, for people and for scripts.

use crate::args::Mode;
use crate::load::Outcome;
use crate::verify::Verdict;

pub struct Figures {
    /// Every request the load sent, warm-up and the set-up of get and status modes included (not
    /// the read-back):
    /// what a script that reads the server's CPU time around the run divides it by.
    pub sent: u64,
    total: u64,
    ok: u64,
    failed: u64,
    pub success_pct: f64,
    /// Successes per second over the measured time.
    per_sec: f64,
    latency_ms: Latency,
}

/// Milliseconds.
struct Latency {
    min: f64,
    mean: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

impl Figures {
    pub fn of(outcome: &Outcome) -> Self {
        let tally = &outcome.tally;
        let (total, ok) = (tally.total(), tally.ok);
        let seconds = outcome.elapsed.as_secs_f64();
        let h = &tally.latencies;
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            sent: total + tally.uncounted,
            total,
            ok,
            failed: tally.failed(),
            success_pct: if total == 0 {
                0.0
            } else {
                ok as f64 * 100.0 / total as f64
            },
            per_sec: if seconds > 0.0 {
                ok as f64 / seconds
            } else {
                0.0
            },
            latency_ms: Latency {
                min: ms(h.min()),
                mean: h.mean() / 1000.0,
                p50: ms(h.value_at_quantile(0.50)),
                p95: ms(h.value_at_quantile(0.95)),
                p99: ms(h.value_at_quantile(0.99)),
                max: ms(h.max()),
            },
        }
    }

    /// The last line of output, parsed by scripts: keep its keys and their order.
    pub fn result_line(&self, mode: Mode, verified: Verdict) -> String {
        let l = &self.latency_ms;
        format!(
            "RESULT mode={} total={} ok={} failed={} success_pct={:.2} per_sec={:.1} \
             p50_ms={:.2} p95_ms={:.2} p99_ms={:.2} max_ms={:.2} verified={verified} sent={}",
            mode.name(),
            self.total,
            self.ok,
            self.failed,
            self.success_pct,
            self.per_sec,
            l.p50,
            l.p95,
            l.p99,
            l.max,
            self.sent,
        )
    }
}

/// Prints what the run did, one aspect per line.
pub fn print(mode: Mode, outcome: &Outcome, figures: &Figures) {
    let unit = if mode == Mode::Create {
        "orders"
    } else {
        "requests"
    };
    println!(
        "requests:   {} sent, {} succeeded, {} failed: {:.2} % success",
        figures.total, figures.ok, figures.failed, figures.success_pct
    );
    if !outcome.tally.failures.is_empty() {
        let causes: Vec<String> = outcome
            .tally
            .failures
            .iter()
            .map(|(cause, n)| format!("{cause}: {n}"))
            .collect();
        println!("failures:   {}", causes.join(", "));
    }
    if outcome.tally.uncounted > 0 {
        println!(
            "warm-up:    {} requests not counted",
            outcome.tally.uncounted
        );
    }
    println!(
        "throughput: {:.1} {unit}/s ({} in {:.2} s)",
        figures.per_sec,
        figures.ok,
        outcome.elapsed.as_secs_f64()
    );
    let l = &figures.latency_ms;
    println!(
        "latency:    min {:.2} ms, mean {:.2} ms, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms (successful requests)",
        l.min, l.mean, l.p50, l.p95, l.p99, l.max
    );
}
