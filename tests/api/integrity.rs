//! What the schema itself guarantees about an order's rows, whatever writes them: items,
//! history, idempotency keys and events name an existing order, deliveries an existing event,
//! and an order deleted (by hand: the service never does) takes all of them along.

use diesel::result::{DatabaseErrorKind, Error};
use diesel_async::RunQueryDsl;

use crate::helpers::{seed_order, spawn_app};

#[actix_web::test]
async fn rows_that_name_a_missing_order_or_event_are_refused() {
    let app = spawn_app().await;
    let order = app.created(&seed_order()).await;
    let id = order["id"].as_i64().unwrap();
    let mut conn = app.db.connect().await;
    let missing = id + 1000;
    let cases = [
        format!(
            "INSERT INTO order_items (order_id, product_name, quantity, unit_price, total_price) \
             VALUES ({id}, 'Pen', 1, 1.00, 1.00), ({missing}, 'Pen', 1, 1.00, 1.00)"
        ),
        format!("INSERT INTO order_status_history (order_id, to_status) VALUES ({missing}, 'pending')"),
        format!(
            "INSERT INTO idempotency_keys (key, request_hash, order_id) VALUES ('k', 'h', {missing})"
        ),
        format!("INSERT INTO order_events (order_id, type) VALUES ({missing}, 'order.created')"),
        "INSERT INTO webhook_deliveries (event_id, url) VALUES (999999, 'http://127.0.0.1:9/')"
            .to_owned(),
    ];
    for sql in cases {
        let refused = diesel::sql_query(&sql).execute(&mut conn).await;

        assert!(
            matches!(
                refused,
                Err(Error::DatabaseError(
                    DatabaseErrorKind::ForeignKeyViolation,
                    _
                ))
            ),
            "{sql}: {refused:?}"
        );
    }
    let items = order["items"].as_array().unwrap().len() as i64;
    assert_eq!(
        app.db
            .count(&format!(
                "SELECT count(*) AS count FROM order_items WHERE order_id = {id}"
            ))
            .await,
        items,
        "the statement with one bad row wrote none: the order has only the items it was created with"
    );

    // The same rows for an order that exists are taken.
    diesel::sql_query(format!(
        "INSERT INTO order_status_history (order_id, to_status) VALUES ({id}, 'pending')"
    ))
    .execute(&mut conn)
    .await
    .expect("an existing order");
}

#[actix_web::test]
async fn an_order_deleted_takes_its_items_history_key_events_and_deliveries_along() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for key in ["kept", "gone"] {
        let response = app
            .client
            .post(app.url("/api/v1/orders"))
            .header("Idempotency-Key", key)
            .json(&seed_order())
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status(), 201);
        let order: serde_json::Value = response.json().await.unwrap();
        ids.push(order["id"].as_i64().unwrap());
    }
    let (kept, gone) = (ids[0], ids[1]);
    let mut conn = app.db.connect().await;
    for insert in [
        "INSERT INTO webhook_deliveries (event_id, url, attempts) \
         SELECT id, 'http://127.0.0.1:9/', 1 FROM order_events",
        "INSERT INTO webhook_failed_attempts (event_id, url, attempt, error) \
         SELECT event_id, url, 1, 'answered 500' FROM webhook_deliveries",
    ] {
        diesel::sql_query(insert).execute(&mut conn).await.unwrap();
    }

    diesel::sql_query(format!("DELETE FROM orders WHERE id = {gone}"))
        .execute(&mut conn)
        .await
        .unwrap();

    for table in [
        "order_items",
        "order_status_history",
        "idempotency_keys",
        "order_events",
    ] {
        let rows_of =
            |order: i64| format!("SELECT count(*) AS count FROM {table} WHERE order_id = {order}");
        assert_eq!(
            app.db.count(&rows_of(gone)).await,
            0,
            "{table}: the deleted order's"
        );
        assert!(
            app.db.count(&rows_of(kept)).await > 0,
            "{table}: the other order's stay"
        );
    }
    assert_eq!(
        app.db
            .count("SELECT count(*) AS count FROM webhook_deliveries")
            .await,
        1,
        "only the other order's event keeps its delivery"
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) AS count FROM webhook_failed_attempts")
            .await,
        1,
        "and its delivery's failed attempt"
    );
}
