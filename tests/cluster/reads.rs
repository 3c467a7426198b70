//! Scenarios 6 to 10: reads served by the standbys (`CLUSTER_READS=replicas`, the default).
//! Each prints one line of figures, with the read counters of the instances' /metrics, and
//! fails on any read older than the client's own writes (a Consistency-Token sent and not
//! honoured), on a 404 for an order that exists, on a list walk that skips or repeats an order
//! or goes back in time, and on a failed read where none may fail.
//!
//! Clients treat a Consistency-Token as opaque. This test alone looks inside, to compare
//! positions: it is a PostgreSQL WAL position in its text form `X/Y` (hex), ordered as
//! (X << 32) | Y.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::sql_types::BigInt;
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::StreamExt;
use serde_json::Value;

use super::{while_loaded, Cluster};
use crate::support::load::{self, Acked, Answer, Stats};

/// The standby that scenario 6 reads from applies WAL this late: a read without a token sees
/// the state of half a second ago, and a token is never reached within the service's wait.
const LONG_DELAY: &str = "500ms";
/// The other standby's delay in scenario 7, so that pages land on replicas at two positions:
/// shorter than the service's wait for a token (DB_READ_WAIT, 50 ms), so that pages on it
/// wait and are served there, while pages on the first go to the primary.
const SHORT_DELAY: &str = "20ms";
/// Clients of the read-your-writes rounds, and how long they run in scenario 6.
const CLIENTS: usize = 16;
const ROUNDS_FOR: Duration = Duration::from_secs(8);
/// Scenario 7: orders of the walked list made before the walks, page size, walkers, walks
/// each, and writers that create and change the list's orders meanwhile.
const WALK_ORDERS: usize = 300;
const WALK_PAGE: usize = 25;
const WALKERS: usize = 4;
const WALKS_EACH: usize = 3;
const WALK_WRITERS: usize = 4;
const WALK_EMAIL: &str = "walked-list@example.com";
/// Scenario 8: clients reading orders and list pages, and how long.
const READERS: usize = 32;
const READ_LOAD_FOR: Duration = Duration::from_secs(6);
/// Scenario 8's counters are taken this long into the load and this long before its end:
/// PostgreSQL 15 backends publish their statistics about once a second while busy.
const SETTLE: Duration = Duration::from_millis(1500);
/// The shortest share of rows that the standbys must have read in scenario 8.
const STANDBY_SHARE: f64 = 0.5;
/// Orders of the walked list created at once before the walks.
const IN_FLIGHT: usize = 50;

pub async fn scenarios(cluster: &Cluster, http: &reqwest::Client) -> Result<Vec<Acked>, String> {
    let roles = cluster.roles(http).await?;
    let (delayed, other) = (roles.replica.clone(), roles.sync_standby.clone());
    let readers = [cluster.spare(0)?, cluster.spare(1)?];
    cluster
        .script(&["delay-node", &delayed, LONG_DELAY])
        .await?;
    cluster.script(&["start-instance", "3", &delayed]).await?;
    let mut acked = read_your_writes(http, readers[0], &delayed).await?;
    cluster.script(&["delay-node", &other, SHORT_DELAY]).await?;
    cluster.script(&["start-instance", "4", &other]).await?;
    monotonic_pages(cluster, http, &readers, [&delayed, &other]).await?;
    for node in [&delayed, &other] {
        cluster.script(&["delay-node", node, "0"]).await?;
    }
    for n in ["3", "4"] {
        cluster.script(&["stop-instance", n]).await?;
    }
    let ids: Vec<i64> = acked.iter().map(|a| a.id).collect();
    acked.extend(replicas_do_the_work(cluster, http, &ids).await?);
    acked.extend(standby_stopped(cluster, http, &ids).await?);
    acked.extend(switchover(cluster, http).await?);
    Ok(acked)
}

/// Scenario 6: rounds of create, read back, change, read back on an instance whose reads go to
/// a standby 500 ms behind. With the token nothing may be stale; without it, stale answers
/// must be seen (for list pages at least), but never a 404 for an order that exists.
async fn read_your_writes(
    http: &reqwest::Client,
    reader: &str,
    delayed: &str,
) -> Result<Vec<Acked>, String> {
    let counters = ReadCounters::of(http, &[reader]).await?;
    let rounds = Rounds::new(Outages::Fail);
    let deadline = Instant::now() + ROUNDS_FOR;
    let acked = rounds
        .run(http, reader, "cluster-ryw", || Instant::now() < deadline)
        .await;
    println!(
        "cluster: 6 read-your-writes, reads on {delayed} applying WAL {LONG_DELAY} late: {}; {}",
        rounds.figures(),
        counters.since(http).await?,
    );
    rounds.check()?;
    if Rounds::get(&rounds.stale_pages) == 0 {
        return Err(
            "no list page read without a token was stale: the test cannot see staleness".into(),
        );
    }
    Ok(acked)
}

/// Scenario 7: walkers page through one customer's orders while writers add to and change them;
/// pages alternate between two instances reading from standbys at different delays. Each walk
/// starts with the token of the newest write before it and then follows the cursors alone.
async fn monotonic_pages(
    cluster: &Cluster,
    http: &reqwest::Client,
    readers: &[&str; 2],
    nodes: [&str; 2],
) -> Result<(), String> {
    let writes = Writes::default();
    let made: Vec<_> = futures_util::stream::iter(0..WALK_ORDERS)
        .map(|n| writes.create(http, &cluster.url, format!("walked-{n}")))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    made.into_iter().collect::<Result<Vec<_>, _>>()?;
    let counters = ReadCounters::of(http, readers).await?;
    let done = AtomicBool::new(false);
    let writers = futures_util::future::join_all((0..WALK_WRITERS).map(|w| {
        let (writes, done) = (&writes, &done);
        async move {
            let mut n = 0;
            while !done.load(Ordering::Relaxed) {
                n += 1;
                let id = writes
                    .create(http, &cluster.url, format!("walked-{w}-{n}"))
                    .await?;
                set_status(http, &cluster.url, id, "processing").await?;
            }
            Ok::<_, String>(())
        }
    }));
    let walkers = async {
        let writes = &writes;
        let walks = futures_util::future::join_all((0..WALKERS).map(|w| async move {
            let mut walks = Vec::new();
            for k in 0..WALKS_EACH {
                let (required, token) = writes.so_far();
                walks.push(walk(http, readers, &token, w + k, &required).await?);
            }
            Ok::<_, String>(walks)
        }))
        .await;
        done.store(true, Ordering::Relaxed);
        walks
    };
    let (written, walks) = futures_util::join!(writers, walkers);
    written.into_iter().collect::<Result<Vec<_>, _>>()?;
    let walks: Vec<Walk> = walks
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    let sum = |f: fn(&Walk) -> usize| walks.iter().map(f).sum::<usize>();
    let required = walks.iter().map(|w| w.required).collect::<Vec<_>>();
    println!(
        "cluster: 7 monotonic pages, {} walks over instances reading from {} ({LONG_DELAY}) and {} ({SHORT_DELAY}) \
         while {} orders were added and changed: {} pages, {}..{} orders each required, missing {}, repeated {}, \
         pages read at an older position than the page before {}; {}",
        walks.len(),
        nodes[0],
        nodes[1],
        writes.count() - WALK_ORDERS,
        sum(|w| w.pages),
        required.iter().min().unwrap_or(&0),
        required.iter().max().unwrap_or(&0),
        sum(|w| w.missing),
        sum(|w| w.repeated),
        sum(|w| w.backwards.len()),
        counters.since(http).await?,
    );
    match walks
        .iter()
        .find(|w| w.missing + w.repeated > 0 || !w.backwards.is_empty())
    {
        Some(w) => Err(format!(
            "a walk missed {} and repeated {} orders; its pages went back: {:?}",
            w.missing, w.repeated, w.backwards
        )),
        None => Ok(()),
    }
}

/// Scenario 8: under a read-heavy load through HAProxy, the standbys read most rows of the
/// orders database (PostgreSQL's own counters, `pg_stat_database` on every node).
async fn replicas_do_the_work(
    cluster: &Cluster,
    http: &reqwest::Client,
    ids: &[i64],
) -> Result<Vec<Acked>, String> {
    let roles = cluster.roles(http).await?;
    let counters = ReadCounters::of(http, &cluster.instance_refs()).await?;
    let failed = Failures::default();
    let done = AtomicBool::new(false);
    let stats = Arc::new(Stats::default());
    let measure = async {
        actix_rt::time::sleep(SETTLE).await;
        let before = node_rows(cluster).await?;
        actix_rt::time::sleep(READ_LOAD_FOR - SETTLE * 2).await;
        let after = node_rows(cluster).await?;
        actix_rt::time::sleep(SETTLE).await;
        done.store(true, Ordering::Relaxed);
        Ok::<_, String>(NodeRows::delta(&before, &after))
    };
    let readers = read_load(http, &cluster.url, ids, &failed, &done);
    let writers = load::Load {
        base: &cluster.url,
        prefix: "cluster-work",
        clients: 2,
        duration: Duration::ZERO,
        retry: false,
    };
    let (rows, (), acked) = futures_util::join!(
        measure,
        readers,
        writers.run_while(http, &stats, || !done.load(Ordering::Relaxed))
    );
    let rows = rows?;
    let total: i64 = rows.values().map(|r| r.rows).sum();
    let on_standbys: i64 = rows
        .iter()
        .filter(|(node, _)| **node != roles.leader)
        .map(|(_, r)| r.rows)
        .sum();
    let share = on_standbys as f64 / total.max(1) as f64;
    println!(
        "cluster: 8 replicas do the work, {READERS} readers and 2 writers through HAProxy for {:.0} s: \
         {} reads, failed {}; rows read (pg_stat_database tup_returned + tup_fetched) {}; standbys' share {:.0}%; {}",
        READ_LOAD_FOR.as_secs_f64(),
        Failures::get(&failed.reads),
        Failures::get(&failed.failed),
        rows.iter()
            .map(|(node, r)| format!(
                "{node} ({}) {} in {} transactions",
                roles.role(node),
                r.rows,
                r.xacts
            ))
            .collect::<Vec<_>>()
            .join(", "),
        share * 100.0,
        counters.since(http).await?,
    );
    failed.check()?;
    if share < STANDBY_SHARE {
        return Err(format!(
            "the standbys read {:.0}% of the rows, expected at least {:.0}%",
            share * 100.0,
            STANDBY_SHARE * 100.0
        ));
    }
    Ok(acked)
}

/// Scenario 9: the asynchronous standby's Patroni is stopped under read-your-writes rounds and
/// reads through HAProxy, then started again: no request may fail.
async fn standby_stopped(
    cluster: &Cluster,
    http: &reqwest::Client,
    ids: &[i64],
) -> Result<Vec<Acked>, String> {
    let node = cluster.roles(http).await?.replica;
    let counters = ReadCounters::of(http, &cluster.instance_refs()).await?;
    let rounds = Rounds::new(Outages::Fail);
    let failed = Failures::default();
    let done = AtomicBool::new(false);
    let mut stopped_for = Duration::ZERO;
    let event = async {
        let stopped = Instant::now();
        cluster.script(&["stop-node", &node]).await?;
        cluster.script(&["start-node", &node]).await?;
        cluster.script(&["wait-healthy", "90"]).await?;
        stopped_for = stopped.elapsed();
        Ok(())
    };
    let work = async {
        let (acked, ()) = futures_util::join!(
            rounds.run(http, &cluster.url, "cluster-standby", || !done
                .load(Ordering::Relaxed)),
            read_load(http, &cluster.url, ids, &failed, &done)
        );
        acked
    };
    let (acked, outcome) = while_loaded(&done, event, work).await;
    outcome?;
    println!(
        "cluster: 9 standby {node} stopped and started again under load ({:.1} s until healthy): {}; \
         plain reads {}, failed {}; {}",
        stopped_for.as_secs_f64(),
        rounds.figures(),
        Failures::get(&failed.reads),
        Failures::get(&failed.failed),
        counters.since(http).await?,
    );
    rounds.check()?;
    failed.check()?;
    Ok(acked)
}

/// Scenario 10: a switchover under read-your-writes rounds through HAProxy. Requests may be
/// answered 503 (or not at all) while the primary changes; every answer must still be at least
/// as new as the client's token.
async fn switchover(cluster: &Cluster, http: &reqwest::Client) -> Result<Vec<Acked>, String> {
    let counters = ReadCounters::of(http, &cluster.instance_refs()).await?;
    let rounds = Rounds::new(Outages::Tolerate);
    let done = AtomicBool::new(false);
    let work = rounds.run(http, &cluster.url, "cluster-reads-switchover", || {
        !done.load(Ordering::Relaxed)
    });
    let (acked, outcome) = while_loaded(&done, cluster.script(&["switchover"]), work).await;
    outcome?;
    println!(
        "cluster: 10 switchover under read-your-writes rounds: {}; {}",
        rounds.figures(),
        counters.since(http).await?,
    );
    rounds.check()?;
    cluster.instances_running()?;
    cluster.script(&["wait-healthy", "90"]).await?;
    Ok(acked)
}

/// Whether a request that gets no answer, or a 503, is a failure, or is counted and stepped
/// over while the primary changes.
#[derive(Clone, Copy, PartialEq)]
enum Outages {
    Fail,
    Tolerate,
}

/// What the read-your-writes rounds counted. A round creates an order, reads it back, moves it
/// to `processing` and reads it, its history and its customer's list page back, each read once
/// with the write's token and once without.
struct Rounds {
    outages: Outages,
    stats: Stats,
    rounds: AtomicU64,
    with_token: AtomicU64,
    stale_with_token: AtomicU64,
    without_token: AtomicU64,
    stale_gets: AtomicU64,
    stale_histories: AtomicU64,
    stale_pages: AtomicU64,
    false_404s: AtomicU64,
    unavailable: AtomicU64,
    /// Writes answered without a Consistency-Token (tolerated with outages only).
    tokenless: AtomicU64,
    failed: AtomicU64,
    /// The first answer that broke a rule, described for the failure message.
    first_violation: RefCell<Option<String>>,
}

/// Which read of a round, for the staleness counters.
#[derive(Clone, Copy)]
enum Read {
    Order,
    History,
    Page,
}

impl Rounds {
    fn new(outages: Outages) -> Self {
        Self {
            outages,
            stats: Stats::default(),
            rounds: AtomicU64::new(0),
            with_token: AtomicU64::new(0),
            stale_with_token: AtomicU64::new(0),
            without_token: AtomicU64::new(0),
            stale_gets: AtomicU64::new(0),
            stale_histories: AtomicU64::new(0),
            stale_pages: AtomicU64::new(0),
            false_404s: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            tokenless: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_violation: RefCell::new(None),
        }
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `CLIENTS` clients doing rounds on `base` while `more()` says so; returns the orders made.
    async fn run(
        &self,
        http: &reqwest::Client,
        base: &str,
        prefix: &str,
        more: impl Fn() -> bool,
    ) -> Vec<Acked> {
        load::clients(CLIENTS, prefix, more, |key| async move {
            ControlFlow::Continue(self.round(http, base, key).await)
        })
        .await
    }

    async fn round(&self, http: &reqwest::Client, base: &str, key: String) -> Option<Acked> {
        let orders = format!("{base}/api/v1/orders");
        let retry = self.outages == Outages::Tolerate;
        let (id, created) = match load::create(http, &orders, &key, &self.stats, retry).await {
            Answer::Created { id, token } => (id, token),
            Answer::Refused | Answer::None => {
                self.outage(format!("POST {orders} ({key}) got no 201"));
                return None;
            }
        };
        Self::add(&self.rounds);
        let acked = Acked {
            key: key.clone(),
            id,
            at: Instant::now(),
        };
        let Some(created) = self.token(created, &format!("POST {orders} ({key})")) else {
            return Some(acked);
        };
        let order = format!("{orders}/{id}");
        let pending = |o: &Value| o["status"] == "pending";
        self.read(http, &order, None, Read::Order, pending).await;
        self.read(http, &order, Some(&created), Read::Order, pending)
            .await;
        // A change that fails ends the round: whether it was made is not known.
        let changed = match put_status(http, &order, "processing").await {
            Ok(reply) if reply.status == 200 => reply.token,
            Ok(reply) if reply.status == 503 => {
                self.outage(format!("PUT {order}/status answered 503: {}", reply.body));
                return Some(acked);
            }
            Ok(reply) => {
                let what = format!(
                    "PUT {order}/status answered {}: {}",
                    reply.status, reply.body
                );
                self.violation(&self.failed, what);
                return Some(acked);
            }
            Err(e) => {
                self.outage(format!("PUT {order}/status: {e}"));
                return Some(acked);
            }
        };
        let Some(changed) = self.token(changed, &format!("PUT {order}/status")) else {
            return Some(acked);
        };
        let history = format!("{order}/history");
        let page = format!(
            "{orders}?customer_email={}&limit=5",
            load::order_body(&key)["customer_email"]
                .as_str()
                .unwrap_or_default()
        );
        let processing = |o: &Value| o["status"] == "processing";
        let changed_in_history = |h: &Value| {
            h["history"]
                .as_array()
                .and_then(|h| h.last())
                .is_some_and(|last| last["to_status"] == "processing")
        };
        let first_is_changed =
            |p: &Value| p["orders"][0]["id"] == id && p["orders"][0]["status"] == "processing";
        for token in [None, Some(changed.as_str())] {
            self.read(http, &order, token, Read::Order, processing)
                .await;
            self.read(http, &history, token, Read::History, changed_in_history)
                .await;
            self.read(http, &page, token, Read::Page, first_is_changed)
                .await;
        }
        Some(acked)
    }

    /// The token of a write's answer. Without one the round ends: a failure, unless outages
    /// are tolerated (the service answers a stored order without a token when it cannot ask
    /// for the commit's position, as when the primary goes away right after the commit).
    fn token(&self, token: Option<String>, what: &str) -> Option<String> {
        if token.is_none() {
            match self.outages {
                Outages::Tolerate => Self::add(&self.tokenless),
                Outages::Fail => self.violation(
                    &self.failed,
                    format!("{what}: 2xx without a Consistency-Token"),
                ),
            }
        }
        token
    }

    /// One GET of `url`, with `token` as its Consistency-Token if given; `fresh` says whether
    /// the answer's body shows the round's last write.
    async fn read(
        &self,
        http: &reqwest::Client,
        url: &str,
        token: Option<&str>,
        read: Read,
        fresh: impl Fn(&Value) -> bool,
    ) {
        let what = format!(
            "GET {url}{}",
            token.map_or(String::new(), |t| format!(" with Consistency-Token {t}"))
        );
        let reply = match get(http, url, token).await {
            Ok(reply) => reply,
            Err(e) => {
                self.outage(format!("{what}: {e}"));
                return;
            }
        };
        let answered = format!(
            "{what} answered {} with Consistency-Token {:?}: {}",
            reply.status, reply.token, reply.body
        );
        match (reply.status, token) {
            (200, Some(sent)) => {
                Self::add(&self.with_token);
                // A list page tells where it was read; an order or a history may, and then
                // no earlier than the token sent. A token that cannot be read counts as older.
                let older = match (reply.token.as_deref().map(lsn), lsn(sent), read) {
                    (Some(Ok(served)), Ok(sent), _) => served < sent,
                    (None, _, Read::Page) => true,
                    (None, _, _) => false,
                    _ => true,
                };
                if older || !fresh(&reply.body) {
                    self.violation(&self.stale_with_token, answered);
                }
            }
            (200, None) => {
                Self::add(&self.without_token);
                if !fresh(&reply.body) {
                    Self::add(match read {
                        Read::Order => &self.stale_gets,
                        Read::History => &self.stale_histories,
                        Read::Page => &self.stale_pages,
                    });
                }
            }
            (404, Some(_)) => {
                Self::add(&self.with_token);
                self.violation(&self.stale_with_token, answered);
            }
            (404, None) => {
                Self::add(&self.without_token);
                self.violation(&self.false_404s, answered);
            }
            (503, _) => self.outage(answered),
            _ => self.violation(&self.failed, answered),
        }
    }

    /// A request without an answer or answered 503: counted, and a failure unless tolerated.
    fn outage(&self, what: String) {
        match self.outages {
            Outages::Tolerate => Self::add(&self.unavailable),
            Outages::Fail => self.violation(&self.failed, what),
        }
    }

    fn violation(&self, counter: &AtomicU64, what: String) {
        Self::add(counter);
        self.first_violation.borrow_mut().get_or_insert(what);
    }

    fn figures(&self) -> String {
        let get = Self::get;
        format!(
            "{} rounds; {} reads with the token: stale {}; {} without: stale orders {}, histories {}, \
             list pages {}, 404s for existing orders {}; unavailable (503 or no answer) {}, \
             writes answered without a token {}, failed {}",
            get(&self.rounds),
            get(&self.with_token),
            get(&self.stale_with_token),
            get(&self.without_token),
            get(&self.stale_gets),
            get(&self.stale_histories),
            get(&self.stale_pages),
            get(&self.false_404s),
            get(&self.unavailable),
            get(&self.tokenless),
            get(&self.failed),
        )
    }

    fn check(&self) -> Result<(), String> {
        match self.first_violation.borrow().as_ref() {
            Some(first) => Err(format!("{}; the first: {first}", self.figures())),
            None => Ok(()),
        }
    }
}

/// An answer: its status, Consistency-Token and JSON body (null if none).
struct Reply {
    status: u16,
    token: Option<String>,
    body: Value,
}

impl Reply {
    async fn of(answer: reqwest::Result<reqwest::Response>) -> Result<Self, String> {
        let response = answer.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let token = response
            .headers()
            .get("consistency-token")
            .and_then(|t| t.to_str().ok())
            .map(String::from);
        let body = response.json().await.unwrap_or_default();
        Ok(Self {
            status,
            token,
            body,
        })
    }
}

async fn get(http: &reqwest::Client, url: &str, token: Option<&str>) -> Result<Reply, String> {
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.header("Consistency-Token", token);
    }
    Reply::of(request.send().await).await
}

async fn put_status(http: &reqwest::Client, order: &str, status: &str) -> Result<Reply, String> {
    Reply::of(
        http.put(format!("{order}/status"))
            .json(&serde_json::json!({ "status": status }))
            .send()
            .await,
    )
    .await
}

async fn set_status(
    http: &reqwest::Client,
    base: &str,
    id: i64,
    status: &str,
) -> Result<(), String> {
    let order = format!("{base}/api/v1/orders/{id}");
    match put_status(http, &order, status).await? {
        Reply { status: 200, .. } => Ok(()),
        reply => Err(format!(
            "PUT {order}/status answered {}: {}",
            reply.status, reply.body
        )),
    }
}

/// A WAL position from its text form `X/Y`.
fn lsn(token: &str) -> Result<u64, String> {
    let (high, low) = token
        .split_once('/')
        .ok_or(format!("Consistency-Token {token:?} is not X/Y"))?;
    let hex = |h: &str| {
        u64::from_str_radix(h, 16).map_err(|e| format!("Consistency-Token {token:?}: {e}"))
    };
    Ok(hex(high)? << 32 | hex(low)?)
}

/// The orders of the walked list acknowledged so far, with their tokens.
#[derive(Default)]
struct Writes {
    acked: RefCell<Vec<(i64, u64, String)>>,
}

impl Writes {
    /// Creates an order of the walked list through `base`; returns its id.
    async fn create(&self, http: &reqwest::Client, base: &str, key: String) -> Result<i64, String> {
        let mut body = load::order_body(&key);
        body["customer_email"] = WALK_EMAIL.into();
        let url = format!("{base}/api/v1/orders");
        let reply = Reply::of(
            http.post(&url)
                .header("Idempotency-Key", &key)
                .json(&body)
                .send()
                .await,
        )
        .await?;
        let (201, Some(token), Some(id)) = (reply.status, &reply.token, reply.body["id"].as_i64())
        else {
            return Err(format!(
                "POST {url} ({key}) answered {} with Consistency-Token {:?}: {}",
                reply.status, reply.token, reply.body
            ));
        };
        self.acked
            .borrow_mut()
            .push((id, lsn(token)?, token.clone()));
        Ok(id)
    }

    /// The orders acknowledged so far, and the newest token among them.
    fn so_far(&self) -> (HashSet<i64>, String) {
        let acked = self.acked.borrow();
        let newest = acked.iter().max_by_key(|(_, position, _)| *position);
        (
            acked.iter().map(|(id, _, _)| *id).collect(),
            newest
                .map(|(_, _, token)| token.clone())
                .unwrap_or_default(),
        )
    }

    fn count(&self) -> usize {
        self.acked.borrow().len()
    }
}

/// What one walk through the list saw.
struct Walk {
    pages: usize,
    required: usize,
    missing: usize,
    repeated: usize,
    /// (page, its position, the position of the page before), for pages read further back.
    backwards: Vec<(usize, String, String)>,
}

/// Pages through the walked list, the first page with `token`, page `i` on `readers[(first +
/// i) % 2]`; every order in `required` must be seen once.
async fn walk(
    http: &reqwest::Client,
    readers: &[&str; 2],
    token: &str,
    first: usize,
    required: &HashSet<i64>,
) -> Result<Walk, String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut previous = token.to_owned();
    let mut backwards = Vec::new();
    let mut pages = 0;
    loop {
        let url = format!("{}/api/v1/orders", readers[(first + pages) % 2]);
        let mut request = http.get(&url).query(&[
            ("customer_email", WALK_EMAIL),
            ("limit", &WALK_PAGE.to_string()),
        ]);
        match &cursor {
            Some(cursor) => request = request.query(&[("cursor", cursor)]),
            None => request = request.header("Consistency-Token", token),
        }
        let reply = Reply::of(request.send().await).await?;
        pages += 1;
        let what = format!("GET {url} page {pages} of a walk");
        let (200, Some(position)) = (reply.status, reply.token) else {
            return Err(format!(
                "{what} answered {} without a Consistency-Token or 200: {}",
                reply.status, reply.body
            ));
        };
        if lsn(&position)? < lsn(&previous)? {
            backwards.push((pages, position.clone(), previous));
        }
        previous = position;
        let orders = reply.body["orders"]
            .as_array()
            .ok_or(format!("{what}: no orders in {}", reply.body))?;
        seen.extend(orders.iter().filter_map(|o| o["id"].as_i64()));
        match reply.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let distinct: HashSet<i64> = seen.iter().copied().collect();
    Ok(Walk {
        pages,
        required: required.len(),
        missing: required.difference(&distinct).count(),
        repeated: seen.len() - distinct.len(),
        backwards,
    })
}

/// Reads that may not fail, and how many failed.
#[derive(Default)]
struct Failures {
    reads: AtomicU64,
    failed: AtomicU64,
    first: RefCell<Option<String>>,
}

impl Failures {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn check(&self) -> Result<(), String> {
        match self.first.borrow().as_ref() {
            Some(first) => Err(format!(
                "{} of {} plain reads failed; the first: {first}",
                Self::get(&self.failed),
                Self::get(&self.reads)
            )),
            None => Ok(()),
        }
    }
}

/// `READERS` clients reading, without tokens, the orders in `ids` (the list's first page when
/// there are none) and every fourth time a list page, until `done`.
async fn read_load(
    http: &reqwest::Client,
    base: &str,
    ids: &[i64],
    failures: &Failures,
    done: &AtomicBool,
) {
    let clients = (0..READERS).map(|client| async move {
        let mut n = client;
        while !done.load(Ordering::Relaxed) {
            n += READERS + 1;
            let url = match ids.get(n % ids.len().max(1)) {
                Some(id) if n % 4 != 0 => format!("{base}/api/v1/orders/{id}"),
                _ => format!("{base}/api/v1/orders?limit=20"),
            };
            failures.reads.fetch_add(1, Ordering::Relaxed);
            let failure = match get(http, &url, None).await {
                Ok(reply) if reply.status == 200 => continue,
                Ok(reply) => format!("GET {url} answered {}: {}", reply.status, reply.body),
                Err(e) => format!("GET {url}: {e}"),
            };
            failures.failed.fetch_add(1, Ordering::Relaxed);
            failures.first.borrow_mut().get_or_insert(failure);
        }
    });
    futures_util::future::join_all(clients).await;
}

#[derive(QueryableByName)]
struct NodeRows {
    #[diesel(sql_type = BigInt)]
    xacts: i64,
    #[diesel(sql_type = BigInt)]
    rows: i64,
}

impl NodeRows {
    fn delta(
        before: &BTreeMap<String, NodeRows>,
        after: &BTreeMap<String, NodeRows>,
    ) -> BTreeMap<String, NodeRows> {
        after
            .iter()
            .map(|(node, a)| {
                let b = &before[node];
                (
                    node.clone(),
                    NodeRows {
                        xacts: a.xacts - b.xacts,
                        rows: a.rows - b.rows,
                    },
                )
            })
            .collect()
    }
}

/// Transactions committed and rows read in the orders database, on each node.
async fn node_rows(cluster: &Cluster) -> Result<BTreeMap<String, NodeRows>, String> {
    // Here only: its `load` would shadow `AtomicBool::load` elsewhere in this file.
    use diesel_async::RunQueryDsl;

    let mut rows = BTreeMap::new();
    for (node, url) in &cluster.nodes {
        let mut conn = AsyncPgConnection::establish(url)
            .await
            .map_err(|e| format!("{node}: {e}"))?;
        let counted = diesel::sql_query(
            "SELECT xact_commit AS xacts, tup_returned + tup_fetched AS rows \
             FROM pg_stat_database WHERE datname = current_database()",
        )
        .get_result::<NodeRows>(&mut conn)
        .await
        .map_err(|e| format!("{node}: {e}"))?;
        rows.insert(node.clone(), counted);
    }
    Ok(rows)
}

/// The read series of some instances' /metrics (every series with `_db_read` in its name but
/// the histogram's buckets), summed over the instances, taken when a scenario begins.
struct ReadCounters<'a> {
    instances: Vec<&'a str>,
    before: BTreeMap<String, f64>,
}

impl<'a> ReadCounters<'a> {
    async fn of(http: &reqwest::Client, instances: &[&'a str]) -> Result<Self, String> {
        Ok(Self {
            instances: instances.to_vec(),
            before: Self::take(http, instances).await?,
        })
    }

    async fn take(
        http: &reqwest::Client,
        instances: &[&str],
    ) -> Result<BTreeMap<String, f64>, String> {
        let mut sums = BTreeMap::new();
        for base in instances {
            let text = http
                .get(format!("{base}/metrics"))
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| format!("{base}/metrics: {e}"))?
                .text()
                .await
                .map_err(|e| format!("{base}/metrics: {e}"))?;
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                let Some((series, value)) = line.rsplit_once(' ') else {
                    continue;
                };
                let Some(start) = series.find("db_read") else {
                    continue;
                };
                if series.contains("_bucket") {
                    continue;
                }
                *sums.entry(short_name(&series[start..])).or_default() +=
                    value.parse::<f64>().unwrap_or(0.0);
            }
        }
        Ok(sums)
    }

    /// What the counters grew by since `of`, as `name{labels}=n`.
    async fn since(&self, http: &reqwest::Client) -> Result<String, String> {
        let now = Self::take(http, &self.instances).await?;
        if now.is_empty() {
            return Err("the instances' /metrics have no read series (db_read…)".into());
        }
        Ok(format!(
            "read metrics: {}",
            now.iter()
                .map(|(name, value)| {
                    let grown = value - self.before.get(name).unwrap_or(&0.0);
                    if name.ends_with("_sum") {
                        format!("{name}={grown:.3}")
                    } else {
                        format!("{name}={grown:.0}")
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        ))
    }
}

/// `db_reads_total{served_by="replica"}` → `reads{replica}`.
fn short_name(series: &str) -> String {
    let (name, labels) = series.split_once('{').unwrap_or((series, ""));
    let name = name.trim_start_matches("db_").trim_end_matches("_total");
    let values: Vec<&str> = labels
        .trim_end_matches('}')
        .split(',')
        .filter_map(|l| l.split_once('=').map(|(_, v)| v.trim_matches('"')))
        .collect();
    if values.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", values.join(","))
    }
}
