//! The load loop: a fixed number of workers, each sending one request at a time, so that
//! exactly `concurrency` requests are in flight until the run ends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::ProgressBar;

use crate::api::{Answer, Api, Cause, Request};

/// When the run ends.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this many requests.
    Count(u64),
    /// After `warmup`, whose requests are not counted, and then `duration`.
    Time {
        warmup: Duration,
        duration: Duration,
    },
}

/// Everything the workers saw, merged.
pub struct Tally {
    /// Latency of successful counted requests, in microseconds.
    pub latencies: Histogram<u64>,
    pub ok: u64,
    pub failures: BTreeMap<Cause, u64>,
    /// Requests sent during the warm-up.
    pub uncounted: u64,
    /// Every order acknowledged with 201, warm-up included: its number and its id. The database
    /// grew by all of them, counted or not.
    pub acked: Vec<(u64, i64)>,
}

pub struct Outcome {
    pub tally: Tally,
    /// From the end of the warm-up (or the start) until the last answer.
    pub elapsed: Duration,
}

/// Sends `request` number n = 1, 2, … from `concurrency` workers until `stop`, or until it
/// has been sent as often as it can be.
pub async fn run(
    api: &Api,
    request: Request,
    stop: Stop,
    concurrency: usize,
    progress: ProgressBar,
) -> Outcome {
    let start = Instant::now();
    let (measured_from, limit) = Limit::of(stop, request.most(), start);
    let next = Arc::new(AtomicU64::new(1));
    let request = Arc::new(request);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let worker = Worker {
                api: api.clone(),
                request: request.clone(),
                next: next.clone(),
                limit,
                measured_from,
                progress: progress.clone(),
            };
            tokio::spawn(worker.run())
        })
        .collect();
    let mut tally = Tally::new();
    for worker in workers {
        match worker.await {
            Ok(part) => tally.merge(part),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    progress.finish_and_clear();
    Outcome {
        tally,
        elapsed: measured_from.elapsed(),
    }
}

/// Which requests are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limit {
    /// The number of the last one.
    last: u64,
    /// None sent from this instant.
    until: Option<Instant>,
}

impl Limit {
    /// The limit of a run that starts at `start`, and when its measured time begins.
    fn of(stop: Stop, most: Option<u64>, start: Instant) -> (Instant, Self) {
        let (measured_from, last, until) = match stop {
            Stop::Count(total) => (start, total, None),
            Stop::Time { warmup, duration } => {
                (start + warmup, u64::MAX, Some(start + warmup + duration))
            }
        };
        let last = most.map_or(last, |most| last.min(most));
        (measured_from, Self { last, until })
    }

    fn allows(&self, n: u64, now: Instant) -> bool {
        n <= self.last && self.until.is_none_or(|until| now < until)
    }
}

struct Worker {
    api: Api,
    request: Arc<Request>,
    /// The number of the next request, shared by all workers.
    next: Arc<AtomicU64>,
    limit: Limit,
    measured_from: Instant,
    progress: ProgressBar,
}

impl Worker {
    async fn run(self) -> Tally {
        let mut tally = Tally::new();
        let mut session = self.api.session();
        loop {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            if !self.limit.allows(n, Instant::now()) {
                return tally;
            }
            let sent = Instant::now();
            let answer = session.send(&self.request, n).await;
            tally.record(n, answer, sent.elapsed(), sent >= self.measured_from);
            self.progress.inc(1);
        }
    }
}

impl Tally {
    fn new() -> Self {
        Self {
            // One microsecond to one hour at three significant digits: far beyond any timeout.
            latencies: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("constant bounds are valid"),
            ok: 0,
            failures: BTreeMap::new(),
            uncounted: 0,
            acked: Vec::new(),
        }
    }

    fn record(&mut self, n: u64, answer: Answer, latency: Duration, counted: bool) {
        if let Ok(Some(id)) = answer {
            self.acked.push((n, id));
        }
        if !counted {
            self.uncounted += 1;
            return;
        }
        match answer {
            Ok(_) => {
                self.ok += 1;
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                self.latencies.saturating_record(micros.max(1));
            }
            Err(cause) => *self.failures.entry(cause).or_default() += 1,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies
            .add(&other.latencies)
            .expect("all histograms share their bounds");
        self.ok += other.ok;
        for (cause, n) in other.failures {
            *self.failures.entry(cause).or_default() += n;
        }
        self.uncounted += other.uncounted;
        self.acked.extend(other.acked);
    }

    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    pub fn total(&self) -> u64 {
        self.ok + self.failed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_counted_run_sends_its_count_or_what_can_be_sent() {
        let start = Instant::now();
        for (total, most, last) in [(10, None, 10), (10, Some(4), 4), (10, Some(40), 10)] {
            let (measured_from, limit) = Limit::of(Stop::Count(total), most, start);
            assert_eq!(
                measured_from, start,
                "a counted run is measured from its start"
            );
            assert!(
                limit.allows(last, start),
                "{total} requests, at most {most:?}"
            );
            assert!(
                !limit.allows(last + 1, start),
                "{total} requests, at most {most:?}"
            );
        }
    }

    #[test]
    fn a_timed_run_ends_at_its_time_or_when_nothing_more_can_be_sent() {
        let start = Instant::now();
        let stop = Stop::Time {
            warmup: SECOND,
            duration: 2 * SECOND,
        };
        let (measured_from, unbounded) = Limit::of(stop, None, start);
        assert_eq!(measured_from, start + SECOND);
        assert!(unbounded.allows(u64::MAX, start + 2 * SECOND));
        assert!(!unbounded.allows(1, start + 3 * SECOND));

        let (_, bounded) = Limit::of(stop, Some(5), start);
        assert!(bounded.allows(5, start));
        assert!(!bounded.allows(6, start), "before the time is up");
        assert!(
            !bounded.allows(5, start + 3 * SECOND),
            "after the time is up"
        );
    }
}
