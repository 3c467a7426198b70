//! Every failure answers JSON `{"error", "code"}` with the right status, never a bare 500.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{error_body, seed_order, spawn_app};

#[actix_web::test]
async fn bytes_that_are_not_json_are_a_400_with_the_parser_message() {
    let app = spawn_app().await;
    for body in [r#"{"customer_name": "x""#, "not json", "{} {}"] {
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
async fn well_formed_json_names_every_missing_or_mistyped_field_at_once() {
    let app = spawn_app().await;
    let body = json!({
        "customer_name": "",
        "items": [
            {"product_name": "a", "quantity": "1", "unit_price": 1},
            {"product_name": 7, "quantity": 1.5, "unit_price": "9.99"},
            5,
            {"quantity": 1, "unit_price": null}
        ]
    });

    let response = app.create_order(&body).await;

    let error = error_body(response, 400, "validation_failed").await;
    let details: Vec<(&str, &str)> = error["details"]
        .as_array()
        .expect("details")
        .iter()
        .map(|d| (d["field"].as_str().unwrap(), d["message"].as_str().unwrap()))
        .collect();
    assert_eq!(
        details,
        [
            ("customer_name", "must not be empty"),
            ("customer_email", "is required"),
            ("items[0].quantity", "must be an integer"),
            ("items[1].product_name", "must be a string"),
            ("items[1].quantity", "must be an integer"),
            ("items[1].unit_price", "must be a number"),
            ("items[2]", "must be an object"),
            ("items[3].product_name", "is required"),
            ("items[3].unit_price", "is required"),
        ],
        "one answer names every problem: {error}"
    );
    assert_eq!(
        app.db.count("SELECT count(*) AS count FROM orders").await,
        0
    );
}

#[actix_web::test]
async fn json_that_is_not_an_object_fails_validation_of_the_body() {
    let app = spawn_app().await;
    for body in [
        "null",
        "5",
        r#""order""#,
        r#"{"customer_name": "a", "customer_name": "b"}"#,
    ] {
        let response = app
            .post_raw("/api/v1/orders", "application/json", body)
            .await;
        let error = error_body(response, 400, "validation_failed").await;
        assert_eq!(error["details"][0]["field"], "body", "{body}: {error}");
    }
}

#[actix_web::test]
async fn a_status_body_without_a_status_string_fails_validation() {
    let app = spawn_app().await;
    let id = app.created(&seed_order()).await["id"].as_i64().unwrap();
    for (body, message) in [
        ("{}", "is required"),
        (r#"{"status": null}"#, "is required"),
        (r#"{"status": 5}"#, "must be a string"),
        (r#"{"status": "shipped"}"#, "unknown status"),
    ] {
        let response = app
            .client
            .put(app.url(&format!("/api/v1/orders/{id}/status")))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let error = error_body(response, 400, "validation_failed").await;
        assert_eq!(error["details"][0]["field"], "status", "{body}");
        let said = error["details"][0]["message"].as_str().unwrap();
        assert!(said.contains(message), "{body}: {said}");
    }
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
        (Method::DELETE, "/api/v1/orders", "GET, HEAD, POST"),
        (Method::PUT, "/api/v1/orders", "GET, HEAD, POST"),
        (Method::POST, "/api/v1/orders/1", "GET, HEAD"),
        (Method::DELETE, "/api/v1/orders/1", "GET, HEAD"),
        (Method::GET, "/api/v1/orders/1/status", "PUT"),
        (Method::POST, "/health", "GET, HEAD"),
        (Method::POST, "/health/ready", "GET, HEAD"),
        (Method::POST, "/api/v1/openapi.json", "GET, HEAD"),
    ];
    for (method, path, allow) in cases {
        let response = app.request(method.clone(), path).await;
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        error_body(response, 405, "method_not_allowed").await;
    }
}
