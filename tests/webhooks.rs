//! Webhooks end to end: the real server binary, its own PostgreSQL, and a receiver in this
//! process on 127.0.0.1 that checks every signature with the shared secret, as a consumer's
//! Standard Webhooks library would.
//!
//! - A flaky receiver (a quarter of requests answered 500, one in ten held past the server's
//!   timeout), a service restart (SIGTERM, started again on the same database) in the middle of
//!   the traffic and a PostgreSQL crash after it: in the end every event has been received with a valid signature, no
//!   delivery is pending or failed, and per event the gaps between attempts are at least the
//!   retry schedule's delays.
//! - Two instances on one database and a receiver that always answers 200: every event is
//!   received exactly once, since the dispatchers claim with `FOR UPDATE SKIP LOCKED`.
//!
//! A test target without libtest's harness, so its figures are printed.

mod support;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use diesel::sql_types::BigInt;
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use support::load::order_body;
use support::postgres::Cluster;
use support::server::Server;

/// The receiver verifies with the key inside; the server is given the key as configured.
const SECRET: &str = "whsec_BHC6CYBX4GAJohzIKu7mwfrzQSclsQ9oby9SH7doyQ4=";
/// Short, so that held requests time out quickly; the receiver holds them for twice this.
const TIMEOUT: Duration = Duration::from_millis(300);
/// The retry schedule in milliseconds: long enough (twelve retries) that a receiver failing one
/// request in three at random all but never exhausts it, short enough for a test.
const SCHEDULE_MS: [u64; 12] = [50, 100, 150, 200, 250, 300, 300, 300, 300, 300, 300, 300];
/// How long the deliveries may take to drain at the end of a scenario before the test fails.
const DRAIN_LIMIT: Duration = Duration::from_secs(40);
/// Orders per phase of the flaky scenario, and of the two-instance scenario.
const ORDERS: usize = 30;

fn main() {
    let outcome = actix_rt::System::new().block_on(async {
        let cluster = Cluster::start_new("webhooks-pg")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        flaky_receiver_and_a_restart(&cluster, &http).await?;
        two_instances(&cluster, &http).await
    });
    if let Err(failure) = outcome {
        eprintln!("webhooks: FAILED: {failure}");
        std::process::exit(1);
    }
    println!("webhooks: passed");
}

async fn flaky_receiver_and_a_restart(
    cluster: &Cluster,
    http: &reqwest::Client,
) -> Result<(), String> {
    let receiver = Receiver::start(Behaviour::Flaky)?;
    let env = server_env(&receiver);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = cluster.url();

    let mut first = Server::start("webhooks-first", &url, &env)?;
    let mut orders = Vec::new();
    for n in 0..ORDERS {
        let id = create_order(http, &first.base, &format!("flaky-{n}")).await?;
        set_status(http, &first.base, id, "processing").await?;
        orders.push(id);
    }
    // At once, while deliveries are in flight and retries are scheduled.
    first.terminate()?;
    let stopped = first.wait(Duration::from_secs(20))?;
    let mut conn = connect(&url).await?;
    let pending_at_restart = count(
        &mut conn,
        "SELECT count(*) AS n FROM webhook_deliveries WHERE state = 'pending'",
    )
    .await?;

    let mut second = Server::start("webhooks-second", &url, &env)?;
    for (n, id) in orders.iter().enumerate() {
        let to = if n % 3 == 0 { "cancelled" } else { "completed" };
        set_status(http, &second.base, *id, to).await?;
    }
    for n in ORDERS..2 * ORDERS {
        create_order(http, &second.base, &format!("flaky-{n}")).await?;
    }
    // A database crash while retries are scheduled: the dispatcher reconnects by itself and
    // nothing it had committed is lost.
    let pending_at_crash = count(
        &mut conn,
        "SELECT count(*) AS n FROM webhook_deliveries WHERE state = 'pending'",
    )
    .await?;
    cluster.pg_ctl(&["-m", "immediate", "restart"])?;
    let mut conn = connect(&url).await?;
    let outcome = drain(&mut conn).await?;
    let report = receiver.report(&outcome.event_ids);
    let compared = receiver.compare_with_feed(http, &second.base).await?;
    println!(
        "webhooks: flaky receiver and a restart: {}, {compared} bodies equal to the feed's \
         events; first instance exited {stopped} with {pending_at_restart} deliveries pending, \
         PostgreSQL crashed with {pending_at_crash} pending; {}",
        report.figures(&outcome),
        match second.exited() {
            None => "second instance still running".to_owned(),
            Some(status) => format!("second instance exited ({status})"),
        },
    );
    if let Some(status) = second.exited() {
        return Err(format!(
            "the second instance exited ({status}) during the database crash"
        ));
    }
    report.check(&outcome)?;
    if !stopped.success() {
        return Err(format!(
            "the first instance exited with {stopped} after SIGTERM"
        ));
    }
    if report.requests == report.received_ids {
        return Err("no request was retried: the flaky receiver did not fail any".into());
    }
    Ok(())
}

async fn two_instances(cluster: &Cluster, http: &reqwest::Client) -> Result<(), String> {
    let mut conn = connect(&cluster.url()).await?;
    diesel::sql_query("CREATE DATABASE webhooks_two")
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/webhooks_two",
        cluster.port
    );
    let receiver = Receiver::start(Behaviour::Healthy)?;
    let env = server_env(&receiver);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The first applies the migrations; the second finds them applied.
    let a = Server::start("webhooks-a", &url, &env)?;
    let b = Server::start("webhooks-b", &url, &env)?;
    // Both dispatchers are woken by every commit and race for the same rows.
    for n in 0..ORDERS {
        let (here, there) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let id = create_order(http, &here.base, &format!("two-{n}")).await?;
        set_status(http, &there.base, id, "processing").await?;
    }
    let mut conn = connect(&url).await?;
    let outcome = drain(&mut conn).await?;
    let report = receiver.report(&outcome.event_ids);
    let compared = receiver.compare_with_feed(http, &a.base).await?;
    println!(
        "webhooks: two instances, receiver always 200: {}, {compared} bodies equal to the \
         feed's events",
        report.figures(&outcome)
    );
    report.check(&outcome)?;
    if report.requests != report.received_ids {
        return Err(format!(
            "{} requests for {} events: some delivery was sent twice while both instances were \
             healthy",
            report.requests, report.received_ids
        ));
    }
    Ok(())
}

/// Every event of the feed, by id.
async fn read_feed(http: &reqwest::Client, base: &str) -> Result<HashMap<i64, Value>, String> {
    let mut events = HashMap::new();
    let mut after = "0-0".to_owned();
    loop {
        let page: Value = http
            .get(format!("{base}/api/v1/events?limit=100&after={after}"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let list = page["events"]
            .as_array()
            .ok_or_else(|| format!("not a feed page: {page}"))?;
        if list.is_empty() {
            return Ok(events);
        }
        for event in list {
            let id = event["id"].as_i64().ok_or("an event without an id")?;
            events.insert(id, event.clone());
        }
        after = page["next_cursor"]
            .as_str()
            .ok_or("a feed page without a cursor")?
            .to_owned();
    }
}

fn server_env(receiver: &Receiver) -> Vec<(&'static str, String)> {
    let schedule: Vec<String> = SCHEDULE_MS.iter().map(|ms| format!("{ms}ms")).collect();
    vec![
        ("WEBHOOK_URLS", format!("{}/hook", receiver.base)),
        ("WEBHOOK_SECRET", SECRET.to_owned()),
        ("WEBHOOK_TIMEOUT", format!("{}ms", TIMEOUT.as_millis())),
        ("WEBHOOK_RETRY_SCHEDULE", schedule.join(",")),
        ("SHUTDOWN_GRACE", "200ms".to_owned()),
    ]
}

async fn create_order(http: &reqwest::Client, base: &str, key: &str) -> Result<i64, String> {
    let response = http
        .post(format!("{base}/api/v1/orders"))
        .json(&order_body(key))
        .send()
        .await
        .map_err(|e| format!("create {key}: {e}"))?;
    if response.status() != 201 {
        return Err(format!("create {key}: answered {}", response.status()));
    }
    let order: Value = response.json().await.map_err(|e| e.to_string())?;
    order["id"]
        .as_i64()
        .ok_or_else(|| format!("create {key}: no id in {order}"))
}

async fn set_status(http: &reqwest::Client, base: &str, id: i64, to: &str) -> Result<(), String> {
    let response = http
        .put(format!("{base}/api/v1/orders/{id}/status"))
        .json(&json!({ "status": to }))
        .send()
        .await
        .map_err(|e| format!("order {id} to {to}: {e}"))?;
    if response.status() != 200 {
        return Err(format!(
            "order {id} to {to}: answered {}",
            response.status()
        ));
    }
    Ok(())
}

async fn connect(url: &str) -> Result<AsyncPgConnection, String> {
    AsyncPgConnection::establish(url)
        .await
        .map_err(|e| e.to_string())
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(conn: &mut AsyncPgConnection, query: &str) -> Result<i64, String> {
    let row: Count = diesel::sql_query(query)
        .get_result(conn)
        .await
        .map_err(|e| format!("{query}: {e}"))?;
    Ok(row.n)
}

/// The database's view once no delivery is pending.
struct Outcome {
    event_ids: Vec<i64>,
    deliveries: i64,
    failed: i64,
}

/// Waits until no delivery is pending, then reads every event id and the deliveries' states.
async fn drain(conn: &mut AsyncPgConnection) -> Result<Outcome, String> {
    let started = Instant::now();
    loop {
        let pending = count(
            conn,
            "SELECT count(*) AS n FROM webhook_deliveries WHERE state = 'pending'",
        )
        .await?;
        if pending == 0 {
            break;
        }
        if started.elapsed() > DRAIN_LIMIT {
            return Err(format!(
                "{pending} deliveries still pending {DRAIN_LIMIT:?} after the traffic ended"
            ));
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let ids: Vec<Id> = diesel::sql_query("SELECT id FROM order_events ORDER BY id")
        .load(conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Outcome {
        event_ids: ids.into_iter().map(|row| row.id).collect(),
        deliveries: count(conn, "SELECT count(*) AS n FROM webhook_deliveries").await?,
        failed: count(
            conn,
            "SELECT count(*) AS n FROM webhook_deliveries WHERE state = 'failed'",
        )
        .await?,
    })
}

#[derive(Clone, Copy)]
enum Behaviour {
    /// Answers 200.
    Healthy,
    /// Holds one request in ten past the server's timeout, answers a quarter 500, the rest 200.
    Flaky,
}

/// A webhook receiver on 127.0.0.1 that verifies every request. It serves until the test
/// process ends.
struct Receiver {
    base: String,
    state: web::Data<ReceiverState>,
}

struct ReceiverState {
    key: Vec<u8>,
    behaviour: Behaviour,
    log: Mutex<Log>,
}

#[derive(Default)]
struct Log {
    requests: u64,
    invalid: u64,
    /// Per event id, each validly signed request: when it came, and whether it was answered
    /// 2xx in time (the server then knows it was delivered).
    receipts: HashMap<i64, Vec<(Instant, bool)>>,
    /// Per event id, each validly signed request's body.
    bodies: HashMap<i64, Vec<Value>>,
}

impl Receiver {
    fn start(behaviour: Behaviour) -> Result<Self, String> {
        let key = STANDARD
            .decode(SECRET.trim_start_matches("whsec_"))
            .map_err(|e| e.to_string())?;
        let state = web::Data::new(ReceiverState {
            key,
            behaviour,
            log: Mutex::default(),
        });
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .route("/hook", web::post().to(receive))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .map_err(|e| e.to_string())?;
        let port = server.addrs()[0].port();
        actix_rt::spawn(server.run());
        Ok(Self {
            base: format!("http://127.0.0.1:{port}"),
            state,
        })
    }

    /// Checks that every body received is the event as the feed shows it, whether the attempt
    /// was made from the writing instance's memory or claimed and read back; answers how many
    /// bodies were compared.
    async fn compare_with_feed(&self, http: &reqwest::Client, base: &str) -> Result<usize, String> {
        let feed = read_feed(http, base).await?;
        let log = self.state.log.lock().expect("receiver log");
        let mut compared = 0;
        for (id, bodies) in &log.bodies {
            let shown = feed
                .get(id)
                .ok_or_else(|| format!("event {id} was delivered but is not in the feed"))?;
            for body in bodies {
                if body != shown {
                    return Err(format!(
                        "event {id} was delivered as {body}, the feed shows {shown}"
                    ));
                }
                compared += 1;
            }
        }
        Ok(compared)
    }

    fn report(&self, event_ids: &[i64]) -> Report {
        let log = self.state.log.lock().expect("receiver log");
        let mut early_retries = 0;
        let mut duplicates = 0;
        for receipts in log.receipts.values() {
            let mut sorted = receipts.clone();
            sorted.sort_by_key(|(at, _)| *at);
            for (n, pair) in sorted.windows(2).enumerate() {
                let delay = Duration::from_millis(SCHEDULE_MS[n.min(SCHEDULE_MS.len() - 1)]);
                if pair[1].0.duration_since(pair[0].0) < delay {
                    early_retries += 1;
                }
            }
            if let Some(first_ack) = sorted.iter().position(|(_, acked)| *acked) {
                duplicates += sorted.len() - first_ack - 1;
            }
        }
        Report {
            requests: log.requests,
            received_ids: log.receipts.len() as u64,
            invalid: log.invalid,
            missing: event_ids
                .iter()
                .filter(|id| !log.receipts.contains_key(id))
                .count(),
            early_retries,
            duplicates,
        }
    }
}

struct Report {
    requests: u64,
    received_ids: u64,
    invalid: u64,
    missing: usize,
    early_retries: usize,
    duplicates: usize,
}

impl Report {
    fn figures(&self, outcome: &Outcome) -> String {
        format!(
            "{} events, {} deliveries, {} requests received, {} retries, {} duplicates, \
             {} invalid signatures, {} events never received, {} gaps shorter than the schedule, \
             {} failed deliveries",
            outcome.event_ids.len(),
            outcome.deliveries,
            self.requests,
            self.requests - self.received_ids,
            self.duplicates,
            self.invalid,
            self.missing,
            self.early_retries,
            outcome.failed,
        )
    }

    fn check(&self, outcome: &Outcome) -> Result<(), String> {
        if self.invalid > 0 {
            return Err(format!(
                "{} requests had an invalid signature",
                self.invalid
            ));
        }
        if self.missing > 0 {
            return Err(format!(
                "{} of {} events were never received",
                self.missing,
                outcome.event_ids.len()
            ));
        }
        if outcome.failed > 0 {
            return Err(format!("{} deliveries were given up", outcome.failed));
        }
        if self.early_retries > 0 {
            return Err(format!(
                "{} retries came sooner than the schedule allows",
                self.early_retries
            ));
        }
        if outcome.event_ids.is_empty() {
            return Err("no events were written".into());
        }
        Ok(())
    }
}

/// Verifies as the Standard Webhooks libraries do, then answers as the behaviour says.
async fn receive(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    let arrived = Instant::now();
    let verified = verify(&request, &body, &state.key);
    let fate: f64 = rand::random();
    let (hold, answer) = match state.behaviour {
        Behaviour::Flaky if fate < 0.1 => (true, 200),
        Behaviour::Flaky if fate < 0.35 => (false, 500),
        _ => (false, 200),
    };
    {
        let mut log = state.log.lock().expect("receiver log");
        log.requests += 1;
        match verified {
            Some(id) => {
                log.receipts
                    .entry(id)
                    .or_default()
                    .push((arrived, answer == 200 && !hold));
                let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                log.bodies.entry(id).or_default().push(body);
            }
            None => log.invalid += 1,
        }
    }
    if hold {
        actix_rt::time::sleep(TIMEOUT * 2).await;
    }
    HttpResponse::build(actix_web::http::StatusCode::from_u16(answer).expect("a status code"))
        .finish()
}

/// The event id of a request whose headers, signature and body agree; `None` otherwise.
fn verify(request: &HttpRequest, body: &[u8], key: &[u8]) -> Option<i64> {
    let header = |name| request.headers().get(name)?.to_str().ok();
    let (id, timestamp, signature) = (
        header("webhook-id")?,
        header("webhook-timestamp")?,
        header("webhook-signature")?,
    );
    if header("content-type")? != "application/json" {
        return None;
    }
    // Libraries refuse timestamps more than five minutes away, against replays.
    let sent: i64 = timestamp.parse().ok()?;
    if (chrono::Utc::now().timestamp() - sent).abs() > 300 {
        return None;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    // The header may list several signatures, separated by spaces.
    if !signature.split(' ').any(|s| s == expected) {
        return None;
    }
    let event: Value = serde_json::from_slice(body).ok()?;
    let event_id = event["id"].as_i64()?;
    (event_id.to_string() == id && event["data"]["order"]["id"].is_i64()).then_some(event_id)
}
