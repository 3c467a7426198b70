//! Every failure answers JSON `{"error", "code"}` with the right status, never a bare 500.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{error_body, seed_order, spawn_app};

#[actix_web::test]
async fn malformed_json_is_a_400_with_the_parser_message() {
    let app = spawn_app().await;
    let cases = [
        r#"{"customer_name": "x""#,
        "not json",
        r#"{"customer_name": "x", "customer_email": "x@y.zz", "items": [{"product_name": "a", "quantity": "1", "unit_price": 1}]}"#,
        r#"{"customer_name": "x", "customer_email": "x@y.zz", "items": [{"product_name": "a", "quantity": 1, "unit_price": "9.99"}]}"#,
        r#"{"customer_name": "x", "customer_email": "x@y.zz", "items": [{"product_name": "a", "quantity": 1.5, "unit_price": 1}]}"#,
        r#"{"customer_name": "x", "customer_email": "x@y.zz"}"#,
        r#"{"customer_name": null, "customer_email": "x@y.zz", "items": []}"#,
        "null",
    ];
    for body in cases {
        let response = app
            .post_raw("/api/v1/orders", "application/json", body)
            .await;
        let error = error_body(response, 400, "invalid_json").await;
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .starts_with("invalid JSON body"),
            "{body}: {error}"
        );
    }
    assert_eq!(
        app.db.count("SELECT count(*) AS count FROM orders").await,
        0
    );
}

#[actix_web::test]
async fn a_body_that_is_not_json_is_a_415() {
    let app = spawn_app().await;
    let body = seed_order().to_string();

    let response = app
        .post_raw("/api/v1/orders", "text/plain", body.clone())
        .await;
    error_body(response, 415, "unsupported_media_type").await;

    let no_type = app
        .client
        .post(app.url("/api/v1/orders"))
        .body(body)
        .send()
        .await
        .unwrap();
    error_body(no_type, 415, "unsupported_media_type").await;
}

#[actix_web::test]
async fn an_oversized_body_is_a_413() {
    let app = spawn_app().await;
    let mut body = seed_order();
    body["customer_name"] = json!("x".repeat(70 * 1024));

    error_body(app.create_order(&body).await, 413, "payload_too_large").await;
}

#[actix_web::test]
async fn unknown_routes_are_a_json_404() {
    let app = spawn_app().await;
    for path in [
        "/nope",
        "/api/v1/order",
        "/api/v1/orders/1/items",
        "/api/v2/orders",
    ] {
        error_body(app.get(path).await, 404, "route_not_found").await;
    }
}

#[actix_web::test]
async fn wrong_methods_are_a_json_405() {
    let app = spawn_app().await;
    let cases = [
        (Method::DELETE, "/api/v1/orders", "GET, POST"),
        (Method::PUT, "/api/v1/orders", "GET, POST"),
        (Method::POST, "/api/v1/orders/1", "GET"),
        (Method::DELETE, "/api/v1/orders/1", "GET"),
        (Method::GET, "/api/v1/orders/1/status", "PUT"),
        (Method::POST, "/health", "GET"),
        (Method::POST, "/api/v1/openapi.json", "GET"),
    ];
    for (method, path, allow) in cases {
        let response = app.request(method.clone(), path).await;
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        error_body(response, 405, "method_not_allowed").await;
    }
}
