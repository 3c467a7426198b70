//! OpenTelemetry traces as a collector receives them: a client's trace continues through the
//! request and the batch transaction that served it into the webhooks it causes; an
//! unreachable collector costs spans, never requests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel_async::{AsyncConnection, RunQueryDsl};
use order_service::actors::WebhookSettings;
use order_service::domain::{RetrySchedule, WebhookSecret};
use order_service::traces::{Sampling, TraceSettings};
use reqwest::Response;
use serde_json::Value;

use crate::helpers::{
    logged, scrape, seed_order, spawn_app_with, traces_to, Collector, ReceivedSpan, SpanKind,
    TestApp,
};

const CREATE: &str = "POST /api/v1/orders";
const BATCH: &str = "order batch";

/// A `traceparent` of a sampled trace, as a client that traces sends it.
fn traceparent(trace_id: &str, parent: &str) -> String {
    format!("00-{trace_id}-{parent}-01")
}

async fn create_traced(app: &TestApp, trace_id: &str, parent: &str) -> Response {
    app.client
        .post(app.url("/api/v1/orders"))
        .header("traceparent", traceparent(trace_id, parent))
        .json(&seed_order())
        .send()
        .await
        .expect("request sent")
}

/// The span of `trace_id` named `name`.
fn named<'a>(spans: &'a [ReceivedSpan], trace_id: &str, name: &str) -> Option<&'a ReceivedSpan> {
    spans
        .iter()
        .find(|span| span.trace_id == trace_id && span.name == name)
}

/// The batch span that links to `request`, if it arrived.
fn batch_of<'a>(spans: &'a [ReceivedSpan], request: &ReceivedSpan) -> Option<&'a ReceivedSpan> {
    spans
        .iter()
        .find(|span| span.name == BATCH && span.links_to(request))
}

#[actix_web::test]
async fn a_create_continues_the_clients_trace_and_its_batch_is_linked_both_ways() {
    let collector = Collector::start().await;
    let app = spawn_app_with(|c| c.traces = Some(collector.settings())).await;
    let (trace_id, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");

    let response = create_traced(&app, trace_id, parent).await;

    assert_eq!(response.status(), 201);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    collector
        .wait_for("the create's span and its batch's", |spans| {
            named(spans, trace_id, CREATE).is_some_and(|create| batch_of(spans, create).is_some())
        })
        .await;
    let spans = collector.spans();
    let create = named(&spans, trace_id, CREATE).unwrap();
    assert_eq!(create.kind, SpanKind::Server);
    assert_eq!(
        create.parent_span_id, parent,
        "the client's span is the parent"
    );
    assert_eq!(create.attribute("http.request.method"), Some("POST"));
    assert_eq!(create.attribute("http.route"), Some("/api/v1/orders"));
    assert_eq!(create.attribute("http.response.status_code"), Some("201"));
    let batch = batch_of(&spans, create).unwrap();
    assert_eq!(batch.attribute("db.system.name"), Some("postgresql"));
    assert_eq!(batch.attribute("db.operation.batch.size"), Some("1"));
    assert!(
        create.links_to(batch),
        "the request links back to its batch: {create:#?}"
    );
    let waited = named(&spans, trace_id, "executor wait").expect("the mailbox wait is a span");
    assert_eq!(waited.parent_span_id, create.span_id);
    let statements: Vec<&str> = spans
        .iter()
        .filter(|span| span.parent_span_id == batch.span_id)
        .map(|span| span.name.as_str())
        .collect();
    assert_eq!(
        statements,
        ["BEGIN", "INSERT orders", "COMMIT"],
        "the batch's statements, in order"
    );
    let insert = spans
        .iter()
        .find(|span| span.name == "INSERT orders")
        .unwrap();
    assert_eq!(insert.kind, SpanKind::Client);
    assert_eq!(insert.attribute("db.system.name"), Some("postgresql"));
    assert_eq!(insert.attribute("db.operation.name"), Some("INSERT"));
    assert_eq!(insert.attribute("db.collection.name"), Some("orders"));

    let order = seed_order();
    let private = [&order["customer_name"], &order["customer_email"]].map(|v| v.as_str().unwrap());
    for span in &spans {
        for (key, value) in &span.attributes {
            assert!(
                !private.iter().any(|p| value.contains(p)),
                "{}'s {key} holds customer data: {value}",
                span.name
            );
        }
    }
    let lines = logged(&format!("request_id={request_id}"));
    assert!(
        lines
            .iter()
            .any(|(_, line)| line.contains(&format!("trace_id={trace_id}"))),
        "the access line names the trace: {lines:?}"
    );
}

#[actix_web::test]
async fn creates_that_share_a_batch_transaction_are_linked_from_the_same_batch_span() {
    let collector = Collector::start().await;
    let app = spawn_app_with(|c| {
        c.traces = Some(collector.settings());
        c.executors = 1;
    })
    .await;
    // While a lock holds the first create's batch, the next two queue for the one after it.
    let mut lock = app.db.connect().await;
    lock.begin_test_transaction()
        .await
        .expect("a transaction to hold the lock");
    diesel::sql_query("LOCK TABLE orders IN SHARE MODE")
        .execute(&mut lock)
        .await
        .expect("lock orders");
    let first = actix_rt::spawn(create_untraced(
        app.client.clone(),
        app.url("/api/v1/orders"),
    ));
    wait_for_a_blocked_insert(&app).await;
    let traces = [
        "0af7651916cd43dd8448eb211c80319c",
        "1af7651916cd43dd8448eb211c80319d",
    ];
    let parent = "b7ad6b7169203331";
    let queued: Vec<_> = traces
        .iter()
        .map(|trace| {
            let (client, url) = (app.client.clone(), app.url("/api/v1/orders"));
            let trace = traceparent(trace, parent);
            actix_rt::spawn(async move {
                let response = client
                    .post(url)
                    .header("traceparent", trace)
                    .json(&seed_order())
                    .send()
                    .await
                    .expect("request sent");
                response.status()
            })
        })
        .collect();
    // Each has reached the executor once its wait in the mailbox has ended.
    collector
        .wait_for("the queued creates' mailbox waits", |spans| {
            traces
                .iter()
                .all(|trace| named(spans, trace, "executor wait").is_some())
        })
        .await;
    drop(lock);

    assert_eq!(first.await.unwrap(), 201);
    for create in queued {
        assert_eq!(create.await.unwrap(), 201);
    }
    collector
        .wait_for("both creates' spans and a batch span", |spans| {
            traces.iter().all(|trace| {
                named(spans, trace, CREATE).is_some_and(|create| batch_of(spans, create).is_some())
            })
        })
        .await;
    let spans = collector.spans();
    let [one, two] = traces.map(|trace| named(&spans, trace, CREATE).unwrap());
    let batch = batch_of(&spans, one).unwrap();
    assert!(
        batch.links_to(two),
        "one batch span links to both requests: {batch:#?}"
    );
    assert_eq!(batch.attribute("db.operation.batch.size"), Some("2"));
}

async fn create_untraced(client: reqwest::Client, url: String) -> reqwest::StatusCode {
    let response = client.post(url).json(&seed_order()).send().await;
    response.expect("request sent").status()
}

/// Waits until an INSERT of the app's waits for a lock.
async fn wait_for_a_blocked_insert(app: &TestApp) {
    let blocked = format!(
        "SELECT count(*) AS count FROM pg_stat_activity \
         WHERE datname = '{}' AND wait_event_type = 'Lock'",
        app.db.name
    );
    for _ in 0..1500 {
        if app.db.count(&blocked).await > 0 {
            return;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the first create never waited for the lock");
}

/// The value of the dropped-spans counter in a `/metrics` text.
fn dropped(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("ordersvc_trace_spans_dropped_total "))
        .and_then(|value| value.trim().parse().ok())
        .expect("the dropped-spans counter is exposed")
}

#[actix_web::test]
async fn with_the_collector_gone_creates_succeed_and_the_dropped_spans_are_counted() {
    // A port nothing listens on any more.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/traces", gone.local_addr().unwrap());
    drop(gone);
    let app = spawn_app_with(|c| c.traces = Some(traces_to(&url))).await;
    let before = dropped(&scrape(&app).await);

    for _ in 0..3 {
        let order: Value = app.created(&seed_order()).await;
        assert!(order["id"].is_i64());
    }

    for _ in 0..1500 {
        if dropped(&scrape(&app).await) > before {
            return;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the spans that could not be exported were never counted as dropped");
}

#[actix_web::test]
async fn with_traces_off_the_access_line_names_no_trace() {
    let app = spawn_app_with(|_| {}).await;

    let response =
        create_traced(&app, "5bf92f3577b34da6a3ce929d0e0e4736", "10f067aa0ba902b7").await;

    assert_eq!(response.status(), 201);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let lines = logged(&format!("request_id={request_id}"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(!lines[0].1.contains("trace_id"), "{lines:?}");
}

/// What a webhook receiver got: per request, its `webhook-id` and `traceparent`.
type Hooks = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A receiver that refuses the first attempt of every event and takes the second, so that
/// each event is sent once from the handoff and once from a claim.
fn refusing_once(hooks: Hooks) -> String {
    let receiver = actix_web::HttpServer::new(move || {
        let hooks = hooks.clone();
        actix_web::App::new().default_service(actix_web::web::to(
            move |request: actix_web::HttpRequest| {
                let hooks = hooks.clone();
                async move {
                    let header = |name| {
                        request
                            .headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let id = header("webhook-id").unwrap_or_default();
                    let mut hooks = hooks.lock().unwrap();
                    let first = !hooks.iter().any(|(seen, _)| *seen == id);
                    hooks.push((id, header("traceparent")));
                    if first {
                        actix_web::HttpResponse::ServiceUnavailable().finish()
                    } else {
                        actix_web::HttpResponse::NoContent().finish()
                    }
                }
            },
        ))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let url = format!("http://{}/hooks", receiver.addrs()[0]);
    actix_web::rt::spawn(receiver.run());
    url
}

#[actix_web::test]
async fn the_webhooks_of_a_traced_create_and_status_change_continue_their_requests_traces() {
    let collector = Collector::start().await;
    let hooks = Hooks::default();
    let url = refusing_once(hooks.clone());
    let app = spawn_app_with(|c| {
        c.traces = Some(collector.settings());
        c.webhooks = Some(WebhookSettings {
            urls: vec![url],
            secret: WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
            timeout: Duration::from_secs(10),
            retries: RetrySchedule::parse("50ms").unwrap(),
        });
    })
    .await;
    let (created, changed) = (
        "6bf92f3577b34da6a3ce929d0e0e4736",
        "7bf92f3577b34da6a3ce929d0e0e4736",
    );
    let parent = "20f067aa0ba902b7";

    let order: Value = create_traced(&app, created, parent)
        .await
        .json()
        .await
        .unwrap();
    let moved = app
        .client
        .put(app.url(&format!("/api/v1/orders/{}/status", order["id"])))
        .header("traceparent", traceparent(changed, parent))
        .json(&serde_json::json!({"status": "processing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200);

    // Two events, each sent twice: from the handoff, then, refused, from a claim.
    for _ in 0..1500 {
        if hooks.lock().unwrap().len() >= 4 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let received = hooks.lock().unwrap().clone();
    assert_eq!(received.len(), 4, "{received:?}");
    collector
        .wait_for("the four attempts' spans", |spans| {
            spans.iter().filter(|span| span.name == "POST").count() == 4
        })
        .await;
    let spans = collector.spans();
    for (trace, request) in [
        (created, CREATE),
        (changed, "PUT /api/v1/orders/{id}/status"),
    ] {
        let request = named(&spans, trace, request).expect("the request's span");
        let attempts: Vec<&ReceivedSpan> = spans
            .iter()
            .filter(|span| span.trace_id == trace && span.name == "POST")
            .collect();
        assert_eq!(attempts.len(), 2, "both attempts are spans of {trace}");
        for attempt in attempts {
            assert_eq!(attempt.kind, SpanKind::Client);
            assert_eq!(
                attempt.parent_span_id, request.span_id,
                "an attempt continues the request that made the change"
            );
            let sent = traceparent(trace, &attempt.span_id);
            assert!(
                received
                    .iter()
                    .any(|(_, header)| header.as_deref() == Some(&sent)),
                "the receiver got traceparent {sent}: {received:?}"
            );
        }
    }
    let statuses: Vec<Option<&str>> = spans
        .iter()
        .filter(|span| span.name == "POST")
        .map(|span| span.attribute("http.response.status_code"))
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == Some("503")).count(),
        2,
        "{statuses:?}"
    );
}

#[actix_web::test]
async fn only_sampled_requests_make_spans_and_keep_their_trace_with_their_event() {
    let collector = Collector::start().await;
    let app = spawn_app_with(|c| {
        c.traces = Some(TraceSettings {
            sampling: Sampling::ParentOr(Box::new(Sampling::Never)),
            ..collector.settings()
        });
    })
    .await;
    let (unsampled, sampled) = (
        "8bf92f3577b34da6a3ce929d0e0e4736",
        "9bf92f3577b34da6a3ce929d0e0e4736",
    );
    let parent = "30f067aa0ba902b7";

    // No traceparent: a root, which this sampler never samples; then one the caller did not
    // sample; then one it did.
    assert_eq!(app.create_order(&seed_order()).await.status(), 201);
    let declined = app
        .client
        .post(app.url("/api/v1/orders"))
        .header("traceparent", format!("00-{unsampled}-{parent}-00"))
        .json(&seed_order())
        .send()
        .await
        .unwrap();
    assert_eq!(declined.status(), 201);
    let request_id = declined.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(create_traced(&app, sampled, parent).await.status(), 201);

    collector
        .wait_for("the sampled create's batch", |spans| {
            named(spans, sampled, CREATE).is_some_and(|create| batch_of(spans, create).is_some())
        })
        .await;
    let traces: std::collections::BTreeSet<String> = collector
        .spans()
        .into_iter()
        .map(|span| span.trace_id)
        .collect();
    assert_eq!(
        traces.into_iter().collect::<Vec<_>>(),
        [sampled],
        "only the sampled request's trace has spans"
    );
    let lines = logged(&format!("request_id={request_id}"));
    assert!(
        lines[0].1.contains(&format!("trace_id={unsampled}")),
        "an unsampled request's access line still names its trace: {lines:?}"
    );
    let kept = app
        .db
        .count("SELECT count(*) AS count FROM order_events WHERE traceparent IS NOT NULL")
        .await;
    assert_eq!(kept, 1, "only the sampled create's event keeps its trace");
}
