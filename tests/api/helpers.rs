//! The test harness: a real application on a free port, backed by its own fresh database.
//!
//! Once per test process a template database is migrated (named after a hash of the
//! migrations, so an edited migration gets a new one, and the templates of other migrations are
//! dropped); each test then gets `CREATE DATABASE … TEMPLATE` of it and drops it when its
//! `TestApp` goes out of scope.

use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex, Once};

use actix_web::{web, App, HttpServer};
use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use order_service::config::Config;
use order_service::db::{run_migrations, ConnectOptions};
use order_service::startup::Application;
use order_service::traces::{Sampling, TraceProtocol, TraceSettings};
use prost::Message;
use reqwest::{Method, Response};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

/// Maintenance database of the test cluster that `make test` starts.
fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:25432/postgres".into())
}

fn connect_options(url: &str) -> ConnectOptions {
    ConnectOptions::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
}

fn url_for(database: &str) -> String {
    let admin = admin_url();
    let (server, _) = admin
        .rsplit_once('/')
        .expect("TEST_DATABASE_URL must end with /<database>");
    format!("{server}/{database}")
}

pub async fn admin_connection() -> AsyncPgConnection {
    let url = admin_url();
    AsyncPgConnection::establish(&url).await.unwrap_or_else(|e| {
        panic!("cannot reach the test PostgreSQL at {url} ({e}); run the tests with `make test`, which starts it")
    })
}

async fn execute(conn: &mut AsyncPgConnection, sql: &str) {
    diesel::sql_query(sql)
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// The start of a SHA-256 over every migration's folder name and `up.sql`, in hex. Stable: the
/// same migrations give the same name with every build and compiler, which std's
/// `DefaultHasher` does not promise.
fn migrations_hash() -> String {
    let mut hasher = Sha256::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .expect("migrations folder")
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .as_encoded_bytes()
            .to_vec();
        let up = std::fs::read(dir.join("up.sql")).unwrap_or_default();
        // Each part with its length, so that no two lists of parts hash the same text.
        for part in [name, up] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
    }
    hasher.finalize()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();
/// Every template's name starts so, and goes on with its migrations' hash.
const TEMPLATE_PREFIX: &str = "ordersvc_template_";

/// Migrates the template database once; an advisory lock keeps concurrent test processes apart.
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("{TEMPLATE_PREFIX}{}", migrations_hash());
            let mut admin = admin_connection().await;
            execute(&mut admin, "SELECT pg_advisory_lock(727274)").await;
            sweep_leftovers(&mut admin).await;
            sweep_other_templates(&mut admin, &name).await;
            if !database_exists(&mut admin, &name).await {
                let building = format!("{name}_building");
                execute(&mut admin, &format!("DROP DATABASE IF EXISTS {building}")).await;
                execute(&mut admin, &format!("CREATE DATABASE {building}")).await;
                run_migrations(&connect_options(&url_for(&building)))
                    .await
                    .expect("migrate the template database");
                // Renaming only when complete means a crash never leaves a half-migrated template.
                execute(
                    &mut admin,
                    &format!("ALTER DATABASE {building} RENAME TO {name}"),
                )
                .await;
            }
            execute(&mut admin, "SELECT pg_advisory_unlock(727274)").await;
            name
        })
        .await
}

/// Drops test databases left behind by test processes that no longer run (killed mid-test).
async fn sweep_leftovers(admin: &mut AsyncPgConnection) {
    let names: Vec<Name> = diesel::sql_query(
        "SELECT datname AS name FROM pg_database WHERE datname LIKE 'ordersvc\\_test\\_%'",
    )
    .load(admin)
    .await
    .expect("list test databases");
    for Name { name } in names {
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            execute(
                admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await;
        }
    }
}

async fn database_exists(admin: &mut AsyncPgConnection, name: &str) -> bool {
    let found: Vec<Name> = diesel::sql_query(format!(
        "SELECT datname AS name FROM pg_database WHERE datname = '{name}'"
    ))
    .load(admin)
    .await
    .expect("list databases");
    !found.is_empty()
}

/// Drops the templates of other migrations (an earlier checkout's, one left half-built): each is
/// a whole database, and nothing else removes them. Call it holding the templates' advisory
/// lock.
async fn sweep_other_templates(admin: &mut AsyncPgConnection, current: &str) {
    let names: Vec<Name> = diesel::sql_query(format!(
        "SELECT datname AS name FROM pg_database WHERE datname LIKE '{}%'",
        TEMPLATE_PREFIX.replace('_', "\\_")
    ))
    .load(admin)
    .await
    .expect("list template databases");
    for Name { name } in names.into_iter().filter(|name| name.name != current) {
        // Without FORCE: a template that another checkout's tests are copying right now stays,
        // for the next sweep.
        let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name}"))
            .execute(admin)
            .await;
    }
}

/// A database of our own for one test, dropped on `Drop`.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    async fn create() -> Self {
        let template = template().await;
        let name = format!(
            "ordersvc_test_{}_{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let mut admin = admin_connection().await;
        execute(
            &mut admin,
            &format!("CREATE DATABASE {name} TEMPLATE {template}"),
        )
        .await;
        Self {
            url: url_for(&name),
            name,
        }
    }

    pub async fn connect(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// Runs a `SELECT count(*) AS count …` query.
    pub async fn count(&self, sql: &str) -> i64 {
        let rows: Vec<Count> = diesel::sql_query(sql)
            .load(&mut self.connect().await)
            .await
            .expect(sql);
        rows[0].count
    }

    /// Drops the database while the app may still hold connections to it.
    pub async fn drop_now(&self) {
        execute(
            &mut admin_connection().await,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await; a short-lived runtime on a thread of its own does the work.
        let _ = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                if let Ok(mut admin) = AsyncPgConnection::establish(&admin_url()).await {
                    let _ =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut admin)
                            .await;
                }
            })
        })
        .join();
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: TestDb,
    /// Released when the app goes, see `METRICS`.
    _metrics: OwnedSemaphorePermit,
}

/// The service's metrics are process-wide, and every app of this test binary moves them. Each
/// app holds one permit for its lifetime; an app started by `spawn_app_alone` holds all of them,
/// so that between two scrapes only its own test's requests move a series. Permits are handed
/// out in the order asked for: once an app waits to be alone, apps started later wait behind it,
/// so a test must not start a second app while it holds one.
static METRICS: LazyLock<Arc<Semaphore>> =
    LazyLock::new(|| Arc::new(Semaphore::new(ALL_PERMITS as usize)));
const ALL_PERMITS: u32 = u32::MAX;

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the application with test settings, adjusted by `tweak`.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    start(tweak, 1).await
}

/// Starts the application while no other test app runs, for tests that check by how much their
/// own requests move the metrics.
pub async fn spawn_app_alone() -> TestApp {
    spawn_app_alone_with(|_| {}).await
}

/// `spawn_app_alone`, with settings adjusted by `tweak`.
pub async fn spawn_app_alone_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    start(tweak, ALL_PERMITS).await
}

/// The app's `/metrics`, in Prometheus' text format.
pub async fn scrape(app: &TestApp) -> String {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "Prometheus text format"
    );
    response.text().await.unwrap()
}

/// One sample's value in a `/metrics` text; 0 when the series is absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn start(tweak: impl FnOnce(&mut Config), metrics_permits: u32) -> TestApp {
    let metrics = Arc::clone(&METRICS)
        .acquire_many_owned(metrics_permits)
        .await
        .expect("the semaphore is never closed");
    capture_logs();
    let db = TestDb::create().await;
    let mut config = test_config(&db.url);
    tweak(&mut config);
    TestApp {
        address: serve(config).await,
        client: reqwest::Client::new(),
        db,
        _metrics: metrics,
    }
}

fn test_config(database_url: &str) -> Config {
    let mut config = Config::from_lookup(|_| None).expect("default configuration");
    config.host = [127, 0, 0, 1].into();
    config.port = 0;
    config.database = connect_options(database_url);
    config.pool.max_size = 10;
    config.pool.min_idle = 0;
    config.executors = 2;
    config
}

/// Starts the application; its base URL.
async fn serve(config: Config) -> String {
    let app = Application::build(config)
        .await
        .expect("application starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    actix_rt::spawn(app.run_until_stopped());
    address
}

/// What the service logged, as (level, message), for tests of the log itself. Every test app
/// logs here, so a test picks its own lines out by a value only it used (a request id).
static LOGS: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct CaptureLogs;

impl log::Log for CaptureLogs {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.target().starts_with("order_service")
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = (record.level(), record.args().to_string());
            LOGS.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    }

    fn flush(&self) {}
}

fn capture_logs() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        static LOGGER: CaptureLogs = CaptureLogs;
        log::set_logger(&LOGGER).expect("no other logger in the test binary");
        log::set_max_level(log::LevelFilter::Debug);
    });
}

/// The captured log lines that contain `text`.
pub fn logged(text: &str) -> Vec<(log::Level, String)> {
    LOGS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(_, line)| line.contains(text))
        .cloned()
        .collect()
}

/// A span as the test collector received it: ids in hex, attribute values as text.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    pub kind: SpanKind,
    pub attributes: Vec<(String, String)>,
    /// (trace id, span id) of each linked span.
    pub links: Vec<(String, String)>,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn links_to(&self, other: &ReceivedSpan) -> bool {
        self.links
            .iter()
            .any(|(trace, span)| *trace == other.trace_id && *span == other.span_id)
    }
}

/// An OTLP/HTTP endpoint in the test process, as a collector would be: it decodes the
/// protobuf export requests POSTed to `/v1/traces` and keeps their spans.
pub struct Collector {
    pub url: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

impl Collector {
    pub async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = web::Data::from(Arc::clone(&spans));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(kept.clone())
                .route("/v1/traces", web::post().to(receive))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .expect("the collector binds");
        let url = format!("http://{}/v1/traces", server.addrs()[0]);
        actix_rt::spawn(server.run());
        Self { url, spans }
    }

    /// Settings that send every span here, within 50 ms of its end.
    pub fn settings(&self) -> TraceSettings {
        traces_to(&self.url)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until the spans received satisfy `done`; fails, showing them, if they do not
    /// within 30 s.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[ReceivedSpan]) -> bool) {
        for _ in 0..1500 {
            if done(&self.spans()) {
                return;
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!(
            "the collector never received {what}; it has {:#?}",
            self.spans()
        );
    }
}

/// Settings that export every span to `url`, within 50 ms of its end.
pub fn traces_to(url: &str) -> TraceSettings {
    TraceSettings {
        endpoint: url.to_owned(),
        protocol: TraceProtocol::Protobuf,
        sampling: Sampling::ParentOr(Box::new(Sampling::Always)),
        service_name: "order-service-test".into(),
        resource_attributes: Vec::new(),
        export_delay: std::time::Duration::from_millis(50),
    }
}

async fn receive(
    spans: web::Data<Mutex<Vec<ReceivedSpan>>>,
    body: web::Bytes,
) -> actix_web::HttpResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return actix_web::HttpResponse::BadRequest().finish();
    };
    let received = request
        .resource_spans
        .into_iter()
        .flat_map(|resource| resource.scope_spans)
        .flat_map(|scope| scope.spans)
        .map(|span| ReceivedSpan {
            trace_id: hex(&span.trace_id),
            span_id: hex(&span.span_id),
            parent_span_id: hex(&span.parent_span_id),
            kind: span.kind(),
            name: span.name,
            attributes: span.attributes.into_iter().map(attribute).collect(),
            links: span
                .links
                .into_iter()
                .map(|link| (hex(&link.trace_id), hex(&link.span_id)))
                .collect(),
        });
    spans
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(received);
    // An empty ExportTraceServiceResponse: everything accepted.
    actix_web::HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .finish()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn attribute(kv: KeyValue) -> (String, String) {
    let value = match kv.value.and_then(|v| v.value) {
        Some(any_value::Value::StringValue(s)) => s,
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    (kv.key, value)
}

/// The seed README's create example.
pub fn seed_order() -> Value {
    json!({
        "customer_name": "John Doe",
        "customer_email": "john@example.com",
        "items": [{"product_name": "Laptop", "quantity": 1, "unit_price": 999.99}]
    })
}

impl TestApp {
    /// Another instance of the service on this app's database, as a second replica behind a
    /// load balancer; its base URL. It serves until the test ends.
    pub async fn another_instance(&self) -> String {
        serve(test_config(&self.db.url)).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn request(&self, method: Method, path: &str) -> Response {
        self.client
            .request(method, self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).await
    }

    pub async fn create_order(&self, body: &Value) -> Response {
        self.client
            .post(self.url("/api/v1/orders"))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Creates an order that must succeed and returns its JSON.
    pub async fn created(&self, body: &Value) -> Value {
        let response = self.create_order(body).await;
        assert_eq!(response.status(), 201, "creating {body}");
        response.json().await.expect("order JSON")
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        self.client
            .post(self.url(path))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_order(&self, id: impl std::fmt::Display) -> Response {
        self.get(&format!("/api/v1/orders/{id}")).await
    }

    pub async fn list_orders(&self, query: &str) -> Response {
        self.get(&format!("/api/v1/orders{query}")).await
    }

    /// Lists with `filters` (`status=pending&…`, or empty) `limit` orders at a time, following
    /// `next_cursor` to the last page; returns every order seen, in the order seen.
    pub async fn every_page(&self, filters: &str, limit: usize) -> Vec<Value> {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let mut query = format!("?limit={limit}&{filters}");
            if let Some(cursor) = &cursor {
                query.push_str(&format!("&cursor={cursor}"));
            }
            let response = self.list_orders(&query).await;
            assert_eq!(response.status(), 200, "{query}");
            let page: Value = response.json().await.expect("page JSON");
            let orders = page["orders"].as_array().expect("orders");
            assert!(orders.len() <= limit, "{query}: at most `limit` orders");
            seen.extend(orders.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return seen,
            }
        }
        panic!("{filters}: pagination did not end");
    }

    pub async fn set_status(&self, id: impl std::fmt::Display, status: &str) -> Response {
        self.client
            .put(self.url(&format!("/api/v1/orders/{id}/status")))
            .json(&json!({ "status": status }))
            .send()
            .await
            .expect("request sent")
    }
}

/// Checks that listed orders come newest first, by `(created_at, id)`.
pub fn assert_newest_first(orders: &[Value], what: &str) {
    let keys: Vec<(&str, i64)> = orders
        .iter()
        .map(|o| (o["created_at"].as_str().unwrap(), o["id"].as_i64().unwrap()))
        .collect();
    let mut newest_first = keys.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(
        keys, newest_first,
        "{what}: newest first by (created_at, id)"
    );
}

/// The fields a `validation_failed` body names in its details, in order.
pub fn detail_fields(error: &Value) -> Vec<&str> {
    error["details"]
        .as_array()
        .expect("validation details")
        .iter()
        .map(|d| d["field"].as_str().expect("a field name"))
        .collect()
}

/// Reads a non-2xx answer and checks it has the common error shape, including the request id
/// it was answered under (the response's `X-Request-Id`); returns the body.
pub async fn error_body(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status, "expected HTTP {status} ({code})");
    let request_id = response
        .headers()
        .get("x-request-id")
        .expect("every answer has an X-Request-Id")
        .to_str()
        .expect("a visible ASCII request id")
        .to_owned();
    let body: Value = response.json().await.expect("error bodies are JSON");
    assert_eq!(body["code"], code, "error code in {body}");
    assert!(
        body["error"].as_str().is_some_and(|m| !m.is_empty()),
        "human message in {body}"
    );
    assert_eq!(
        body["request_id"], request_id,
        "the body names the request id of the answer: {body}"
    );
    body
}

#[actix_web::test]
async fn the_templates_of_other_migrations_are_swept_and_this_one_is_kept() {
    let current = template().await;
    let other = format!("{TEMPLATE_PREFIX}0123456789abcdef");
    assert_ne!(current, other);
    let mut admin = admin_connection().await;
    execute(&mut admin, "SELECT pg_advisory_lock(727274)").await;
    execute(&mut admin, &format!("DROP DATABASE IF EXISTS {other}")).await;
    execute(&mut admin, &format!("CREATE DATABASE {other}")).await;

    sweep_other_templates(&mut admin, current).await;

    let (other_left, current_left) = (
        database_exists(&mut admin, &other).await,
        database_exists(&mut admin, current).await,
    );
    execute(&mut admin, "SELECT pg_advisory_unlock(727274)").await;
    assert!(!other_left, "{other} is dropped");
    assert!(current_left, "{current} is kept");
}
