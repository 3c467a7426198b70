use std::collections::HashSet;

use serde_json::{json, Value};

use crate::helpers::{assert_newest_first, error_body, spawn_app, TestApp};

fn order_body(n: usize) -> Value {
    json!({
        "customer_name": format!("Customer {n}"),
        "customer_email": format!("c{n}@example.com"),
        "items": [
            {"product_name": "A", "quantity": 1, "unit_price": 1.00},
            {"product_name": "B", "quantity": 2, "unit_price": 2.50}
        ]
    })
}

async fn create_concurrently(app: &TestApp, count: usize) -> Vec<i64> {
    let requests = (0..count)
        .map(|n| async move { app.created(&order_body(n)).await["id"].as_i64().unwrap() });
    futures_util::future::join_all(requests).await
}

/// Follows `next_cursor` from the first page to the last; returns the ids in the order seen.
async fn page_through(app: &TestApp, limit: usize) -> Vec<i64> {
    let orders = app.every_page("", limit).await;
    for order in &orders {
        assert_eq!(
            order["items"].as_array().unwrap().len(),
            2,
            "each listed order carries its items"
        );
    }
    orders.iter().map(|o| o["id"].as_i64().unwrap()).collect()
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

fn assert_exactly_once(seen: &[i64], created: &[i64], limit: usize) {
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "limit {limit}: an order appeared twice"
    );
    assert_eq!(
        unique,
        created.iter().copied().collect(),
        "limit {limit}: every order exactly once"
    );
}

#[actix_web::test]
async fn an_empty_list_has_no_next_cursor() {
    let app = spawn_app().await;

    let page: Value = app.list_orders("").await.json().await.unwrap();

    assert_eq!(page, json!({"orders": [], "next_cursor": null}));
}

#[actix_web::test]
async fn paging_returns_every_concurrently_created_order_exactly_once_newest_first() {
    let app = spawn_app().await;
    let created = create_concurrently(&app, 60).await;

    for limit in [1, 7, 10, 60, 100] {
        let seen = page_through(&app, limit).await;
        assert_exactly_once(&seen, &created, limit);
    }
    let page: Value = app.list_orders("?limit=100").await.json().await.unwrap();
    assert_newest_first(page["orders"].as_array().unwrap(), "one page of 100");
}

#[actix_web::test]
async fn orders_created_in_the_same_instant_are_never_skipped() {
    let app = spawn_app().await;
    let created = create_concurrently(&app, 25).await;
    // The seed's second-precision cursor loses orders that share a second; ours must not,
    // even when they share the very same timestamp.
    let mut conn = app.db.connect().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("UPDATE orders SET created_at = '2025-06-14T17:47:05Z'"),
        &mut conn,
    )
    .await
    .unwrap();

    for limit in [1, 3, 10] {
        let seen = page_through(&app, limit).await;
        assert_exactly_once(&seen, &created, limit);
    }
}

#[actix_web::test]
async fn the_last_page_has_no_next_cursor_even_when_full() {
    let app = spawn_app().await;
    create_concurrently(&app, 10).await;

    let first: Value = app.list_orders("?limit=5").await.json().await.unwrap();
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a second page exists")
        .to_owned();
    let second: Value = app
        .list_orders(&format!("?limit=5&cursor={}", urlencode(&cursor)))
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(second["orders"].as_array().unwrap().len(), 5);
    assert_eq!(second["next_cursor"], Value::Null);
    let all: Value = app.list_orders("").await.json().await.unwrap();
    assert_eq!(
        all["orders"].as_array().unwrap().len(),
        10,
        "limit defaults to 10"
    );
    assert_eq!(all["next_cursor"], Value::Null);
}

#[actix_web::test]
async fn the_seed_cursor_form_is_accepted() {
    let app = spawn_app().await;
    let ids = create_concurrently(&app, 3).await;
    let mut conn = app.db.connect().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("UPDATE orders SET created_at = '2025-06-14T17:47:04Z'"),
        &mut conn,
    )
    .await
    .unwrap();

    let page: Value = app
        .list_orders("?limit=10&cursor=2025-06-14T17:47:05Z_1")
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(
        page["orders"].as_array().unwrap().len(),
        ids.len(),
        "all orders are older than the cursor"
    );
}

#[actix_web::test]
async fn bad_limits_and_cursors_are_a_400() {
    let app = spawn_app().await;
    for query in ["?limit=0", "?limit=101", "?limit=-1", "?limit=ten"] {
        error_body(app.list_orders(query).await, 400, "invalid_limit").await;
    }
    for query in [
        "?cursor=garbage",
        "?cursor=2025-06-14T17:47:05Z",
        "?cursor=2025-13-01T00:00:00Z_1",
        "?cursor=2025-06-14T17:47:05Z_x",
    ] {
        error_body(app.list_orders(query).await, 400, "invalid_cursor").await;
    }
}
