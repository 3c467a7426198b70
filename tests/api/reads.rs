//! Consistency tokens, as a client sees them. Here the read pool's URL is the test database
//! itself, a primary, which serves as a replica that is never behind; replicas with real lag
//! are `make test-cluster`'s part.

use std::time::Duration;

use order_service::actors::ReadSettings;
use order_service::config::Config;
use reqwest::Response;
use serde_json::Value;

use crate::helpers::{
    error_body, sample, scrape, seed_order, spawn_app, spawn_app_alone_with, spawn_app_with,
    TestApp,
};

const TOKEN: &str = "consistency-token";

/// Reads may go to the "replicas" of the read pool, which is the app's own database.
fn with_reads(config: &mut Config) {
    config.reads = Some(ReadSettings {
        database: config.database.clone(),
        pool: config.pool.clone(),
        max_lag: Duration::from_secs(1),
        wait: Duration::from_millis(50),
    });
}

fn token(response: &Response) -> Option<String> {
    response
        .headers()
        .get(TOKEN)
        .map(|value| value.to_str().expect("visible ASCII").to_owned())
}

/// The token's position, for the tests to compare; clients treat tokens as opaque.
fn position(token: &str) -> u64 {
    let (high, low) = token.split_once('/').expect("X/Y");
    u64::from_str_radix(high, 16).unwrap() << 32 | u64::from_str_radix(low, 16).unwrap()
}

async fn get_with(app: &TestApp, path: &str, token: &str) -> Response {
    app.client
        .get(app.url(path))
        .header(TOKEN, token)
        .send()
        .await
        .expect("request sent")
}

#[actix_web::test]
async fn without_a_read_url_answers_carry_no_token() {
    let app = spawn_app().await;

    let created = app.create_order(&seed_order()).await;
    assert_eq!(created.status(), 201);
    assert_eq!(token(&created), None, "create");
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let changed = app.set_status(id, "processing").await;
    assert_eq!(changed.status(), 200);
    assert_eq!(token(&changed), None, "status change");
    let page = app.list_orders("?limit=1").await;
    assert_eq!(token(&page), None, "list page");

    // A token is still read, and served: every read is on the primary.
    let read = get_with(&app, &format!("/api/v1/orders/{id}"), "0/1").await;
    assert_eq!(read.status(), 200);
}

#[actix_web::test]
async fn every_write_answers_a_token_and_a_read_with_it_sees_the_write() {
    let app = spawn_app_with(with_reads).await;

    let created = app.create_order(&seed_order()).await;
    assert_eq!(created.status(), 201);
    let at_create = token(&created).expect("a create answers its token");
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let changed = app.set_status(id, "processing").await;
    assert_eq!(changed.status(), 200);
    let at_change = token(&changed).expect("a status change answers its token");
    assert!(
        position(&at_change) > position(&at_create),
        "the change committed after the create: {at_change} after {at_create}"
    );

    let read = get_with(&app, &format!("/api/v1/orders/{id}"), &at_change).await;
    assert_eq!(read.status(), 200);
    assert_eq!(read.json::<Value>().await.unwrap()["status"], "processing");
    let history = get_with(&app, &format!("/api/v1/orders/{id}/history"), &at_change).await;
    assert_eq!(history.status(), 200);
    let history: Value = history.json().await.unwrap();
    assert_eq!(history["history"].as_array().unwrap().len(), 2);
    let page = get_with(&app, "/api/v1/orders?limit=5", &at_change).await;
    assert_eq!(page.status(), 200);
    let read_at = token(&page).expect("a list page answers where it was read");
    assert!(position(&read_at) >= position(&at_change));
}

#[actix_web::test]
async fn a_walk_through_the_pages_never_goes_back_in_time() {
    let app = spawn_app_with(with_reads).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.created(&seed_order()).await["id"].as_i64().unwrap());
    }

    let (mut seen, mut points, mut cursor) = (Vec::new(), Vec::new(), None::<String>);
    loop {
        let query = match &cursor {
            Some(cursor) => format!("?limit=1&cursor={cursor}"),
            None => "?limit=1".to_owned(),
        };
        let page = app.list_orders(&query).await;
        assert_eq!(page.status(), 200);
        points.push(position(&token(&page).expect("read position")));
        let page: Value = page.json().await.unwrap();
        seen.extend(
            page["orders"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_i64().unwrap()),
        );
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
        // Orders written during the walk move the database on; they are newer than the cursor.
        app.created(&seed_order()).await;
    }

    ids.reverse();
    assert_eq!(seen, ids, "each order once, newest first");
    assert!(
        points.windows(2).all(|pair| pair[1] >= pair[0]),
        "each page read at or after the one before: {points:?}"
    );
}

#[actix_web::test]
async fn a_token_no_replica_reaches_in_time_is_read_on_the_primary_and_absence_is_asked_twice() {
    // Alone: the read series move only by this test's requests.
    let app = spawn_app_alone_with(with_reads).await;
    let id = app.created(&seed_order()).await["id"].as_i64().unwrap();
    let before = scrape(&app).await;

    // A point far beyond the database's: no replica reaches it within DB_READ_WAIT.
    let far = get_with(&app, &format!("/api/v1/orders/{id}"), "FFFFFFFF/0").await;
    assert_eq!(far.status(), 200, "served by the primary after the wait");
    error_body(app.get_order(id + 1000).await, 404, "order_not_found").await;
    assert_eq!(app.get_order(id).await.status(), 200);
    let after = scrape(&app).await;

    let moved = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(
        moved(r#"ordersvc_db_read_fallbacks_total{reason="token_wait"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"ordersvc_db_read_fallbacks_total{reason="not_found"}"#),
        1.0,
        "a replica's 404 is asked again on the primary"
    );
    assert_eq!(
        moved(r#"ordersvc_db_reads_total{served_by="primary"}"#),
        2.0
    );
    assert_eq!(
        moved(r#"ordersvc_db_reads_total{served_by="replica"}"#),
        1.0
    );
    assert_eq!(
        moved("ordersvc_db_read_wait_seconds_count"),
        1.0,
        "the wait for the far token is timed"
    );
}

#[actix_web::test]
async fn a_token_that_this_api_did_not_hand_out_is_refused() {
    let app = spawn_app_with(with_reads).await;
    let id = app.created(&seed_order()).await["id"].as_i64().unwrap();

    for bad in ["", "latest", "12", "0/1/2", "0/100000000", "-1/0"] {
        for path in [
            format!("/api/v1/orders/{id}"),
            format!("/api/v1/orders/{id}/history"),
            "/api/v1/orders".to_owned(),
        ] {
            let body = error_body(
                get_with(&app, &path, bad).await,
                400,
                "invalid_consistency_token",
            )
            .await;
            assert!(
                body["error"]
                    .as_str()
                    .unwrap()
                    .contains("Consistency-Token"),
                "{path} with {bad:?}: {body}"
            );
        }
    }
}
