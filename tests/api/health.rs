use serde_json::{json, Value};

use crate::helpers::spawn_app;

#[actix_web::test]
async fn health_reports_the_database_up() {
    let app = spawn_app().await;

    let response = app.get("/health").await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "healthy", "database": "up"})
    );
}

#[actix_web::test]
async fn health_turns_503_when_the_database_is_unreachable() {
    let app = spawn_app().await;
    assert_eq!(app.get("/health").await.status(), 200);

    app.db.drop_now().await;
    let response = app.get("/health").await;

    assert_eq!(response.status(), 503);
    assert!(
        response.headers().contains_key("retry-after"),
        "503 says when to retry"
    );
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "unhealthy", "database": "down"})
    );
    let create = app.create_order(&crate::helpers::seed_order()).await;
    assert_eq!(create.status(), 503, "writes fail fast with 503 too");
}
