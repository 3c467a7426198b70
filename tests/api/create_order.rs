use chrono::DateTime;
use serde_json::{json, Value};

use crate::helpers::{detail_fields, error_body, seed_order, spawn_app, spawn_app_with, TestApp};

#[actix_web::test]
async fn the_seed_example_creates_a_pending_order() {
    let app = spawn_app().await;

    let response = app.create_order(&seed_order()).await;

    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let order: Value = response.json().await.unwrap();
    let id = order["id"].as_i64().expect("numeric id");
    assert_eq!(location, format!("/api/v1/orders/{id}"));
    assert_eq!(order["customer_name"], "John Doe");
    assert_eq!(order["customer_email"], "john@example.com");
    assert_eq!(order["status"], "pending");
    assert_eq!(order["total_amount"], json!(999.99));
    let item = &order["items"][0];
    assert_eq!(item["order_id"], id);
    assert_eq!(item["product_name"], "Laptop");
    assert_eq!(item["quantity"], 1);
    assert_eq!(item["unit_price"], json!(999.99));
    assert_eq!(item["total_price"], json!(999.99));
    assert!(item["id"].as_i64().is_some());
    for field in ["created_at", "updated_at"] {
        let text = order[field].as_str().unwrap();
        assert!(
            DateTime::parse_from_rfc3339(text).is_ok() && text.ends_with('Z'),
            "{field} is RFC 3339 UTC: {text}"
        );
    }

    let fetched: Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(
        fetched, order,
        "the Location header leads to the same order"
    );
}

#[actix_web::test]
async fn money_is_exact_and_always_has_two_decimals() {
    let app = spawn_app().await;
    let body = json!({
        "customer_name": "Cents",
        "customer_email": "cents@example.com",
        "items": [
            {"product_name": "Dime", "quantity": 3, "unit_price": 0.10},
            {"product_name": "Round", "quantity": 1, "unit_price": 75}
        ]
    });

    let response = app.create_order(&body).await;

    assert_eq!(response.status(), 201);
    let text = response.text().await.unwrap();
    for expected in [
        r#""total_price":0.30"#,
        r#""unit_price":75.00"#,
        r#""total_amount":75.30"#,
        r#""unit_price":0.10"#,
    ] {
        assert!(text.contains(expected), "expected {expected} in {text}");
    }
}

#[actix_web::test]
async fn the_order_its_items_and_its_first_history_row_are_stored_together() {
    let app = spawn_app().await;
    let body = json!({
        "customer_name": "Two Lines",
        "customer_email": "two@example.com",
        "items": [
            {"product_name": "A", "quantity": 1, "unit_price": 99.99},
            {"product_name": "B", "quantity": 2, "unit_price": 49.99}
        ]
    });

    let order = app.created(&body).await;

    let id = order["id"].as_i64().unwrap();
    assert_eq!(order["total_amount"], json!(199.97));
    assert_eq!(
        app.db
            .count(&format!(
                "SELECT count(*) AS count FROM order_items WHERE order_id = {id}"
            ))
            .await,
        2
    );
    assert_eq!(
        app.db
            .count(&format!(
                "SELECT count(*) AS count FROM order_status_history WHERE order_id = {id} AND from_status IS NULL AND to_status = 'pending'"
            ))
            .await,
        1
    );
}

/// Makes the database refuse items named `refused`, inside the transaction, after the order
/// row went in: a failure the domain cannot foresee.
async fn refuse_items_named_refused(app: &TestApp) {
    let mut conn = app.db.connect().await;
    for sql in [
        "CREATE FUNCTION refuse_item() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER refuse_item BEFORE INSERT ON order_items FOR EACH ROW \
         WHEN (NEW.product_name = 'refused') EXECUTE FUNCTION refuse_item()",
    ] {
        diesel_async::RunQueryDsl::execute(diesel::sql_query(sql), &mut conn).await.unwrap();
    }
}

#[actix_web::test]
async fn a_failing_item_insert_leaves_no_order_behind() {
    let app = spawn_app().await;
    refuse_items_named_refused(&app).await;
    let mut body = seed_order();
    body["items"][0]["product_name"] = json!("refused");

    let response = app.create_order(&body).await;

    let error = error_body(response, 500, "internal_error").await;
    assert!(
        !error.to_string().contains("refused"),
        "database details stay in the log: {error}"
    );
    assert_eq!(
        app.db.count("SELECT count(*) AS count FROM orders").await,
        0,
        "the order insert was rolled back"
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) AS count FROM order_status_history")
            .await,
        0
    );
    assert_eq!(
        app.create_order(&seed_order()).await.status(),
        201,
        "the service carries on"
    );
}

#[actix_web::test]
async fn a_bad_order_in_a_batch_never_fails_the_good_ones() {
    // One executor, so concurrent creates are group-committed together.
    let app = spawn_app_with(|config| config.executors = 1).await;
    refuse_items_named_refused(&app).await;
    let bodies = (0..60).map(|n| {
        let mut body = seed_order();
        body["customer_name"] = json!(format!("Batch {n}"));
        if n == 30 {
            body["items"][0]["product_name"] = json!("refused");
        }
        body
    });

    let responses = futures_util::future::join_all(bodies.map(|body| {
        let app = &app;
        async move { app.create_order(&body).await.status().as_u16() }
    }))
    .await;

    assert_eq!(
        responses.iter().filter(|&&s| s == 201).count(),
        59,
        "{responses:?}"
    );
    assert_eq!(responses[30], 500, "only the bad order fails");
    assert_eq!(
        app.db.count("SELECT count(*) AS count FROM orders").await,
        59
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) AS count FROM order_items")
            .await,
        59
    );
}

#[actix_web::test]
async fn strings_are_stored_exactly_as_sent_after_trimming() {
    let app = spawn_app().await;
    let names = [
        "O'Brien \"Bob\"",
        "Robert'); DROP TABLE orders;--",
        "🛒 Ünïcödé",
        "مرحبا بالعالم",
        "%_\\",
    ];
    for name in names {
        let mut body = seed_order();
        body["customer_name"] = json!(format!("  {name}  "));
        body["items"][0]["product_name"] = json!(name);

        let order = app.created(&body).await;
        let fetched: Value = app.get_order(&order["id"]).await.json().await.unwrap();

        assert_eq!(fetched["customer_name"], name);
        assert_eq!(fetched["items"][0]["product_name"], name);
    }
}

#[actix_web::test]
async fn every_invalid_field_is_reported_at_once() {
    let app = spawn_app().await;
    let body = json!({
        "customer_name": " ",
        "customer_email": "not-an-email",
        "items": [
            {"product_name": "", "quantity": 0, "unit_price": -1},
            {"product_name": "ok", "quantity": 1, "unit_price": 1.001}
        ]
    });

    let error = error_body(app.create_order(&body).await, 400, "validation_failed").await;

    let fields = detail_fields(&error);
    assert_eq!(
        fields,
        [
            "customer_name",
            "customer_email",
            "items[0].product_name",
            "items[0].quantity",
            "items[0].unit_price",
            "items[1].unit_price"
        ]
    );
    assert_eq!(
        app.db.count("SELECT count(*) AS count FROM orders").await,
        0
    );
}

#[actix_web::test]
async fn each_validation_rule_on_both_sides_of_its_bound() {
    let app = spawn_app().await;
    let long = "x".repeat(255);
    let too_long = "x".repeat(256);
    let email_255 = format!("{}@example.com", "a".repeat(243));
    let email_256 = format!("{}@example.com", "a".repeat(244));
    let many = |n: usize| {
        json!(vec![
            json!({"product_name": "x", "quantity": 1, "unit_price": 1});
            n
        ])
    };
    // (field to set, value, accepted?, field reported when refused)
    let rows: Vec<(&str, Value, bool, &str)> = vec![
        ("customer_name", json!(long), true, ""),
        ("customer_name", json!(too_long), false, "customer_name"),
        (
            "customer_name",
            json!("nul\u{0}byte"),
            false,
            "customer_name",
        ),
        ("customer_email", json!(email_255), true, ""),
        ("customer_email", json!(email_256), false, "customer_email"),
        (
            "customer_email",
            json!("john@example"),
            false,
            "customer_email",
        ),
        (
            "customer_email",
            json!("jo hn@example.com"),
            false,
            "customer_email",
        ),
        ("items", json!([]), false, "items"),
        ("items", many(100), true, ""),
        ("items", many(101), false, "items"),
        ("quantity", json!(1), true, ""),
        ("quantity", json!(0), false, "items[0].quantity"),
        ("quantity", json!(1_000_000), true, ""),
        ("quantity", json!(1_000_001), false, "items[0].quantity"),
        ("unit_price", json!(0), true, ""),
        ("unit_price", json!(-0.01), false, "items[0].unit_price"),
        ("unit_price", json!(9999999999.99), true, ""),
        (
            "unit_price",
            json!(10000000000.00),
            false,
            "items[0].unit_price",
        ),
        ("unit_price", json!(0.01), true, ""),
        ("unit_price", json!(0.001), false, "items[0].unit_price"),
        ("product_name", json!(long), true, ""),
        ("product_name", json!(""), false, "items[0].product_name"),
    ];
    for (field, value, accepted, reported) in rows {
        let mut body = seed_order();
        match field {
            "customer_name" | "customer_email" | "items" => body[field] = value.clone(),
            item_field => body["items"][0][item_field] = value.clone(),
        }

        let response = app.create_order(&body).await;

        if accepted {
            assert_eq!(response.status(), 201, "{field} = {value} must be accepted");
        } else {
            let error = error_body(response, 400, "validation_failed").await;
            assert_eq!(
                error["details"][0]["field"], reported,
                "{field} = {value}: {error}"
            );
        }
    }
}

#[actix_web::test]
async fn totals_that_would_overflow_the_columns_are_refused() {
    let app = spawn_app().await;
    let body = json!({
        "customer_name": "Big",
        "customer_email": "big@example.com",
        "items": [
            {"product_name": "a", "quantity": 1_000_000, "unit_price": 9999999999.99}
        ]
    });

    let error = error_body(app.create_order(&body).await, 400, "validation_failed").await;

    assert_eq!(error["details"][0]["field"], "items");
}

#[actix_web::test]
async fn two_hundred_concurrent_creates_all_succeed_and_are_all_stored() {
    let app = spawn_app().await;
    let requests = (0..200).map(|n| {
        let body = json!({
            "customer_name": format!("Concurrent {n}"),
            "customer_email": format!("c{n}@example.com"),
            "items": [
                {"product_name": "A", "quantity": 1, "unit_price": 99.99},
                {"product_name": "B", "quantity": 2, "unit_price": 49.99}
            ]
        });
        let app = &app;
        async move { app.create_order(&body).await }
    });

    let responses = futures_util::future::join_all(requests).await;

    let mut ids = Vec::new();
    for (n, response) in responses.into_iter().enumerate() {
        assert_eq!(response.status(), 201);
        let order: Value = response.json().await.unwrap();
        assert_eq!(order["customer_name"], format!("Concurrent {n}"));
        assert_eq!(order["total_amount"], json!(199.97));
        // The answer is built from the batch insert's ids: it must be exactly what is stored.
        let stored: Value = app.get_order(&order["id"]).await.json().await.unwrap();
        assert_eq!(stored, order, "order {n} reads back as it was answered");
        ids.push(order["id"].as_i64().unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200, "every order got its own id");
    assert_eq!(
        app.db.count("SELECT count(*) AS count FROM orders").await,
        200
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) AS count FROM order_items")
            .await,
        400
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) AS count FROM orders WHERE total_amount = 199.97")
            .await,
        200
    );
}
