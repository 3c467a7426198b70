//! What operators and browsers see: request ids, the access log, `/metrics` and CORS.

use order_service::api::{ApiKeys, CorsOrigins};
use reqwest::{Method, Response};

use crate::helpers::{
    error_body, logged, sample, scrape, seed_order, spawn_app, spawn_app_alone, spawn_app_with,
    TestApp,
};

fn request_id(response: &Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .expect("visible ASCII")
        .to_owned()
}

async fn get_with_id(app: &TestApp, path: &str, id: &str) -> Response {
    app.client
        .get(app.url(path))
        .header("X-Request-Id", id)
        .send()
        .await
        .expect("request sent")
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

#[actix_web::test]
async fn a_clients_request_id_is_echoed_and_named_in_the_error_body() {
    let app = spawn_app().await;
    let id = unique("my-trace");

    let found = get_with_id(&app, "/health", &id).await;
    let missing = get_with_id(&app, "/api/v1/orders/424242", &id).await;

    assert_eq!(request_id(&found), id, "2xx answers carry it too");
    assert_eq!(request_id(&missing), id);
    let body = error_body(missing, 404, "order_not_found").await;
    assert_eq!(body["request_id"], id);
}

#[actix_web::test]
async fn a_missing_or_unusable_request_id_is_replaced_by_a_generated_one() {
    let app = spawn_app().await;
    let too_long = "x".repeat(129);
    let mut seen = Vec::new();

    for sent in [None, Some(""), Some("has space"), Some(too_long.as_str())] {
        let mut request = app.client.get(app.url("/api/v1/orders/0"));
        if let Some(sent) = sent {
            request = request.header("X-Request-Id", sent);
        }
        let response = request.send().await.unwrap();
        let id = request_id(&response);
        assert!(
            uuid::Uuid::parse_str(&id).is_ok(),
            "{sent:?} is replaced by a UUID, got {id:?}"
        );
        error_body(response, 400, "invalid_id").await;
        seen.push(id);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4, "each request gets its own id");
}

#[actix_web::test]
async fn each_request_gets_one_access_log_line_and_health_checks_are_quiet() {
    let app = spawn_app().await;
    let id = unique("access-log");
    let health_id = unique("health");

    get_with_id(&app, "/api/v1/orders/424242", &id).await;
    get_with_id(&app, "/health", &health_id).await;

    let lines = logged(&id);
    assert_eq!(lines.len(), 1, "one line per request: {lines:?}");
    let (level, line) = &lines[0];
    assert_eq!(*level, log::Level::Info);
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(
        fields[..3],
        ["GET", "/api/v1/orders/424242", "404"],
        "{line}"
    );
    assert!(
        fields[3].ends_with("ms") && fields[3].trim_end_matches("ms").parse::<f64>().is_ok(),
        "latency in {line}"
    );
    assert_eq!(fields[4], format!("request_id={id}"));
    let health = logged(&health_id);
    assert_eq!(health.len(), 1, "{health:?}");
    assert_eq!(health[0].0, log::Level::Debug, "health checks log at debug");
}

#[actix_web::test]
async fn a_500_logs_its_cause_under_the_request_id() {
    let app = spawn_app().await;
    let id = app.created(&seed_order()).await["id"].as_i64().unwrap();
    // A bug's stand-in: a table the query needs is gone.
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("ALTER TABLE order_status_history RENAME TO gone"),
        &mut app.db.connect().await,
    )
    .await
    .unwrap();
    let trace = unique("bug-report");

    let response = get_with_id(&app, &format!("/api/v1/orders/{id}/history"), &trace).await;

    error_body(response, 500, "internal_error").await;
    let lines = logged(&trace);
    assert!(
        lines
            .iter()
            .any(|(level, line)| *level == log::Level::Error
                && line.contains("order_status_history")),
        "the cause, with the id a user would quote: {lines:?}"
    );
}

/// The sum of every sample of a metric, whatever its labels.
fn total(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{metric}{{")))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[actix_web::test]
async fn metrics_count_exactly_this_tests_requests_orders_and_status_changes() {
    // Series are process-wide: alone, only the requests below move them between the scrapes.
    let app = spawn_app_alone().await;
    let before = scrape(&app).await;

    let id = app.created(&seed_order()).await["id"].as_i64().unwrap();
    assert_eq!(app.set_status(id, "processing").await.status(), 200);
    assert_eq!(app.get_order(id).await.status(), 200);
    assert_eq!(app.get_order(424242).await.status(), 404);
    assert_eq!(app.get("/no/such/path/42").await.status(), 404);
    let after = scrape(&app).await;

    for (series, by) in [
        ("ordersvc_orders_created_total", 1.0),
        (
            r#"ordersvc_order_status_transitions_total{from="pending",to="processing"}"#,
            1.0,
        ),
        (
            r#"ordersvc_http_requests_total{method="POST",route="/api/v1/orders",status="201"}"#,
            1.0,
        ),
        (
            r#"ordersvc_http_requests_total{method="PUT",route="/api/v1/orders/{id}/status",status="200"}"#,
            1.0,
        ),
        (
            r#"ordersvc_http_requests_total{method="GET",route="/api/v1/orders/{id}",status="200"}"#,
            1.0,
        ),
        (
            r#"ordersvc_http_requests_total{method="GET",route="/api/v1/orders/{id}",status="404"}"#,
            1.0,
        ),
        (
            r#"ordersvc_http_requests_total{method="GET",route="unmatched",status="404"}"#,
            1.0,
        ),
        // A request is counted once answered: the first scrape shows in the second only.
        (
            r#"ordersvc_http_requests_total{method="GET",route="/metrics",status="200"}"#,
            1.0,
        ),
        (
            r#"ordersvc_http_request_duration_seconds_count{method="GET",route="/api/v1/orders/{id}"}"#,
            2.0,
        ),
        ("ordersvc_create_batch_size_count", 1.0),
    ] {
        assert_eq!(
            sample(&after, series) - sample(&before, series),
            by,
            "{series} moved by {by} between\n{before}\nand\n{after}"
        );
    }
    assert!(
        !after.contains("/no/such/path") && !after.contains("424242"),
        "raw paths never become labels"
    );
    for series in [
        r#"ordersvc_db_pool_connections{state="in_use"}"#,
        r#"ordersvc_db_pool_connections{state="idle"}"#,
        "ordersvc_db_pool_pending_checkouts",
        "ordersvc_db_pool_wait_seconds_total",
        r#"ordersvc_db_executor_mailbox_depth{executor="0"}"#,
        r#"ordersvc_db_executor_mailbox_depth{executor="1"}"#,
        "ordersvc_db_executor_restarts_total",
    ] {
        assert!(
            after.contains(&format!("{series} ")),
            "{series} in:\n{after}"
        );
    }
    assert!(
        sample(
            &after,
            r#"ordersvc_db_pool_checkouts_total{outcome="direct"}"#
        ) > 0.0,
        "this app's pool handed out connections"
    );
}

#[actix_web::test]
async fn database_errors_are_counted_by_kind() {
    // Alone, so that another test's failures cannot stand in for this one's.
    let app = spawn_app_alone().await;
    let before = total(&scrape(&app).await, "ordersvc_db_errors_total");

    app.db.drop_now().await;
    assert_eq!(app.get_order(1).await.status(), 503);

    let after = scrape(&app).await;
    assert!(
        total(&after, "ordersvc_db_errors_total") > before,
        "the failure is counted:\n{after}"
    );
}

#[actix_web::test]
async fn metrics_stay_open_when_api_keys_are_required() {
    let app = spawn_app_with(|c| c.api_keys = ApiKeys::new(["key"])).await;

    assert_eq!(app.get("/metrics").await.status(), 200);
    error_body(app.get("/api/v1/orders").await, 401, "unauthorized").await;
}

const SHOP: &str = "https://shop.example.com";

async fn preflight(app: &TestApp, origin: &str) -> Response {
    app.client
        .request(Method::OPTIONS, app.url("/api/v1/orders"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "content-type,idempotency-key,authorization",
        )
        .send()
        .await
        .expect("request sent")
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[actix_web::test]
async fn a_listed_origin_passes_the_preflight_and_sees_the_answer() {
    let app = spawn_app_with(|c| {
        c.cors_allowed_origins = CorsOrigins::Listed(vec![SHOP.into()]);
        c.api_keys = ApiKeys::new(["key"]);
    })
    .await;

    let allowed = preflight(&app, SHOP).await;

    assert_eq!(allowed.status(), 200, "a preflight needs no API key");
    assert_eq!(header(&allowed, "access-control-allow-origin"), Some(SHOP));
    let methods = header(&allowed, "access-control-allow-methods").unwrap();
    assert!(
        methods.contains("POST") && methods.contains("PUT"),
        "{methods}"
    );
    let headers = header(&allowed, "access-control-allow-headers").unwrap();
    assert!(headers.contains("idempotency-key"), "{headers}");

    let created = app
        .client
        .post(app.url("/api/v1/orders"))
        .header("Origin", SHOP)
        .bearer_auth("key")
        .json(&seed_order())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(header(&created, "access-control-allow-origin"), Some(SHOP));
    let exposed = header(&created, "access-control-expose-headers").unwrap();
    assert!(
        exposed.contains("location") && exposed.contains("x-request-id"),
        "{exposed}"
    );

    let refused = preflight(&app, "https://evil.example.com").await;
    assert_eq!(header(&refused, "access-control-allow-origin"), None);
    error_body(refused, 400, "request_rejected").await;
}

#[actix_web::test]
async fn by_default_no_origin_is_allowed_cross_origin() {
    let app = spawn_app().await;

    let refused = preflight(&app, SHOP).await;
    assert_eq!(header(&refused, "access-control-allow-origin"), None);
    error_body(refused, 400, "request_rejected").await;

    let simple = app
        .client
        .get(app.url("/api/v1/orders"))
        .header("Origin", SHOP)
        .send()
        .await
        .unwrap();
    assert_eq!(simple.status(), 200, "served; the browser withholds it");
    assert_eq!(header(&simple, "access-control-allow-origin"), None);
}

#[actix_web::test]
async fn a_star_allows_every_origin() {
    let app = spawn_app_with(|c| c.cors_allowed_origins = CorsOrigins::Any).await;

    let allowed = preflight(&app, "https://anyone.example.org").await;

    assert_eq!(allowed.status(), 200);
    assert_eq!(header(&allowed, "access-control-allow-origin"), Some("*"));
}
