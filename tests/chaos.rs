//! Chaos: the real server binary against its own durable PostgreSQL, which is restarted in
//! immediate mode (a crash, as far as clients can tell) in the middle of a create load whose
//! clients retry with idempotency keys; then SIGTERM in the middle of another load.
//!
//! Checks that no acknowledged order is lost, none is duplicated, the server never exits on
//! its own, and it shuts down cleanly. Runs under `make test` (a test target without libtest's
//! harness, so its figures are printed).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::{json, Value};

const CLIENTS: usize = 40;
const CRASH_LOAD: Duration = Duration::from_secs(6);
const CRASH_AT: Duration = Duration::from_secs(2);
const SHUTDOWN_LOAD: Duration = Duration::from_secs(3);
const SIGTERM_AT: Duration = Duration::from_secs(1);
/// How long a client keeps retrying one order before it gives up on it.
const RETRY_BUDGET: Duration = Duration::from_secs(30);

fn main() {
    let outcome = actix_rt::System::new().block_on(run());
    if let Err(failure) = outcome {
        eprintln!("chaos: FAILED: {failure}");
        std::process::exit(1);
    }
    println!("chaos: passed");
}

async fn run() -> Result<(), String> {
    let cluster = Cluster::start()?;
    let server = Server::start(&cluster.url)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;

    // Phase 1: a crash of the database under load, with retrying clients.
    let stats = Arc::new(Stats::default());
    let restart = {
        let cluster_dir = cluster.dir.clone();
        let bindir = cluster.bindir.clone();
        actix_rt::spawn(async move {
            actix_rt::time::sleep(CRASH_AT).await;
            let restarted = as_postgres(&bindir.join("pg_ctl"))
                .args([
                    "-D",
                    path_str(&cluster_dir),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "30",
                    "restart",
                ])
                .args(["-l", path_str(&cluster_dir.join("server.log"))])
                .stdout(Stdio::null())
                .status();
            matches!(restarted, Ok(s) if s.success())
        })
    };
    let acked = load(&http, &server.base, &stats, CRASH_LOAD, true).await;
    if !restart.await.unwrap_or(false) {
        return Err("pg_ctl restart -m immediate failed".into());
    }
    let mut server = server;
    if let Some(status) = server.exited() {
        return Err(format!(
            "the server exited during the database crash ({status})"
        ));
    }
    let report = verify(&cluster.url, "crash", &acked).await?;
    println!(
        "chaos: crash phase: {} requests, {} acknowledged (201), {} retries, {} replays, {} orders found, duplicates: {}, lost: {}; server still running",
        stats.requests.load(Ordering::Relaxed),
        acked.len(),
        stats.retries.load(Ordering::Relaxed),
        stats.replays.load(Ordering::Relaxed),
        report.found,
        report.duplicates,
        report.lost,
    );
    report.check()?;

    // Phase 2: SIGTERM under load. In-flight requests finish; every 201 is in the database.
    let stats = Arc::new(Stats::default());
    let pid = server.child.id();
    let stop = actix_rt::spawn(async move {
        actix_rt::time::sleep(SIGTERM_AT).await;
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    });
    let acked = load(&http, &server.base, &stats, SHUTDOWN_LOAD, false).await;
    if !stop.await.unwrap_or(false) {
        return Err("could not send SIGTERM".into());
    }
    let status = server.wait(Duration::from_secs(15))?;
    let report = verify(&cluster.url, "shutdown", &acked).await?;
    println!(
        "chaos: shutdown phase: {} requests, {} acknowledged (201), {} unanswered after SIGTERM, {} orders found, lost: {}; {}",
        stats.requests.load(Ordering::Relaxed),
        acked.len(),
        stats.unanswered.load(Ordering::Relaxed),
        report.found,
        report.lost,
        status,
    );
    report.check()?;
    if stats.server_errors.load(Ordering::Relaxed) > 0 {
        return Err(format!(
            "{} answers were 5xx during shutdown",
            stats.server_errors.load(Ordering::Relaxed)
        ));
    }
    if !status.success() {
        return Err(format!(
            "the server exited with {status} after SIGTERM, expected 0"
        ));
    }
    Ok(())
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    retries: AtomicU64,
    replays: AtomicU64,
    unanswered: AtomicU64,
    server_errors: AtomicU64,
}

/// An order acknowledged with 201: its idempotency key and the id it was given.
struct Acked {
    key: String,
    id: i64,
}

fn order_body(key: &str) -> Value {
    json!({
        "customer_name": format!("Chaos {key}"),
        "customer_email": format!("{key}@example.com"),
        "items": [
            {"product_name": "Chaos A", "quantity": 1, "unit_price": 99.99},
            {"product_name": "Chaos B", "quantity": 2, "unit_price": 49.99}
        ]
    })
}

/// Runs `CLIENTS` clients creating orders until `duration` is over. With `retry`, a client
/// that gets a 503, a timeout or no connection retries the same order with the same key.
async fn load(
    http: &reqwest::Client,
    base: &str,
    stats: &Arc<Stats>,
    duration: Duration,
    retry: bool,
) -> Vec<Acked> {
    let phase = if retry { "crash" } else { "shutdown" };
    let deadline = Instant::now() + duration;
    let clients = (0..CLIENTS).map(|client| {
        let (http, stats, url) = (http.clone(), stats.clone(), format!("{base}/api/v1/orders"));
        async move {
            let mut acked = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline {
                n += 1;
                let key = format!("chaos-{phase}-{client}-{n}");
                match create(&http, &url, &key, &stats, retry).await {
                    Answer::Created(id) => acked.push(Acked { key, id }),
                    Answer::Refused => {}
                    // The server is gone: this client is done.
                    Answer::None => break,
                }
            }
            acked
        }
    });
    futures_util::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// What became of one order.
enum Answer {
    Created(i64),
    Refused,
    /// No answer at all: the server is gone.
    None,
}

async fn create(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    stats: &Stats,
    retry: bool,
) -> Answer {
    let body = order_body(key);
    let give_up = Instant::now() + RETRY_BUDGET;
    loop {
        stats.requests.fetch_add(1, Ordering::Relaxed);
        let answer = http
            .post(url)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await;
        match answer {
            Ok(response) if response.status() == 201 => {
                if response.headers().contains_key("idempotent-replayed") {
                    stats.replays.fetch_add(1, Ordering::Relaxed);
                }
                let order: Value = response.json().await.unwrap_or_default();
                return order["id"]
                    .as_i64()
                    .map_or(Answer::Refused, Answer::Created);
            }
            Ok(response) if response.status().is_server_error() && response.status() != 503 => {
                stats.server_errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("chaos: unexpected {} for {key}", response.status());
                return Answer::Refused;
            }
            Ok(response) if !retry || response.status() != 503 => {
                stats.server_errors.fetch_add(
                    u64::from(response.status().is_server_error()),
                    Ordering::Relaxed,
                );
                return Answer::Refused;
            }
            Err(_) if !retry => {
                stats.unanswered.fetch_add(1, Ordering::Relaxed);
                return Answer::None;
            }
            _ if Instant::now() > give_up => return Answer::Refused,
            _ => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                actix_rt::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[derive(QueryableByName)]
struct OrderCheck {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    customer_email: String,
    #[diesel(sql_type = Text)]
    total_amount: String,
    #[diesel(sql_type = BigInt)]
    items: i64,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

struct Report {
    found: usize,
    lost: usize,
    wrong: usize,
    duplicates: i64,
    orders_without_ack: i64,
}

impl Report {
    fn check(&self) -> Result<(), String> {
        if self.lost > 0 || self.wrong > 0 || self.duplicates > 0 {
            return Err(format!(
                "lost {}, wrong contents {}, duplicated keys {}",
                self.lost, self.wrong, self.duplicates
            ));
        }
        if self.orders_without_ack > 0 {
            return Err(format!(
                "{} orders exist whose key was never acknowledged",
                self.orders_without_ack
            ));
        }
        Ok(())
    }
}

/// Reads every acknowledged order back and counts the phase's orders per key.
async fn verify(url: &str, phase: &str, acked: &[Acked]) -> Result<Report, String> {
    use diesel_async::RunQueryDsl;

    let mut conn = AsyncPgConnection::establish(url)
        .await
        .map_err(|e| e.to_string())?;
    let ids: Vec<i64> = acked.iter().map(|a| a.id).collect();
    let rows: Vec<OrderCheck> = diesel::sql_query(
        "SELECT o.id, o.customer_email, o.total_amount::text AS total_amount, count(i.id) AS items \
         FROM orders o JOIN order_items i ON i.order_id = o.id WHERE o.id = ANY($1) GROUP BY o.id",
    )
    .bind::<diesel::sql_types::Array<BigInt>, _>(&ids)
    .load(&mut conn)
    .await
    .map_err(|e| e.to_string())?;
    let wrong = acked
        .iter()
        .filter(|a| {
            !rows.iter().any(|r| {
                r.id == a.id
                    && r.customer_email == format!("{}@example.com", a.key)
                    && r.total_amount == "199.97"
                    && r.items == 2
            })
        })
        .count();
    let pattern = format!("chaos-{phase}-%");
    let count = |sql: &'static str| {
        let pattern = pattern.clone();
        async move {
            let mut conn = AsyncPgConnection::establish(url)
                .await
                .map_err(|e| e.to_string())?;
            diesel::sql_query(sql)
                .bind::<Text, _>(pattern)
                .get_result::<Count>(&mut conn)
                .await
                .map(|c| c.n)
                .map_err(|e| e.to_string())
        }
    };
    // Each key's email is unique, so more orders than distinct emails means a duplicate.
    let duplicates = count(
        "SELECT count(*) - count(DISTINCT customer_email) AS n FROM orders WHERE customer_email LIKE $1",
    )
    .await?;
    let orders = count("SELECT count(*) AS n FROM orders WHERE customer_email LIKE $1").await?;
    let keys = count("SELECT count(*) AS n FROM idempotency_keys WHERE key LIKE $1").await?;
    if orders != keys {
        return Err(format!("{orders} orders but {keys} idempotency keys"));
    }
    let unique_acked = acked
        .iter()
        .map(|a| &a.key)
        .collect::<std::collections::HashSet<_>>()
        .len();
    Ok(Report {
        found: rows.len(),
        lost: ids.len() - rows.len(),
        wrong: wrong.saturating_sub(ids.len() - rows.len()),
        duplicates,
        // Without retries, a request cut off by SIGTERM may have been stored unacknowledged.
        orders_without_ack: if phase == "crash" {
            orders - unique_acked as i64
        } else {
            0
        },
    })
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// PostgreSQL refuses to run as root; as root its programs run as the postgres user.
fn as_postgres(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn pg_bindir() -> Result<PathBuf, String> {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let mut installed: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    installed.sort();
    from_pg_config
        .into_iter()
        .chain(installed.into_iter().rev())
        .find(|dir| dir.join("initdb").exists())
        .ok_or_else(|| {
            "PostgreSQL server binaries not found: sudo apt-get install postgresql".into()
        })
}

/// A throw-away cluster with PostgreSQL's durable defaults: with durability tuned away, a crash
/// would lose acknowledged commits and the test would rightly fail.
struct Cluster {
    bindir: PathBuf,
    dir: PathBuf,
    url: String,
}

impl Cluster {
    fn start() -> Result<Self, String> {
        let bindir = pg_bindir()?;
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chaos-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if running_as_root() {
            Command::new("chown")
                .args(["postgres:", path_str(&dir)])
                .status()
                .map_err(|e| e.to_string())?;
        }
        let port = free_port()?;
        let run = |command: &mut Command, what: &str| -> Result<(), String> {
            let output = command.output().map_err(|e| format!("{what}: {e}"))?;
            if output.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{what} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                ))
            }
        };
        run(
            as_postgres(&bindir.join("initdb")).args([
                "-D",
                path_str(&dir),
                "-U",
                "postgres",
                "--auth=trust",
            ]),
            "initdb",
        )?;
        // In the cluster's own configuration, so that `pg_ctl restart` keeps them.
        let settings = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n",
            path_str(&dir)
        );
        std::fs::write(dir.join("postgresql.auto.conf"), settings).map_err(|e| e.to_string())?;
        run(
            as_postgres(&bindir.join("pg_ctl")).args([
                "-D",
                path_str(&dir),
                "-w",
                "-t",
                "30",
                "-l",
                path_str(&dir.join("server.log")),
                "start",
            ]),
            "pg_ctl start",
        )?;
        Ok(Self {
            bindir,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bindir.join("pg_ctl"))
            .args(["-D", path_str(&self.dir), "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The release or debug server binary that cargo built for this test.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(database_url: &str) -> Result<Self, String> {
        let port = free_port()?;
        let log =
            std::fs::File::create(Path::new(env!("CARGO_TARGET_TMPDIR")).join("chaos-server.log"))
                .map_err(|e| e.to_string())?;
        let child = Command::new(env!("CARGO_BIN_EXE_order-service"))
            .env_clear()
            .env("DATABASE_URL", database_url)
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("DB_POOL_TIMEOUT", "2s")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start the server: {e}"))?;
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            let ready = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if ready {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("the server did not start listening within 30 s".into())
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn wait(&mut self, limit: Duration) -> Result<std::process::ExitStatus, String> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "the server did not exit within {limit:?} of SIGTERM"
        ))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
