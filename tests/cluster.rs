//! The replicated stack of `scripts/cluster.sh` under retrying, idempotent create load through
//! HAProxy: two instances, a rolling restart, a planned switchover, the loss of the database
//! host, and the old leader's return as a standby. One line per scenario; it fails on any lost
//! or duplicated order, on any answer but 201 where none may fail (the rolling restart), or on
//! an instance that exited. Then, when the instances read from the standbys, scenarios 6 to 10
//! (`reads`): read-your-writes under replication delay, monotonic list pages, the standbys'
//! share of the reads, a standby stopped and a switchover under reads.
//!
//! Runs against a cluster that is already up (`make test-cluster` starts a fresh one on its own
//! ports and stops it afterwards), found through `.data/cluster/$CLUSTER_NAME/cluster.env`.
//! Not part of `cargo test`: `cargo test --test cluster` runs it.

// Not tests/reads.rs, which cargo would take for a test binary of its own.
#[path = "cluster/reads.rs"]
mod reads;
mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::load::{self, Acked, Load, Report, Stats};

/// Orders and requests in flight of the two-instance run.
const ORDERS: usize = 10_000;
const CLIENTS: usize = 200;
/// Keys each sent concurrently to every instance, and how many times to each.
const SHARED_KEYS: usize = 20;
const SENDS_PER_INSTANCE: usize = 5;
/// Load before and after an event, so that the event happens under load and the recovery is
/// seen by clients.
const BEFORE: Duration = Duration::from_secs(2);
const AFTER: Duration = Duration::from_secs(3);
/// Load after the leader is killed: Patroni's ttl (10 s here) plus room for the recovery.
const AFTER_KILL: Duration = Duration::from_secs(25);

fn main() {
    let outcome = actix_rt::System::new().block_on(run());
    if let Err(failure) = outcome {
        eprintln!("cluster: FAILED: {failure}");
        std::process::exit(1);
    }
    println!("cluster: passed");
}

async fn run() -> Result<(), String> {
    let cluster = Cluster::from_env()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let mut all_acked = two_instances(&cluster, &http).await?;
    all_acked.extend(rolling_restart(&cluster, &http).await?);
    all_acked.extend(switchover(&cluster, &http).await?);
    let (acked, old_leader) = leader_lost(&cluster, &http).await?;
    all_acked.extend(acked);
    rejoin(&cluster, &old_leader).await?;
    if cluster.reads_on_replicas {
        all_acked.extend(reads::scenarios(&cluster, &http).await?);
    } else {
        println!("cluster: 6-10 (reads on the standbys) skipped: the instances read from the primary (CLUSTER_READS=primary)");
    }
    // Everything acknowledged since the start, read from the leader that is left.
    let report = load::verify(&cluster.database_url, "cluster", &all_acked, false).await?;
    println!(
        "cluster: all scenarios: {} acknowledged, {} read back, lost {}, duplicated {}",
        all_acked.len(),
        report.found,
        report.lost,
        report.duplicates
    );
    report.check()
}

/// Scenario 1: a fixed number of orders through HAProxy, then the same keys sent concurrently
/// to every instance directly.
async fn two_instances(cluster: &Cluster, http: &reqwest::Client) -> Result<Vec<Acked>, String> {
    let prefix = "cluster-two";
    let stats = Arc::new(Stats::default());
    let claimed = AtomicUsize::new(0);
    let started = Instant::now();
    let acked = cluster
        .load(prefix)
        .run_while(http, &stats, || {
            claimed.fetch_add(1, Ordering::Relaxed) < ORDERS
        })
        .await;
    let elapsed = started.elapsed();
    let report = load::verify(&cluster.database_url, prefix, &acked, true).await?;
    let shared = shared_keys(cluster, http).await?;
    println!(
        "cluster: 1 two instances: {} acknowledged of {ORDERS} in {:.1} s ({:.0}/s, {CLIENTS} in flight), {}; \
         {SHARED_KEYS} keys each sent {} times at once to {} instances: {} orders",
        acked.len(),
        elapsed.as_secs_f64(),
        acked.len() as f64 / elapsed.as_secs_f64(),
        outcome(&report, &stats, &acked, None),
        SENDS_PER_INSTANCE * cluster.instances.len(),
        cluster.instances.len(),
        shared.found,
    );
    report.check()?;
    shared.check()?;
    if acked.len() != ORDERS {
        return Err(format!("{} of {ORDERS} orders acknowledged", acked.len()));
    }
    cluster.instances_running()?;
    Ok(acked)
}

/// Every key is sent `SENDS_PER_INSTANCE` times to each instance at once: every answer must be
/// 201 with one and the same order.
async fn shared_keys(cluster: &Cluster, http: &reqwest::Client) -> Result<Report, String> {
    let prefix = "cluster-shared";
    let mut acked = Vec::new();
    for k in 0..SHARED_KEYS {
        let key = format!("{prefix}-{k}");
        let body = load::order_body(&key);
        let sends = cluster
            .instances
            .iter()
            .cycle()
            .take(SENDS_PER_INSTANCE * cluster.instances.len())
            .map(|base| {
                http.post(format!("{base}/api/v1/orders"))
                    .header("Idempotency-Key", &key)
                    .json(&body)
                    .send()
            });
        let mut ids = Vec::new();
        for answer in futures_util::future::join_all(sends).await {
            let response = answer.map_err(|e| format!("{key}: {e}"))?;
            if response.status() != 201 {
                return Err(format!("{key}: answered {}", response.status()));
            }
            let order: Value = response.json().await.map_err(|e| e.to_string())?;
            ids.push(order["id"].as_i64().ok_or(format!("{key}: no id"))?);
        }
        ids.dedup();
        if ids.len() != 1 {
            return Err(format!("{key} was answered with orders {ids:?}"));
        }
        acked.push(Acked {
            key,
            id: ids[0],
            at: Instant::now(),
        });
    }
    load::verify(&cluster.database_url, prefix, &acked, true).await
}

/// Scenario 2: each instance in turn is sent SIGTERM, drains, exits and is started again, while
/// clients go through HAProxy. No client may see a failure.
async fn rolling_restart(cluster: &Cluster, http: &reqwest::Client) -> Result<Vec<Acked>, String> {
    let prefix = "cluster-rolling";
    let mut statuses = Vec::new();
    let (acked, stats, restarted) = cluster
        .under_load(http, prefix, async {
            for n in 1..=cluster.instances.len() {
                cluster.script(&["stop-instance", &n.to_string()]).await?;
                statuses.push(cluster.exit_status(n)?);
                cluster.script(&["start-instance", &n.to_string()]).await?;
            }
            Ok(())
        })
        .await;
    restarted?;
    let report = load::verify(&cluster.database_url, prefix, &acked, true).await?;
    println!(
        "cluster: 2 rolling restart: {} acknowledged, {}; exit statuses after SIGTERM: {statuses:?}",
        acked.len(),
        outcome(&report, &stats, &acked, None),
    );
    report.check()?;
    // Every request's first answer must have been its 201.
    let requests = Stats::get(&stats.requests);
    if requests != acked.len() as u64 {
        return Err(format!(
            "{requests} requests for {} acknowledged orders: clients saw failures during the rolling restart",
            acked.len()
        ));
    }
    if statuses.iter().any(|s| s != "0") {
        return Err(format!(
            "an instance exited with {statuses:?} after SIGTERM, expected 0"
        ));
    }
    cluster.instances_running()?;
    Ok(acked)
}

/// Scenario 3: `patronictl switchover` to the synchronous standby under load.
async fn switchover(cluster: &Cluster, http: &reqwest::Client) -> Result<Vec<Acked>, String> {
    let prefix = "cluster-switchover";
    let mut event_at = Instant::now();
    let (acked, stats, switched) = cluster
        .under_load(http, prefix, async {
            event_at = Instant::now();
            cluster.script(&["switchover"]).await
        })
        .await;
    switched?;
    let report = load::verify(&cluster.database_url, prefix, &acked, true).await?;
    println!(
        "cluster: 3 switchover: {} acknowledged, {}",
        acked.len(),
        outcome(&report, &stats, &acked, Some(event_at)),
    );
    report.check()?;
    cluster.instances_running()?;
    cluster.script(&["wait-healthy", "90"]).await?;
    Ok(acked)
}

/// Scenario 4: the leader's Patroni and postmaster are SIGKILLed together under load. Returns
/// the orders acknowledged and the node that was lost.
async fn leader_lost(
    cluster: &Cluster,
    http: &reqwest::Client,
) -> Result<(Vec<Acked>, String), String> {
    let prefix = "cluster-failover";
    let settings = cluster.patroni_settings(http).await?;
    let readiness = Readiness::default();
    let done = AtomicBool::new(false);
    let mut lost = (String::new(), Instant::now());
    let watch = readiness.watch(http, &cluster.instances, &done);
    let event = async {
        let killed = async {
            lost = (cluster.kill_leader(http).await?, Instant::now());
            actix_rt::time::sleep(AFTER_KILL - AFTER).await;
            Ok(())
        };
        let outcome = cluster.under_load(http, prefix, killed).await;
        done.store(true, Ordering::Relaxed);
        outcome
    };
    let ((acked, stats, killed), ()) = futures_util::join!(event, watch);
    killed?;
    let (old_leader, killed_at) = lost;
    let report = load::verify(&cluster.database_url, prefix, &acked, true).await?;
    let back = readiness.back_within(http, &cluster.instances).await;
    println!(
        "cluster: 4 leader {old_leader} lost (Patroni and postmaster SIGKILLed): {} acknowledged, {}; \
         readiness 503 seen on {}/{} instances, all ready again: {back}; Patroni ttl {} s, loop_wait {} s, retry_timeout {} s",
        acked.len(),
        outcome(&report, &stats, &acked, Some(killed_at)),
        readiness.went_down(),
        cluster.instances.len(),
        settings["ttl"],
        settings["loop_wait"],
        settings["retry_timeout"],
    );
    report.check()?;
    cluster.instances_running()?;
    if readiness.went_down() != cluster.instances.len() {
        return Err(
            "not every instance reported 503 on /health/ready while the database was gone".into(),
        );
    }
    if !back {
        return Err("an instance did not report ready again by itself".into());
    }
    Ok((acked, old_leader))
}

/// Scenario 5: the lost node is started again and Patroni makes it a standby of the new leader.
async fn rejoin(cluster: &Cluster, node: &str) -> Result<(), String> {
    let log_path = cluster.dir.join(node).join("patroni.log");
    let read_log = || std::fs::read_to_string(&log_path).map_err(|e| e.to_string());
    let logged_before = read_log()?.len();
    let started = Instant::now();
    cluster.script(&["start-node", node]).await?;
    cluster.script(&["wait-healthy", "120"]).await?;
    let log = read_log()?.split_off(logged_before);
    println!(
        "cluster: 5 {node} back as a standby, cluster healthy (a leader, a synchronous standby, every node streaming) after {:.1} s; pg_rewind run: {}",
        started.elapsed().as_secs_f64(),
        if log.contains("pg_rewind") { "yes" } else { "no" },
    );
    Ok(())
}

/// The nodes by role, as Patroni names them.
struct Roles {
    leader: String,
    sync_standby: String,
    /// The standby that is not synchronous.
    replica: String,
}

impl Roles {
    fn role(&self, node: &str) -> &'static str {
        match node {
            n if n == self.leader => "leader",
            n if n == self.sync_standby => "sync standby",
            _ => "standby",
        }
    }
}

/// Runs `work`, which stops once `over` is set, from `BEFORE` before `event` until `AFTER`
/// after it.
async fn while_loaded<T, W>(
    over: &AtomicBool,
    event: impl std::future::Future<Output = Result<T, String>>,
    work: impl std::future::Future<Output = W>,
) -> (W, Result<T, String>) {
    let timed = async {
        actix_rt::time::sleep(BEFORE).await;
        let outcome = event.await;
        actix_rt::time::sleep(AFTER).await;
        over.store(true, Ordering::Relaxed);
        outcome
    };
    futures_util::join!(work, timed)
}

/// Orders sent that never got a 201, retries included.
fn unacknowledged(stats: &Stats, acked: &[Acked]) -> u64 {
    Stats::get(&stats.requests) - Stats::get(&stats.retries) - acked.len() as u64
}

/// The figures every scenario prints: losses, duplicates, retries, and the longest time
/// without any 201 since `event` (or since the load began).
fn outcome(report: &Report, stats: &Stats, acked: &[Acked], event: Option<Instant>) -> String {
    let mut times: Vec<Instant> = acked.iter().map(|a| a.at).collect();
    times.sort();
    let from = event.unwrap_or_else(|| times.first().copied().unwrap_or_else(Instant::now));
    let gap = times
        .iter()
        .filter(|t| **t >= from)
        .fold((from, Duration::ZERO), |(last, gap), t| {
            (*t, gap.max(t.duration_since(last)))
        })
        .1;
    format!(
        "lost {}, duplicated {}, {} never acknowledged, {} requests retried after a 503 or no answer ({} answered as replays), longest time without a 201: {:.2} s",
        report.lost,
        report.duplicates,
        unacknowledged(stats, acked),
        Stats::get(&stats.retries),
        Stats::get(&stats.replays),
        gap.as_secs_f64(),
    )
}

/// Whether each instance's `/health/ready` answered 503 at some point while watched.
#[derive(Default)]
struct Readiness {
    went_down: std::cell::RefCell<HashMap<String, bool>>,
}

impl Readiness {
    async fn watch(&self, http: &reqwest::Client, instances: &[String], done: &AtomicBool) {
        while !done.load(Ordering::Relaxed) {
            for base in instances {
                if ready(http, base).await == Some(false) {
                    self.went_down.borrow_mut().insert(base.clone(), true);
                }
            }
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn went_down(&self) -> usize {
        self.went_down.borrow().len()
    }

    /// Every instance answers 200 within 15 s.
    async fn back_within(&self, http: &reqwest::Client, instances: &[String]) -> bool {
        let limit = Instant::now() + Duration::from_secs(15);
        while Instant::now() < limit {
            let mut all = true;
            for base in instances {
                all &= ready(http, base).await == Some(true);
            }
            if all {
                return true;
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

/// `/health/ready`: Some(true) on 200, Some(false) on 503, None without an answer.
async fn ready(http: &reqwest::Client, base: &str) -> Option<bool> {
    let answer = http
        .get(format!("{base}/health/ready"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .ok()?;
    match answer.status().as_u16() {
        200 => Some(true),
        503 => Some(false),
        _ => None,
    }
}

/// The cluster that `scripts/cluster.sh up` started, as its `cluster.env` describes it.
struct Cluster {
    dir: PathBuf,
    url: String,
    instances: Vec<String>,
    /// Where instances outside HAProxy answer (`cluster.sh start-instance N NODE`), from the
    /// first number after the instances.
    spares: Vec<String>,
    /// Whether the instances read through HAProxy's read port (CLUSTER_READS=replicas).
    reads_on_replicas: bool,
    database_url: String,
    /// Each node's name and the service's database on it.
    nodes: Vec<(String, String)>,
    patroni: Vec<String>,
    /// The instances' PIDs when the test began or last started them.
    pids: std::cell::RefCell<Vec<u32>>,
}

impl Cluster {
    fn from_env() -> Result<Self, String> {
        let name = std::env::var("CLUSTER_NAME").unwrap_or_else(|_| "dev".into());
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".data/cluster")
            .join(name);
        let text = std::fs::read_to_string(dir.join("cluster.env")).map_err(|e| {
            format!(
                "{}: {e}; start the cluster first (scripts/cluster.sh up)",
                dir.display()
            )
        })?;
        let vars: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let var = |name: &str| {
            vars.get(name)
                .map(|v| v.to_string())
                .ok_or(format!("cluster.env has no {name}"))
        };
        let list = |name: &str| var(name).map(|v| v.split_whitespace().map(String::from).collect());
        let nodes: Vec<String> = list("NODES")?;
        let node_urls: Vec<String> = list("NODE_DATABASE_URLS")?;
        let cluster = Self {
            url: var("CLUSTER_URL")?,
            instances: list("INSTANCE_URLS")?,
            spares: list("SPARE_INSTANCE_URLS")?,
            reads_on_replicas: var("CLUSTER_READS")? == "replicas",
            database_url: var("DATABASE_URL")?,
            nodes: nodes.into_iter().zip(node_urls).collect(),
            patroni: list("PATRONI_URLS")?,
            pids: Default::default(),
            dir,
        };
        cluster.remember_pids();
        Ok(cluster)
    }

    fn load<'a>(&'a self, prefix: &'a str) -> Load<'a> {
        Load {
            base: &self.url,
            prefix,
            clients: CLIENTS,
            duration: Duration::ZERO,
            retry: true,
        }
    }

    /// Runs the load from `BEFORE` before `event` until `AFTER` after it.
    async fn under_load<T>(
        &self,
        http: &reqwest::Client,
        prefix: &str,
        event: impl std::future::Future<Output = Result<T, String>>,
    ) -> (Vec<Acked>, Arc<Stats>, Result<T, String>) {
        let stats = Arc::new(Stats::default());
        let over = AtomicBool::new(false);
        let load = self.load(prefix);
        let work = load.run_while(http, &stats, || !over.load(Ordering::Relaxed));
        let (acked, outcome) = while_loaded(&over, event, work).await;
        (acked, stats, outcome)
    }

    /// `scripts/cluster.sh ARGS` on a blocking thread, with this process's environment (the
    /// cluster's name and ports).
    async fn script(&self, args: &[&str]) -> Result<(), String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.sh");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let what = format!("cluster.sh {}", args.join(" "));
        tokio::task::spawn_blocking(move || support::run(Command::new(&script).args(&args), &what))
            .await
            .map_err(|e| e.to_string())??;
        self.remember_pids();
        Ok(())
    }

    fn remember_pids(&self) {
        let pids = (1..=self.instances.len())
            .map(|n| self.pid(&format!("instance-{n}.pid")))
            .collect::<Result<_, _>>();
        // An instance being restarted has no PID file; its PID is taken once it is back.
        if let Ok(pids) = pids {
            *self.pids.borrow_mut() = pids;
        }
    }

    /// The first number in the file at `path` under the cluster's folder.
    fn pid(&self, path: &str) -> Result<u32, String> {
        std::fs::read_to_string(self.dir.join(path))
            .map_err(|e| format!("{path}: {e}"))?
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or(format!("{path} holds no PID"))
    }

    /// Every instance still runs with the PID it had, and none has recorded an exit.
    fn instances_running(&self) -> Result<(), String> {
        for (n, pid) in self.pids.borrow().iter().enumerate() {
            let alive = Command::new("kill")
                .args(["-0", &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if !alive || self.dir.join(format!("instance-{}.exit", n + 1)).exists() {
                return Err(format!(
                    "instance {} (pid {pid}) exited; see {}",
                    n + 1,
                    self.dir.join(format!("instance-{}.log", n + 1)).display()
                ));
            }
        }
        Ok(())
    }

    /// The exit status that cluster.sh recorded for instance `n`.
    fn exit_status(&self, n: usize) -> Result<String, String> {
        std::fs::read_to_string(self.dir.join(format!("instance-{n}.exit")))
            .map(|s| s.trim().to_owned())
            .map_err(|e| format!("instance {n}'s exit status: {e}"))
    }

    /// Patroni's view of the cluster from the first node that answers.
    async fn patroni_get(&self, http: &reqwest::Client, path: &str) -> Result<Value, String> {
        for base in &self.patroni {
            if let Ok(answer) = http.get(format!("{base}{path}")).send().await {
                if let Ok(json) = answer.json::<Value>().await {
                    return Ok(json);
                }
            }
        }
        Err(format!("no Patroni node answered {path}"))
    }

    /// The timings in force (ttl, loop_wait, retry_timeout): those in etcd, which win over
    /// the configuration files.
    async fn patroni_settings(&self, http: &reqwest::Client) -> Result<Value, String> {
        self.patroni_get(http, "/config").await
    }

    /// Which node has which role now.
    async fn roles(&self, http: &reqwest::Client) -> Result<Roles, String> {
        let members = self.patroni_get(http, "/cluster").await?;
        let named = |role: &str| {
            members["members"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["role"] == role))
                .and_then(|m| m["name"].as_str())
                .map(String::from)
                .ok_or(format!("Patroni reports no {role}: {members}"))
        };
        Ok(Roles {
            leader: named("leader")?,
            sync_standby: named("sync_standby")?,
            replica: named("replica")?,
        })
    }

    /// The URL of the `n`th instance outside HAProxy (0: the first).
    fn spare(&self, n: usize) -> Result<&str, String> {
        self.spares.get(n).map(String::as_str).ok_or(format!(
            "cluster.env names {} spare instances",
            self.spares.len()
        ))
    }

    fn instance_refs(&self) -> Vec<&str> {
        self.instances.iter().map(String::as_str).collect()
    }

    /// SIGKILLs the leader's Patroni and its postmaster together, as the loss of the host would
    /// stop them; returns the leader's name.
    async fn kill_leader(&self, http: &reqwest::Client) -> Result<String, String> {
        let members = self.patroni_get(http, "/cluster").await?;
        let leader = members["members"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["role"] == "leader"))
            .and_then(|m| m["name"].as_str())
            .ok_or("Patroni reports no leader")?
            .to_owned();
        let patroni = self.pid(&format!("{leader}/patroni.pid"))?;
        let postmaster = self.pid(&format!("{leader}/data/postmaster.pid"))?;
        support::run(
            Command::new("kill").args(["-KILL", &patroni.to_string(), &postmaster.to_string()]),
            "kill -KILL",
        )?;
        Ok(leader)
    }
}
