use crate::helpers::{error_body, seed_order, spawn_app};

#[actix_web::test]
async fn an_order_is_read_back_with_its_items() {
    let app = spawn_app().await;
    let created = app.created(&seed_order()).await;

    let response = app.get_order(&created["id"]).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap(), created);
}

#[actix_web::test]
async fn an_absent_order_is_a_404() {
    let app = spawn_app().await;

    error_body(app.get_order(999_999_999).await, 404, "order_not_found").await;
}

#[actix_web::test]
async fn an_id_that_is_not_a_positive_i64_is_a_400() {
    let app = spawn_app().await;
    for id in ["abc", "0", "-1", "1.5", "9223372036854775808", "1e3"] {
        error_body(app.get_order(id).await, 400, "invalid_id").await;
    }
}
