//! Production database connections, each against PostgreSQL clusters this test starts on
//! loopback, with the real server binary:
//!
//! - TLS: a cluster that takes only TLS host connections, with a CA and a server certificate
//!   made here with openssl; every `sslmode` does what it does in libpq.
//! - Several hosts: a dead port listed first; a standby listed first with
//!   `target_session_attrs=read-write`; the standby promoted and the old primary stopped while
//!   the server runs, which then writes to the new primary without a restart.
//! - Readiness: with the database killed, probes and API requests are answered 503 at once,
//!   liveness stays 200, and readiness comes back by itself when the database does.
//!
//! A test target without libtest's harness, so that its figures are printed.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use support::postgres::Cluster;
use support::server::Server;
use support::{path_str, run};

fn main() {
    let outcome = actix_rt::System::new().block_on(async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        tls().await?;
        several_hosts(&http).await?;
        readiness(&http).await
    });
    if let Err(failure) = outcome {
        eprintln!("connections: FAILED: {failure}");
        std::process::exit(1);
    }
    println!("connections: passed");
}

async fn tls() -> Result<(), String> {
    let certs = Certificates::make()?;
    let cluster = Cluster::init("tls-pg")?;
    for (name, from) in [
        ("server.crt", &certs.server_cert),
        ("server.key", &certs.server_key),
    ] {
        let contents = std::fs::read_to_string(from).map_err(|e| e.to_string())?;
        cluster.write_file(name, &contents)?;
    }
    run(
        support::postgres::as_postgres(Path::new("chmod"))
            .args(["600", path_str(&cluster.dir.join("server.key"))]),
        "chmod server.key",
    )?;
    // 127.0.0.2 is loopback too, and not in the certificate: a host name verify-full refuses.
    cluster.write_settings(
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
         listen_addresses = '127.0.0.1,127.0.0.2'\n",
    )?;
    cluster.write_file(
        "pg_hba.conf",
        "local all all trust\n\
         hostssl all all 127.0.0.0/8 trust\n\
         hostnossl all all 0.0.0.0/0 reject\n",
    )?;
    cluster.start()?;

    let url = |host: &str, query: String| {
        format!(
            "postgres://postgres@{host}:{}/postgres?{query}",
            cluster.port
        )
    };
    let ca = path_str(&certs.ca_cert).to_owned();
    let other_ca = path_str(&certs.other_ca_cert).to_owned();
    let serves = [
        ("require", url("127.0.0.1", "sslmode=require".into())),
        (
            "verify-full, right CA, host localhost",
            url("localhost", format!("sslmode=verify-full&sslrootcert={ca}")),
        ),
        (
            "verify-ca, right CA, a host name not in the certificate",
            url("127.0.0.2", format!("sslmode=verify-ca&sslrootcert={ca}")),
        ),
    ];
    for (case, url) in serves {
        let server = Server::start("tls", &url, &[])?;
        let status = reqwest::get(format!("{}/health/ready", server.base))
            .await
            .map_err(|e| e.to_string())?
            .status();
        println!("connections: tls: {case}: serves, /health/ready {status}");
        if status != StatusCode::OK {
            return Err(format!("tls: {case}: /health/ready answered {status}"));
        }
    }
    let refused = [
        (
            "verify-full, another CA",
            url(
                "localhost",
                format!("sslmode=verify-full&sslrootcert={other_ca}"),
            ),
            "certificate verify failed",
        ),
        (
            "verify-full, right CA, a host name not in the certificate",
            url("127.0.0.2", format!("sslmode=verify-full&sslrootcert={ca}")),
            "certificate verify failed",
        ),
        (
            "disable against a server that demands TLS",
            url("127.0.0.1", "sslmode=disable".into()),
            "no encryption",
        ),
    ];
    for (case, url, reason) in refused {
        let (status, log) = Server::start_up_failure("tls-refused", &url, &[])?;
        let said = log
            .lines()
            .find(|line| line.contains("cannot start"))
            .unwrap_or_default()
            .to_owned();
        println!("connections: tls: {case}: start-up stopped ({status}): {said}");
        if status.success() || !said.contains(reason) {
            return Err(format!(
                "tls: {case}: expected start-up to stop saying {reason:?}; exit {status}, log: {log}"
            ));
        }
    }
    Ok(())
}

/// A CA and a server certificate for `localhost` and 127.0.0.1 that it signed, and a second
/// CA that signed nothing.
struct Certificates {
    dir: PathBuf,
    ca_cert: PathBuf,
    other_ca_cert: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

impl Certificates {
    fn make() -> Result<Self, String> {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("tls-certs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let file = |name: &str| dir.join(name);
        let openssl = |args: &[&str], what: &str| {
            run(Command::new("openssl").current_dir(&dir).args(args), what)
        };
        for ca in ["ca", "other-ca"] {
            openssl(
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=ordersvc test {ca}"),
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.crt"),
                ],
                "openssl req (CA)",
            )?;
        }
        openssl(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
            "openssl req (server)",
        )?;
        std::fs::write(
            file("san.ext"),
            "subjectAltName = DNS:localhost, IP:127.0.0.1\n",
        )
        .map_err(|e| e.to_string())?;
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                "server.crt",
            ],
            "openssl x509 (sign)",
        )?;
        Ok(Self {
            ca_cert: file("ca.crt"),
            other_ca_cert: file("other-ca.crt"),
            server_cert: file("server.crt"),
            server_key: file("server.key"),
            dir,
        })
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn order(key: &str) -> serde_json::Value {
    json!({
        "customer_name": format!("Connections {key}"),
        "customer_email": format!("{key}@example.com"),
        "items": [{"product_name": "Probe", "quantity": 1, "unit_price": 1.50}]
    })
}

/// Creates one order, retrying the same key through 503s and refused connections for up to
/// `budget`; its id and how long it took.
async fn create(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    budget: Duration,
) -> Result<(i64, Duration), String> {
    let started = Instant::now();
    loop {
        let answer = http
            .post(format!("{base}/api/v1/orders"))
            .header("Idempotency-Key", key)
            .json(&order(key))
            .send()
            .await;
        let last = match answer {
            Ok(response) if response.status() == StatusCode::CREATED => {
                let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
                let id = body["id"].as_i64().ok_or("201 without an id")?;
                return Ok((id, started.elapsed()));
            }
            Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                "503".to_owned()
            }
            Ok(response) => return Err(format!("create {key}: {}", response.status())),
            Err(e) => e.to_string(),
        };
        if started.elapsed() > budget {
            return Err(format!(
                "create {key}: still failing after {budget:?} ({last})"
            ));
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many orders with this id exist on `cluster`.
fn orders_on(cluster: &Cluster, id: i64) -> Result<i64, String> {
    let output = Command::new("psql")
        .args([
            &cluster.url(),
            "-tAc",
            &format!("SELECT count(*) FROM orders WHERE id = {id}"),
        ])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("psql: {}", String::from_utf8_lossy(&output.stderr)))
}

async fn several_hosts(http: &reqwest::Client) -> Result<(), String> {
    let primary = Cluster::start_new("hosts-primary")?;
    let dead_port = support::free_port()?;

    let url = format!(
        "postgres://postgres@127.0.0.1:{dead_port},127.0.0.1:{}/postgres?sslmode=disable",
        primary.port
    );
    let server = Server::start("hosts-dead-first", &url, &[])?;
    let (id, _) = create(http, &server.base, "hosts-dead-first", Duration::ZERO).await?;
    println!("connections: several hosts: a dead port listed first: order {id} stored on the live server");
    drop(server);

    let standby = Cluster::standby_of(&primary, "hosts-standby")?;
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?sslmode=disable&target_session_attrs=read-write",
        standby.port, primary.port
    );
    let server = Server::start("hosts-standby-first", &url, &[])?;
    let (before, _) = create(http, &server.base, "hosts-before-failover", Duration::ZERO).await?;
    println!(
        "connections: several hosts: a standby listed first, target_session_attrs=read-write: order {before} written to the primary"
    );
    // The standby must have the order before it is promoted, as a synchronous standby would.
    let caught_up = Instant::now();
    while orders_on(&standby, before).unwrap_or(0) != 1 {
        if caught_up.elapsed() > Duration::from_secs(30) {
            return Err("the standby did not replay the order within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    primary.kill()?;
    standby.promote()?;
    let (after, waited) = create(
        http,
        &server.base,
        "hosts-after-failover",
        Duration::from_secs(30),
    )
    .await?;
    let stored = orders_on(&standby, after)?;
    let kept = orders_on(&standby, before)?;
    println!(
        "connections: several hosts: old primary killed, standby promoted: the running server wrote order {after} to the new primary {:.2} s after the promotion (stored: {stored}; the order from before: {kept})",
        waited.as_secs_f64()
    );
    if stored != 1 || kept != 1 {
        return Err(format!(
            "after the failover the new primary holds {stored} of the new order and {kept} of the old"
        ));
    }
    Ok(())
}

async fn readiness(http: &reqwest::Client) -> Result<(), String> {
    let cluster = Cluster::start_new("ready-pg")?;
    // A pool timeout far longer than any answer below: an answer that waited for the pool
    // instead of failing fast would take 20 s and hit the client's 10 s timeout.
    let server = Server::start("ready", &cluster.url(), &[("DB_POOL_TIMEOUT", "20s")])?;
    let base = &server.base;
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move {
            let started = Instant::now();
            let response = http
                .get(&url)
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            Ok::<_, String>((response, started.elapsed()))
        }
    };
    let (ready, _) = get("/health/ready").await?;
    if ready.status() != StatusCode::OK {
        return Err(format!(
            "/health/ready before the outage: {}",
            ready.status()
        ));
    }

    cluster.kill()?;
    let (first, first_took) = get("/health/ready").await?;
    let mut took = Vec::new();
    for round in 0..20 {
        for path in ["/health/ready", "/health", "/api/v1/orders"] {
            let (response, elapsed) = get(path).await?;
            expect_503(path, &response)?;
            took.push(elapsed);
        }
        let started = Instant::now();
        let response = http
            .post(format!("{base}/api/v1/orders"))
            .json(&order(&format!("outage-{round}")))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        expect_503("POST /api/v1/orders", &response)?;
        took.push(started.elapsed());
    }
    let (live, _) = get("/health/live").await?;
    took.sort();
    println!(
        "connections: readiness: database killed: the first probe answered {} in {:.1} ms; then {} answers (ready, health, list, create) all 503 with Retry-After, median {:.2} ms, max {:.2} ms; /health/live {}",
        first.status().as_u16(),
        ms(first_took),
        took.len(),
        ms(took[took.len() / 2]),
        ms(took[took.len() - 1]),
        live.status().as_u16(),
    );
    expect_503("the first /health/ready", &first)?;
    if live.status() != StatusCode::OK {
        return Err(format!(
            "/health/live answered {} during the outage",
            live.status()
        ));
    }

    cluster.start()?;
    let restarted = Instant::now();
    loop {
        let (response, _) = get("/health/ready").await?;
        if response.status() == StatusCode::OK {
            break;
        }
        if restarted.elapsed() > Duration::from_secs(30) {
            return Err(
                "/health/ready did not turn 200 within 30 s of the database's return".into(),
            );
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "connections: readiness: database back: /health/ready 200 {:.2} s after pg_ctl start returned",
        restarted.elapsed().as_secs_f64()
    );
    Ok(())
}

fn expect_503(what: &str, response: &reqwest::Response) -> Result<(), String> {
    if response.status() != StatusCode::SERVICE_UNAVAILABLE {
        return Err(format!(
            "{what} answered {} during the outage",
            response.status()
        ));
    }
    if !response.headers().contains_key("retry-after") {
        return Err(format!("{what}: a 503 without Retry-After"));
    }
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
