//! The delivery queue's rules, on the queries the dispatcher runs: a claim is exclusive until
//! its lease runs out, an attempt's outcome counts only while its claim is the latest, and a
//! spent schedule leaves the delivery failed. The app runs without webhook URLs, so no
//! dispatcher races the test; the delivery row is written here.

use std::time::Duration;

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use order_service::actors::WebhookSettings;
use order_service::db::{
    claim_deliveries, next_delivery_due_in, oldest_pending_delivery_age, record_delivered,
    record_failed_attempt,
};
use order_service::domain::{EventId, RetrySchedule, WebhookSecret};

use crate::helpers::{error_body, seed_order, spawn_app, spawn_app_with, TestApp};

const URL: &str = "http://127.0.0.1:9/hook";
const LONG: Duration = Duration::from_secs(3600);

/// An order whose creation event has one pending delivery; the event's id.
async fn one_delivery(app: &TestApp) -> EventId {
    let order = app.created(&seed_order()).await;
    let mut conn = app.db.connect().await;
    diesel::sql_query(format!(
        "INSERT INTO webhook_deliveries (event_id, url) \
         SELECT id, '{URL}' FROM order_events WHERE order_id = {}",
        order["id"]
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    EventId::from_stored(
        app.db
            .count("SELECT max(event_id) AS count FROM webhook_deliveries")
            .await,
    )
}

async fn state(app: &TestApp) -> (String, i64) {
    let mut conn = app.db.connect().await;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        state: String,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        attempts: i32,
    }
    let row: Row = diesel::sql_query("SELECT state, attempts FROM webhook_deliveries")
        .get_result(&mut conn)
        .await
        .unwrap();
    (row.state, row.attempts.into())
}

async fn claim(conn: &mut AsyncPgConnection, lease: Duration) -> Vec<(EventId, u32)> {
    claim_deliveries(conn, 10, lease)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.event.id, d.attempt))
        .collect()
}

#[actix_web::test]
async fn a_claim_is_exclusive_until_its_lease_runs_out() {
    let app = spawn_app().await;
    let event = one_delivery(&app).await;
    let (mut one, mut other) = (app.db.connect().await, app.db.connect().await);

    assert_eq!(
        claim(&mut one, Duration::from_millis(200)).await,
        [(event, 1)]
    );
    assert_eq!(claim(&mut other, LONG).await, [], "leased to the first");
    let due_in = next_delivery_due_in(&mut other).await.unwrap().unwrap();
    assert!(
        due_in <= Duration::from_millis(200),
        "due at the lease's end: {due_in:?}"
    );

    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        claim(&mut other, LONG).await,
        [(event, 2)],
        "the lease ran out (its instance died): claimed again, as another attempt"
    );
    record_delivered(&mut other, &[(event, URL)]).await.unwrap();
    assert_eq!(state(&app).await, ("delivered".into(), 2));
    assert_eq!(next_delivery_due_in(&mut other).await.unwrap(), None);
}

#[actix_web::test]
async fn a_failed_attempt_is_retried_and_a_stale_outcome_changes_nothing() {
    let app = spawn_app().await;
    let event = one_delivery(&app).await;
    let mut conn = app.db.connect().await;

    assert_eq!(claim(&mut conn, LONG).await, [(event, 1)]);
    // Recorded twice, as a dispatcher does after losing its connection mid-batch: no error, or
    // its outcomes could never be recorded again.
    for _ in 0..2 {
        record_failed_attempt(
            &mut conn,
            event,
            URL,
            1,
            "answered 500",
            Some(Duration::ZERO),
        )
        .await
        .expect("the same failure recorded twice");
    }
    assert_eq!(state(&app).await, ("pending".into(), 1));
    assert_eq!(claim(&mut conn, LONG).await, [(event, 2)], "due again");

    // Attempt 1's outcome arriving late (it outlived its lease) must not cut attempt 2's lease.
    record_failed_attempt(&mut conn, event, URL, 1, "late", Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(
        claim(&mut conn, LONG).await,
        [],
        "still leased to attempt 2"
    );

    record_failed_attempt(&mut conn, event, URL, 2, "answered 503", None)
        .await
        .unwrap();
    assert_eq!(state(&app).await, ("failed".into(), 2));
    assert_eq!(
        app.db
            .count(
                "SELECT count(*) AS count FROM webhook_failed_attempts \
                 WHERE (attempt = 1 AND error = 'answered 500') \
                    OR (attempt = 2 AND error = 'answered 503')"
            )
            .await,
        2,
        "each attempt's own outcome, and not the late one"
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) AS count FROM webhook_failed_attempts")
            .await,
        2
    );
    assert_eq!(
        claim(&mut conn, Duration::ZERO).await,
        [],
        "failed is final"
    );
}

/// An app with `count` webhook URLs on a port nothing listens on: every attempt fails at once.
async fn spawn_app_with_dead_hooks(count: usize) -> TestApp {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    spawn_app_with(move |c| {
        c.webhooks = Some(webhooks(
            (1..=count)
                .map(|n| format!("http://{dead}/hooks/{n}"))
                .collect(),
        ));
    })
    .await
}

/// Webhooks to `urls`, with the default timeout and retry schedule.
fn webhooks(urls: Vec<String>) -> WebhookSettings {
    WebhookSettings {
        urls,
        secret: WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
        timeout: Duration::from_secs(10),
        retries: RetrySchedule::parse(RetrySchedule::DEFAULT).unwrap(),
    }
}

#[actix_web::test]
async fn the_instance_that_writes_an_event_makes_its_first_attempts_without_a_claim() {
    let app = spawn_app_with_dead_hooks(2).await;
    let mut other = app.db.connect().await;

    let order = app.created(&seed_order()).await;
    assert_eq!(
        claim(&mut other, LONG).await,
        [],
        "written leased to the instance that wrote it"
    );
    assert_eq!(
        app.set_status(&order["id"], "processing").await.status(),
        200
    );
    assert_eq!(claim(&mut other, LONG).await, [], "the move's event too");

    // Two events, two URLs: all four first attempts fail (nothing listens), each recorded as
    // attempt 1: made from the instance's memory, not claimed (a claim would have made it
    // attempt 2).
    let failed_once = "SELECT count(*) AS count FROM webhook_deliveries d \
                       JOIN webhook_failed_attempts f USING (event_id, url) \
                       WHERE d.attempts = 1 AND f.attempt = 1 AND d.state = 'pending'";
    for _ in 0..100 {
        if app.db.count(failed_once).await == 4 {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.db.count(failed_once).await, 4);
    assert_eq!(
        app.db
            .count("SELECT count(*) AS count FROM webhook_deliveries WHERE attempts <> 1")
            .await,
        0
    );
}

#[actix_web::test]
async fn an_events_deliveries_show_where_each_url_stands() {
    let app = spawn_app_with_dead_hooks(1).await;
    app.created(&seed_order()).await;

    let response = app.get("/api/v1/events/1/deliveries").await;

    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["event_id"], 1);
    let delivery = &body["deliveries"][0];
    assert!(
        delivery["url"].as_str().unwrap().ends_with("/hooks/1"),
        "{body}"
    );
    assert_eq!(delivery["state"], "pending", "{body}");
    assert!(delivery["next_attempt_at"].is_string(), "{body}");
    assert_eq!(body["deliveries"].as_array().unwrap().len(), 1);

    error_body(
        app.get("/api/v1/events/99/deliveries").await,
        404,
        "event_not_found",
    )
    .await;
    error_body(
        app.get("/api/v1/events/x/deliveries").await,
        400,
        "invalid_id",
    )
    .await;
}

#[actix_web::test]
async fn every_failed_attempt_is_shown_with_what_the_receiver_answered() {
    // A receiver that is always busy, and a schedule of one retry 50 ms after the first try.
    // Its answer is shown on one line, without the NUL that PostgreSQL's text cannot hold.
    let receiver = actix_web::HttpServer::new(|| {
        actix_web::App::new().default_service(actix_web::web::to(|| async {
            actix_web::HttpResponse::ServiceUnavailable().body("busy,\n\0 try   later")
        }))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let url = format!("http://{}/hooks", receiver.addrs()[0]);
    actix_web::rt::spawn(receiver.run());
    let hook = url.clone();
    let app = spawn_app_with(move |c| {
        c.webhooks = Some(WebhookSettings {
            retries: RetrySchedule::parse("50ms").unwrap(),
            ..webhooks(vec![hook])
        });
    })
    .await;
    app.created(&seed_order()).await;

    let mut body = serde_json::Value::Null;
    for _ in 0..100 {
        body = app
            .get("/api/v1/events/1/deliveries")
            .await
            .json()
            .await
            .unwrap();
        if body["deliveries"][0]["state"] == "failed" {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }

    let delivery = &body["deliveries"][0];
    let answer = "answered 503 Service Unavailable: busy, try later";
    assert_eq!(delivery["url"], url.as_str());
    assert_eq!(delivery["state"], "failed", "the schedule is spent: {body}");
    assert_eq!(delivery["attempts"], 2, "{body}");
    assert_eq!(delivery["last_error"], answer, "{body}");
    assert!(delivery["next_attempt_at"].is_null(), "{body}");
    let failed = delivery["failed_attempts"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{body}");
    for (number, attempt) in (1..).zip(failed) {
        assert_eq!(attempt["attempt"], number, "{body}");
        assert_eq!(attempt["error"], answer, "{body}");
        assert!(attempt["failed_at"].is_string(), "{body}");
    }
    assert!(
        failed[0]["failed_at"].as_str() < failed[1]["failed_at"].as_str(),
        "{body}"
    );
}

#[actix_web::test]
async fn a_failure_the_database_refuses_to_record_does_not_hold_up_the_others() {
    let app = spawn_app_with_dead_hooks(2).await;
    // Whatever the reason a database may have, it refuses every failure of the first URL.
    let mut conn = app.db.connect().await;
    for statement in [
        "CREATE FUNCTION refuse_hook_1() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.url LIKE '%/hooks/1' THEN RAISE EXCEPTION 'refused for the test'; END IF; \
             RETURN NEW; END $$",
        "CREATE TRIGGER refuse BEFORE INSERT ON webhook_failed_attempts \
             FOR EACH ROW EXECUTE FUNCTION refuse_hook_1()",
    ] {
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .unwrap();
    }

    // Each order's first attempts fail at both URLs (nothing listens): the second URL's
    // failures are recorded, for the second order too, though the first URL's never are.
    let recorded = "SELECT count(*) AS count FROM webhook_failed_attempts \
                    WHERE url LIKE '%/hooks/2'";
    for order in 1..=2 {
        app.created(&seed_order()).await;
        for _ in 0..100 {
            if app.db.count(recorded).await == order {
                break;
            }
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(app.db.count(recorded).await, order);
    }
    assert_eq!(
        app.db
            .count("SELECT count(*) AS count FROM webhook_failed_attempts")
            .await,
        2
    );
    assert_eq!(
        app.db
            .count(
                "SELECT count(*) AS count FROM webhook_deliveries \
                 WHERE url LIKE '%/hooks/1' AND state = 'pending'"
            )
            .await,
        2,
        "the refused ones stay pending, to go out again when their leases run out"
    );
}

#[actix_web::test]
async fn the_backlog_age_is_the_age_of_the_oldest_pending_delivery_and_none_without_one() {
    let app = spawn_app().await;
    let mut conn = app.db.connect().await;
    assert_eq!(oldest_pending_delivery_age(&mut conn).await.unwrap(), None);

    let event = one_delivery(&app).await;
    // The event happened an hour ago, as far as the backlog can tell.
    diesel::sql_query(format!(
        "UPDATE order_events SET occurred_at = now() - interval '1 hour' WHERE id = {event}"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let age = oldest_pending_delivery_age(&mut conn)
        .await
        .unwrap()
        .expect("one pending");
    assert!(
        (Duration::from_secs(3599)..Duration::from_secs(3700)).contains(&age),
        "{age:?}"
    );

    record_delivered(&mut conn, &[(event, URL)]).await.unwrap();
    assert_eq!(oldest_pending_delivery_age(&mut conn).await.unwrap(), None);
}

#[actix_web::test]
async fn events_past_their_retention_go_with_their_deliveries() {
    let app = spawn_app().await;
    let old = one_delivery(&app).await;
    let kept = one_delivery(&app).await;
    let mut conn = app.db.connect().await;
    let mut claimed = claim(&mut conn, LONG).await;
    claimed.sort_unstable();
    assert_eq!(claimed, [(old, 1), (kept, 1)]);
    for event in [old, kept] {
        record_failed_attempt(&mut conn, event, URL, 1, "answered 500", Some(LONG))
            .await
            .unwrap();
    }
    diesel::sql_query(format!(
        "UPDATE order_events SET occurred_at = now() - interval '8 days' WHERE id = {old}"
    ))
    .execute(&mut conn)
    .await
    .unwrap();

    let purged = order_service::db::purge_events(&mut conn, Duration::from_secs(7 * 24 * 3600))
        .await
        .unwrap();

    assert_eq!(purged, 1, "only the event older than seven days");
    let left = "SELECT count(*) AS count FROM webhook_deliveries";
    assert_eq!(
        app.db.count(left).await,
        1,
        "the purged event's delivery went too"
    );
    assert_eq!(
        app.db
            .count(&format!(
                "SELECT count(*) AS count FROM webhook_deliveries WHERE event_id = {kept}"
            ))
            .await,
        1
    );
    assert_eq!(
        app.db
            .count(&format!(
                "SELECT count(*) AS count FROM webhook_failed_attempts WHERE event_id = {kept}"
            ))
            .await,
        1,
        "and its failed attempt, not the kept one's"
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) AS count FROM webhook_failed_attempts")
            .await,
        1
    );
}
