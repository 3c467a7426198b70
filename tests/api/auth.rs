//! Optional API keys: `API_KEYS` set means `/api/v1` wants `Authorization: Bearer <key>`.

use order_service::api::ApiKeys;
use reqwest::Response;
use serde_json::Value;

use crate::helpers::{error_body, seed_order, spawn_app, spawn_app_with, TestApp};

async fn spawn_with_keys() -> TestApp {
    spawn_app_with(|c| c.api_keys = ApiKeys::new(["first-key", "second-key"])).await
}

async fn create_with(app: &TestApp, authorization: Option<&str>) -> Response {
    let mut request = app
        .client
        .post(app.url("/api/v1/orders"))
        .json(&seed_order());
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    request.send().await.expect("request sent")
}

async fn unauthorized(response: Response) {
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer",
        "a 401 says which scheme to use"
    );
    error_body(response, 401, "unauthorized").await;
}

#[actix_web::test]
async fn without_api_keys_the_api_is_open() {
    let app = spawn_app().await;

    assert_eq!(create_with(&app, None).await.status(), 201);
    assert_eq!(
        create_with(&app, Some("Bearer anything")).await.status(),
        201
    );
}

#[actix_web::test]
async fn with_api_keys_every_api_route_wants_one_of_them() {
    let app = spawn_with_keys().await;

    for authorization in [
        None,
        Some("Bearer wrong-key"),
        Some("Bearer first-key-but-longer"),
        Some("Basic first-key"),
        Some("first-key"),
        Some("Bearer "),
    ] {
        unauthorized(create_with(&app, authorization).await).await;
    }
    for path in ["/api/v1/orders", "/api/v1/orders/1", "/api/v1/nope"] {
        unauthorized(app.get(path).await).await;
    }
    unauthorized(app.set_status(1, "processing").await).await;
    let malformed = app
        .post_raw("/api/v1/orders", "application/json", "{")
        .await;
    unauthorized(malformed).await;
    assert_eq!(
        app.db.count("SELECT count(*) AS count FROM orders").await,
        0
    );

    for key in ["first-key", "second-key"] {
        let response = create_with(&app, Some(&format!("Bearer {key}"))).await;
        assert_eq!(response.status(), 201, "{key} is accepted");
    }
    let listed = app
        .client
        .get(app.url("/api/v1/orders"))
        .bearer_auth("second-key")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
}

#[actix_web::test]
async fn health_and_the_api_documentation_stay_open() {
    let app = spawn_with_keys().await;

    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.get("/docs/").await.status(), 200);
    let doc = app.get("/api/v1/openapi.json").await;
    assert_eq!(doc.status(), 200);

    let doc: Value = doc.json().await.unwrap();
    let create = &doc["paths"]["/api/v1/orders"]["post"];
    assert_eq!(create["security"], serde_json::json!([{"bearer": []}]));
    assert!(create["responses"]["401"].is_object());
    assert!(doc["paths"]["/health"]["get"].get("security").is_none());
}
