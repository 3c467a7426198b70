use serde_json::Value;

use crate::helpers::{error_body, seed_order, spawn_app, TestApp};

async fn new_order(app: &TestApp) -> i64 {
    app.created(&seed_order()).await["id"].as_i64().unwrap()
}

/// The order's history rows as (from, to), oldest first.
async fn history(app: &TestApp, order: i64) -> Vec<(Option<String>, String)> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use order_service::db::schema::order_status_history as h;
    h::table
        .filter(h::order_id.eq(order))
        .order(h::id)
        .select((h::from_status, h::to_status))
        .load(&mut app.db.connect().await)
        .await
        .unwrap()
}

#[actix_web::test]
async fn an_order_moves_through_its_lifecycle_and_each_step_is_recorded() {
    let app = spawn_app().await;
    let id = new_order(&app).await;
    let created: Value = app.get_order(id).await.json().await.unwrap();

    let processing = app.set_status(id, "processing").await;
    assert_eq!(processing.status(), 200);
    let processing: Value = processing.json().await.unwrap();
    assert_eq!(processing["status"], "processing");
    assert!(
        processing["updated_at"].as_str() > created["updated_at"].as_str(),
        "updated_at moves on"
    );
    assert_eq!(
        processing["items"], created["items"],
        "the answer is the whole order"
    );

    let completed: Value = app.set_status(id, "completed").await.json().await.unwrap();
    assert_eq!(completed["status"], "completed");

    assert_eq!(
        history(&app, id).await,
        [
            (None, "pending".to_owned()),
            (Some("pending".to_owned()), "processing".to_owned()),
            (Some("processing".to_owned()), "completed".to_owned())
        ]
    );
}

#[actix_web::test]
async fn setting_the_current_status_again_is_a_no_op() {
    let app = spawn_app().await;
    let id = new_order(&app).await;
    let first: Value = app.set_status(id, "processing").await.json().await.unwrap();

    let again = app.set_status(id, "processing").await;

    assert_eq!(again.status(), 200);
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        first,
        "nothing changed, not even updated_at"
    );
    assert_eq!(
        history(&app, id).await.len(),
        2,
        "no history row for a no-op"
    );
}

#[actix_web::test]
async fn an_illegal_move_is_a_409_naming_the_current_status_and_the_allowed_ones() {
    let app = spawn_app().await;
    let id = new_order(&app).await;

    let error = error_body(
        app.set_status(id, "completed").await,
        409,
        "invalid_transition",
    )
    .await;
    assert_eq!(error["current_status"], "pending");
    assert_eq!(
        error["allowed_transitions"],
        serde_json::json!(["processing", "cancelled"])
    );

    assert_eq!(app.set_status(id, "cancelled").await.status(), 200);
    for to in ["pending", "processing", "completed"] {
        let error = error_body(app.set_status(id, to).await, 409, "invalid_transition").await;
        assert_eq!(error["current_status"], "cancelled");
        assert_eq!(
            error["allowed_transitions"],
            serde_json::json!([]),
            "cancelled is final"
        );
    }
    let stored: Value = app.get_order(id).await.json().await.unwrap();
    assert_eq!(stored["status"], "cancelled");
}

#[actix_web::test]
async fn an_unknown_status_is_a_400_and_an_absent_order_a_404() {
    let app = spawn_app().await;
    let id = new_order(&app).await;

    let error = error_body(
        app.set_status(id, "shipped").await,
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(error["details"][0]["field"], "status");
    error_body(
        app.set_status(999_999_999, "processing").await,
        404,
        "order_not_found",
    )
    .await;
    error_body(app.set_status("abc", "processing").await, 400, "invalid_id").await;
}

#[actix_web::test]
async fn concurrent_conflicting_moves_have_exactly_one_winner() {
    let app = spawn_app().await;
    for _ in 0..10 {
        let id = new_order(&app).await;
        assert_eq!(app.set_status(id, "processing").await.status(), 200);

        let (complete, cancel) = futures_util::join!(
            app.set_status(id, "completed"),
            app.set_status(id, "cancelled")
        );

        let statuses = [complete.status().as_u16(), cancel.status().as_u16()];
        let winner = match statuses {
            [200, 409] => "completed",
            [409, 200] => "cancelled",
            other => panic!("expected one 200 and one 409, got {other:?}"),
        };
        let stored: Value = app.get_order(id).await.json().await.unwrap();
        assert_eq!(stored["status"], winner);
        let history = history(&app, id).await;
        assert_eq!(history.len(), 3, "one row per real change: {history:?}");
        assert_eq!(
            history[2],
            (Some("processing".to_owned()), winner.to_owned())
        );
    }
}

#[actix_web::test]
async fn racing_transitions_keep_every_order_and_its_history_in_agreement() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(new_order(&app).await);
    }
    let targets = ["processing", "completed", "cancelled", "pending"];
    // 16 clients, each sending 12 status changes to pseudo-random orders, all at once.
    let clients = (0..16u64).map(|client| {
        let (app, ids) = (&app, &ids);
        async move {
            let mut seed = client * 7919 + 1;
            for _ in 0..12 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let id = ids[(seed >> 33) as usize % ids.len()];
                let to = targets[(seed >> 17) as usize % targets.len()];
                let status = app.set_status(id, to).await.status().as_u16();
                assert!(status == 200 || status == 409, "{to} on {id}: {status}");
            }
        }
    });
    futures_util::future::join_all(clients).await;

    for id in ids {
        let history = history(&app, id).await;
        assert_eq!(
            history[0],
            (None, "pending".to_owned()),
            "order {id} starts pending"
        );
        for pair in history.windows(2) {
            let (previous, next) = (&pair[0], &pair[1]);
            assert_eq!(
                next.0.as_deref(),
                Some(previous.1.as_str()),
                "order {id}: each change starts where the last ended: {history:?}"
            );
            let from: order_service::domain::OrderStatus = previous.1.parse().unwrap();
            let to = next.1.parse().unwrap();
            assert!(
                from.next().contains(&to),
                "order {id}: {from} -> {to} is not a legal move"
            );
        }
        let stored: Value = app.get_order(id).await.json().await.unwrap();
        assert_eq!(
            stored["status"],
            history.last().unwrap().1,
            "order {id}: the row agrees with its history"
        );
    }
}
