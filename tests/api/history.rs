//! `GET /api/v1/orders/{id}/history`: every status an order had, oldest first.

use serde_json::{json, Value};

use crate::helpers::{error_body, seed_order, spawn_app};

#[actix_web::test]
async fn the_history_lists_each_change_oldest_first_from_the_creation_on() {
    let app = spawn_app().await;
    let id = app.created(&seed_order()).await["id"].as_i64().unwrap();
    for status in ["processing", "processing", "completed"] {
        assert_eq!(app.set_status(id, status).await.status(), 200);
    }
    assert_eq!(
        app.set_status(id, "pending").await.status(),
        409,
        "a refused move"
    );

    let response = app.get(&format!("/api/v1/orders/{id}/history")).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["order_id"], id);
    let history = body["history"].as_array().unwrap();
    let moves: Vec<(Value, Value)> = history
        .iter()
        .map(|change| (change["from_status"].clone(), change["to_status"].clone()))
        .collect();
    assert_eq!(
        moves,
        [
            (Value::Null, json!("pending")),
            (json!("pending"), json!("processing")),
            (json!("processing"), json!("completed")),
        ],
        "the creation, then each real change; neither the repeated nor the refused one"
    );
    let times: Vec<&str> = history
        .iter()
        .map(|change| change["changed_at"].as_str().unwrap())
        .collect();
    let parsed: Vec<chrono::DateTime<chrono::FixedOffset>> = times
        .iter()
        .map(|t| chrono::DateTime::parse_from_rfc3339(t).expect("RFC 3339 changed_at"))
        .collect();
    assert!(
        parsed.windows(2).all(|pair| pair[0] <= pair[1]),
        "oldest first: {times:?}"
    );
}

#[actix_web::test]
async fn the_history_of_an_absent_order_is_a_404_and_a_bad_id_a_400() {
    let app = spawn_app().await;

    error_body(
        app.get("/api/v1/orders/424242/history").await,
        404,
        "order_not_found",
    )
    .await;
    for bad in ["0", "-1", "abc", "9223372036854775808"] {
        error_body(
            app.get(&format!("/api/v1/orders/{bad}/history")).await,
            400,
            "invalid_id",
        )
        .await;
    }
}
