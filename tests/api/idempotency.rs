//! `Idempotency-Key`: a client that retries never creates a second order.

use std::time::Duration;

use reqwest::Response;
use serde_json::{json, Value};

use crate::helpers::{error_body, seed_order, spawn_app, TestApp};

async fn create_with_key(app: &TestApp, key: &str, body: &Value) -> Response {
    app.client
        .post(app.url("/api/v1/orders"))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("request sent")
}

fn replayed(response: &Response) -> bool {
    response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

#[actix_web::test]
async fn a_repeat_with_the_same_key_and_body_returns_the_original_order() {
    let app = spawn_app().await;

    let first = create_with_key(&app, "retry-42", &seed_order()).await;
    assert_eq!(first.status(), 201);
    assert!(!replayed(&first), "the first request is not a replay");
    let original: Value = first.json().await.unwrap();

    let repeat = create_with_key(&app, "retry-42", &seed_order()).await;

    assert_eq!(repeat.status(), 201, "the original status code");
    assert!(replayed(&repeat), "Idempotent-Replayed: true");
    assert_eq!(repeat.json::<Value>().await.unwrap(), original);
    assert_eq!(
        app.db.count("SELECT count(*) AS count FROM orders").await,
        1
    );
}

#[actix_web::test]
async fn the_same_key_with_another_body_is_a_422() {
    let app = spawn_app().await;
    assert_eq!(
        create_with_key(&app, "k1", &seed_order()).await.status(),
        201
    );
    let mut other = seed_order();
    other["items"][0]["quantity"] = json!(2);

    error_body(
        create_with_key(&app, "k1", &other).await,
        422,
        "idempotency_key_reused",
    )
    .await;

    assert_eq!(
        app.db.count("SELECT count(*) AS count FROM orders").await,
        1
    );
}

#[actix_web::test]
async fn the_same_content_in_another_json_layout_is_the_same_request() {
    let app = spawn_app().await;
    assert_eq!(
        create_with_key(&app, "k2", &seed_order()).await.status(),
        201
    );
    let reordered = r#"{"items":[{"unit_price":999.990,"quantity":1,"product_name":" Laptop"}],
        "customer_email":"john@example.com","customer_name":"John Doe"}"#;

    let repeat = app
        .client
        .post(app.url("/api/v1/orders"))
        .header("Idempotency-Key", "k2")
        .header("Content-Type", "application/json")
        .body(reordered)
        .send()
        .await
        .unwrap();

    assert_eq!(repeat.status(), 201);
    assert!(replayed(&repeat));
}

#[actix_web::test]
async fn concurrent_requests_with_one_new_key_create_exactly_one_order() {
    let app = spawn_app().await;
    let body = seed_order();
    let attempts = (0..20).map(|_| create_with_key(&app, "race", &body));

    let responses = futures_util::future::join_all(attempts).await;

    let mut ids = Vec::new();
    let mut fresh = 0;
    for response in responses {
        assert_eq!(response.status(), 201);
        fresh += usize::from(!replayed(&response));
        ids.push(
            response.json::<Value>().await.unwrap()["id"]
                .as_i64()
                .unwrap(),
        );
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every request answered with the same order");
    assert_eq!(fresh, 1, "exactly one request created it");
    assert_eq!(
        app.db.count("SELECT count(*) AS count FROM orders").await,
        1
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) AS count FROM idempotency_keys")
            .await,
        1
    );
}

#[actix_web::test]
async fn keys_and_orders_are_independent_across_keys() {
    let app = spawn_app().await;
    for key in ["a", "b", "c"] {
        assert_eq!(
            create_with_key(&app, key, &seed_order()).await.status(),
            201
        );
    }
    assert_eq!(
        app.create_order(&seed_order()).await.status(),
        201,
        "no key: no idempotency"
    );
    assert_eq!(
        app.db.count("SELECT count(*) AS count FROM orders").await,
        4
    );
}

#[actix_web::test]
async fn a_malformed_key_is_a_400() {
    let app = spawn_app().await;
    let too_long = "k".repeat(256);
    for key in ["", "has space", too_long.as_str()] {
        error_body(
            create_with_key(&app, key, &seed_order()).await,
            400,
            "invalid_idempotency_key",
        )
        .await;
    }
    assert_eq!(
        app.db.count("SELECT count(*) AS count FROM orders").await,
        0
    );
}

#[actix_web::test]
async fn keys_older_than_a_day_are_purged_and_their_orders_kept() {
    let app = spawn_app().await;
    assert_eq!(
        create_with_key(&app, "old", &seed_order()).await.status(),
        201
    );
    assert_eq!(
        create_with_key(&app, "new", &seed_order()).await.status(),
        201
    );
    let mut conn = app.db.connect().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old'"),
        &mut conn,
    )
    .await
    .unwrap();

    let purged =
        order_service::db::purge_idempotency_keys(&mut conn, Duration::from_secs(24 * 3600))
            .await
            .unwrap();

    assert_eq!(purged, 1);
    assert_eq!(
        app.db
            .count("SELECT count(*) AS count FROM idempotency_keys WHERE key = 'new'")
            .await,
        1
    );
    assert_eq!(
        app.db.count("SELECT count(*) AS count FROM orders").await,
        2
    );
}
