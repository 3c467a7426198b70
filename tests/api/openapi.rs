//! The machine-readable contract: `/api/v1/openapi.json` and the Swagger UI at `/docs`.

use serde_json::Value;

use crate::helpers::spawn_app;

#[actix_web::test]
async fn the_openapi_document_describes_every_route_and_its_answers() {
    let app = spawn_app().await;

    let response = app.get("/api/v1/openapi.json").await;

    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = &doc["paths"];
    let expected: &[(&str, &str, &[&str])] = &[
        ("/health", "get", &["200", "503"]),
        ("/health/live", "get", &["200"]),
        ("/health/ready", "get", &["200", "503"]),
        (
            "/api/v1/orders",
            "post",
            &["201", "400", "408", "413", "415", "422", "500", "503"],
        ),
        ("/api/v1/orders", "get", &["200", "400", "500", "503"]),
        (
            "/api/v1/orders/{id}",
            "get",
            &["200", "304", "400", "404", "500", "503"],
        ),
        (
            "/api/v1/orders/{id}/status",
            "put",
            &[
                "200", "400", "404", "408", "409", "412", "413", "415", "500", "503",
            ],
        ),
        (
            "/api/v1/orders/{id}/history",
            "get",
            &["200", "400", "404", "500", "503"],
        ),
        ("/metrics", "get", &["200", "500"]),
    ];
    for (path, method, statuses) in expected {
        let responses = paths[path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} is documented"));
        let documented: Vec<&str> = responses.keys().map(String::as_str).collect();
        assert_eq!(&documented, statuses, "{method} {path}");
        let operation = &paths[path][method];
        assert!(
            operation["parameters"].as_array().is_some_and(|ps| ps
                .iter()
                .any(|p| p["name"] == "x-request-id" && p["in"] == "header")),
            "{method} {path} takes X-Request-Id"
        );
        for (status, response) in responses {
            assert!(
                response["headers"]["x-request-id"].is_object(),
                "{method} {path} {status} answers with X-Request-Id"
            );
        }
    }
    let list_parameters: Vec<&str> = paths["/api/v1/orders"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for filter in [
        "status",
        "customer_email",
        "created_after",
        "created_before",
    ] {
        assert!(list_parameters.contains(&filter), "list filter {filter}");
    }
    assert!(
        doc["components"]["securitySchemes"]["bearer"].is_object(),
        "the bearer scheme is declared"
    );
}

#[actix_web::test]
async fn schemas_say_what_the_json_really_holds() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let schemas = &doc["components"]["schemas"];

    assert_eq!(schemas["Money"]["type"], "number");
    assert_eq!(
        schemas["Order"]["properties"]["total_amount"]["$ref"],
        "#/components/schemas/Money"
    );
    assert_eq!(
        schemas["OrderItem"]["properties"]["unit_price"]["$ref"],
        "#/components/schemas/Money"
    );
    for field in ["created_at", "updated_at"] {
        assert_eq!(schemas["Order"]["properties"][field]["format"], "date-time");
    }
    assert_eq!(
        schemas["OrderStatus"]["enum"],
        serde_json::json!(["pending", "processing", "completed", "cancelled"])
    );
    assert_eq!(
        schemas["CreateItemRequest"]["properties"]["unit_price"]["type"],
        "number"
    );
    assert_eq!(
        schemas["CreateOrderRequest"]["properties"]["items"]["maxItems"],
        100
    );
    let error = &schemas["ErrorBody"];
    assert_eq!(
        error["required"],
        serde_json::json!(["error", "code", "request_id"])
    );
    assert_eq!(
        schemas["StatusChange"]["required"],
        serde_json::json!(["from_status", "to_status", "changed_at"])
    );
    for field in ["details", "current_status", "allowed_transitions"] {
        assert!(error["properties"][field].is_object(), "ErrorBody.{field}");
    }
}

#[actix_web::test]
async fn swagger_ui_is_served_from_the_binary() {
    let app = spawn_app().await;

    let page = app.get("/docs").await;
    assert_eq!(page.status(), 200, "/docs redirects to /docs/");
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    let init = app.get("/docs/swagger-initializer.js").await;
    assert_eq!(init.status(), 200);
    assert!(
        init.text().await.unwrap().contains("/api/v1/openapi.json"),
        "the UI shows our document"
    );
}
