//! Order events: written with their change, read from a feed that never skips one, long-polled
//! and streamed.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use diesel::sql_types::BigInt;
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::{json, Value};

use crate::helpers::{error_body, seed_order, spawn_app, TestApp};

impl TestApp {
    /// One page of the feed; its events and `next_cursor`.
    async fn events(&self, query: &str) -> (Vec<Value>, Value) {
        let response = self.get(&format!("/api/v1/events{query}")).await;
        assert_eq!(response.status(), 200, "GET /api/v1/events{query}");
        let mut page: Value = response.json().await.unwrap();
        let events = page["events"].as_array().cloned().unwrap_or_default();
        (events, page["next_cursor"].take())
    }

    /// Every event written so far, page by page. A page waits for its events: a transaction
    /// still running anywhere on the server (another test's) holds newer events back a moment.
    async fn all_events(&self) -> Vec<Value> {
        let written = self
            .db
            .count("SELECT count(*) AS count FROM order_events")
            .await;
        let mut seen = Vec::new();
        let mut query = "?limit=7&wait=10".to_owned();
        while (seen.len() as i64) < written {
            let (events, next) = self.events(&query).await;
            assert!(
                !events.is_empty(),
                "{} of {written} events came",
                seen.len()
            );
            seen.extend(events);
            query = format!("?limit=7&wait=10&after={}", next.as_str().unwrap());
        }
        seen
    }
}

#[actix_web::test]
async fn every_create_and_move_writes_one_event_and_nothing_else_does() {
    let app = spawn_app().await;
    let order = app.created(&seed_order()).await;
    let id = order["id"].as_i64().unwrap();

    assert_eq!(app.set_status(id, "processing").await.status(), 200);
    assert_eq!(
        app.set_status(id, "processing").await.status(),
        200,
        "no-op"
    );
    assert_eq!(app.set_status(id, "pending").await.status(), 409, "refused");
    let invalid = app.create_order(&json!({"customer_name": ""})).await;
    assert_eq!(invalid.status(), 400);
    let keyed = || {
        app.client
            .post(app.url("/api/v1/orders"))
            .header("idempotency-key", "event-key")
            .json(&seed_order())
            .send()
    };
    assert_eq!(keyed().await.unwrap().status(), 201);
    let replay = keyed().await.unwrap();
    assert!(replay.headers().contains_key("idempotent-replayed"));

    let events = app.all_events().await;
    let summary: Vec<(&str, i64, Option<&str>, Option<&str>)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["data"]["order"]["id"].as_i64().unwrap(),
                e["data"]["from"].as_str(),
                e["data"]["to"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("order.created", id, None, None),
            (
                "order.status_changed",
                id,
                Some("pending"),
                Some("processing")
            ),
            ("order.created", id + 1, None, None),
        ],
        "one event per create and per move; no-op, refusal, invalid body and replay write none"
    );
    assert_eq!(
        events[0]["data"]["order"], order,
        "the order as the API showed it"
    );
    assert_eq!(events[1]["data"]["order"]["status"], "processing");
    assert_eq!(
        app.db
            .count("SELECT count(*) AS count FROM webhook_deliveries")
            .await,
        0,
        "no webhook URL, no deliveries"
    );
}

#[actix_web::test]
async fn the_feed_pages_filters_and_refuses_what_it_does_not_know() {
    let app = spawn_app().await;
    for _ in 0..3 {
        let id = app.created(&seed_order()).await["id"].as_i64().unwrap();
        app.set_status(id, "cancelled").await;
    }

    let all = app.all_events().await;
    assert_eq!(all.len(), 6);
    let (first, next) = app.events("?limit=4").await;
    let (rest, last) = app
        .events(&format!("?limit=4&after={}", next.as_str().unwrap()))
        .await;
    assert_eq!((first.len(), rest.len()), (4, 2));
    assert_eq!([first, rest.clone()].concat(), all, "pages join up");
    assert_eq!(
        last, rest[1]["cursor"],
        "next_cursor is the last event's cursor"
    );
    let (none, same) = app
        .events(&format!("?after={}", last.as_str().unwrap()))
        .await;
    assert!(none.is_empty());
    assert_eq!(
        same, last,
        "an empty page hands back the cursor it was given"
    );

    let (changes, _) = app.events("?type=order.status_changed").await;
    assert_eq!(changes.len(), 3);
    assert!(changes.iter().all(|e| e["type"] == "order.status_changed"));

    for (query, code) in [
        ("?after=soon", "invalid_cursor"),
        ("?limit=0", "invalid_limit"),
        ("?type=order.deleted", "validation_failed"),
        ("?wait=31", "validation_failed"),
        ("?since=1", "unknown_parameter"),
    ] {
        let response = app.get(&format!("/api/v1/events{query}")).await;
        error_body(response, 400, code).await;
    }
}

#[actix_web::test]
async fn a_waiting_request_is_answered_when_an_event_is_committed() {
    let app = spawn_app().await;

    let answered = long_poll_answered_after_a_create(&app, &app.address).await;

    println!(
        "long-poll answered {:.1} ms after the create's 201",
        answered.as_secs_f64() * 1000.0
    );
    assert!(
        answered < Duration::from_secs(5),
        "woken by the commit, not by the end of the 10 s wait ({answered:?})"
    );
}

#[actix_web::test]
async fn a_request_waiting_on_another_instance_is_answered_when_an_event_is_committed() {
    let app = spawn_app().await;
    let other = app.another_instance().await;

    let answered = long_poll_answered_after_a_create(&app, &other).await;

    println!(
        "long-poll on another instance answered {:.1} ms after the create's 201",
        answered.as_secs_f64() * 1000.0
    );
    assert!(
        answered < Duration::from_secs(5),
        "woken by the other instance's NOTIFY, not by the end of the 10 s wait ({answered:?})"
    );
}

/// Long-polls the feed on the instance at `base` (up to 10 s) while `app` creates an order
/// 300 ms later; checks that the answer is that order's event, and returns how long after the
/// create's `201` it came.
async fn long_poll_answered_after_a_create(app: &TestApp, base: &str) -> Duration {
    app.created(&seed_order()).await;
    let cursor = app.all_events().await[0]["cursor"]
        .as_str()
        .unwrap()
        .to_owned();

    let waiting = app
        .client
        .get(format!("{base}/api/v1/events?after={cursor}&wait=10"))
        .send();
    let create = async {
        actix_rt::time::sleep(Duration::from_millis(300)).await;
        let created = app.created(&seed_order()).await;
        (created, Instant::now())
    };
    let (response, (created, committed)) = futures_util::join!(waiting, create);
    let answered = committed.elapsed();

    let page: Value = response.unwrap().json().await.unwrap();
    assert_eq!(page["events"][0]["data"]["order"]["id"], created["id"]);
    answered
}

/// Reads `count` events from the stream starting at `last_event_id`; their (cursor, id).
async fn read_stream(
    app: &TestApp,
    last_event_id: Option<&str>,
    count: usize,
) -> Vec<(String, i64)> {
    let mut request = app.client.get(app.url("/api/v1/events/stream"));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let mut response = request.send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    let mut seen = Vec::new();
    while seen.len() < count {
        let chunk = actix_rt::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("the stream sends the next events")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let message: String = text.drain(..end + 2).collect();
            let field = |name: &str| {
                message
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .map(str::to_owned)
            };
            if let (Some(id), Some(data)) = (field("id: "), field("data: ")) {
                let event: Value = serde_json::from_str(&data).unwrap();
                assert_eq!(event["cursor"], id.as_str(), "id: is the event's cursor");
                seen.push((id, event["id"].as_i64().unwrap()));
            }
        }
    }
    // A client that leaves after `count` events, whatever else the last chunk held.
    seen.truncate(count);
    seen
}

#[actix_web::test]
async fn the_stream_resumes_after_a_disconnect_without_gaps_or_repeats() {
    let app = spawn_app().await;
    for _ in 0..5 {
        app.created(&seed_order()).await;
    }

    let first = read_stream(&app, None, 3).await;
    let more = async {
        for _ in 0..4 {
            app.created(&seed_order()).await;
        }
    };
    let (rest, ()) = futures_util::join!(read_stream(&app, Some(&first[2].0), 6), more);

    let ids: Vec<i64> = first.iter().chain(&rest).map(|(_, id)| *id).collect();
    let stored = app
        .db
        .count("SELECT count(*) AS count FROM order_events")
        .await;
    assert_eq!(stored, 9);
    assert_eq!(ids.len() as i64, stored, "every event, once");
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "no repeats: {ids:?}");
}

#[derive(QueryableByName)]
struct EventId {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Sequence numbers are handed out before commit. Writers here hold their transactions open
/// on purpose (a slow transaction took id 10 while id 11 committed), others roll back, while a
/// consumer pages as fast as it can: it must see every committed event exactly once, and each
/// order's events in the order of that order's history.
#[actix_web::test]
async fn a_consumer_never_misses_an_event_that_commits_late() {
    let app = spawn_app().await;
    let body = seed_order();
    let created = futures_util::future::join_all((0..10).map(|_| app.created(&body))).await;
    let orders: Vec<i64> = created.iter().map(|o| o["id"].as_i64().unwrap()).collect();
    let writing = std::cell::Cell::new(true);

    // Slow writers: events for existing orders, in transactions held open 0–150 ms; every
    // fifth rolls back.
    let slow_writers = futures_util::future::join_all((0..6).map(|writer| {
        let (app, orders) = (&app, &orders);
        async move {
            let mut conn = app.db.connect().await;
            for n in 0..25u64 {
                let order = orders[(writer * 25 + n as usize) % orders.len()];
                let hold = Duration::from_millis((n * 37 + writer as u64 * 11) % 150);
                let commit = n % 5 != 4;
                conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                    diesel::sql_query(
                        "INSERT INTO order_events (order_id, type) VALUES ($1, 'order.created')",
                    )
                    .bind::<BigInt, _>(order)
                    .execute(conn)
                    .await?;
                    actix_rt::time::sleep(hold).await;
                    if commit {
                        Ok(())
                    } else {
                        Err(diesel::result::Error::RollbackTransaction)
                    }
                })
                .await
                .or_else(|e| match e {
                    diesel::result::Error::RollbackTransaction => Ok(()),
                    other => Err(other),
                })
                .unwrap();
            }
        }
    }));
    // Fast writers through the API: creates and moves, in their own short transactions.
    let api_writers = futures_util::future::join_all((0..4).map(|_| async {
        for _ in 0..10 {
            let id = app.created(&seed_order()).await["id"].as_i64().unwrap();
            app.set_status(id, "processing").await;
            app.set_status(id, "completed").await;
        }
    }));
    let writers = async {
        futures_util::join!(slow_writers, api_writers);
        writing.set(false);
    };
    let consumer = async {
        let mut seen: Vec<Value> = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let done = !writing.get();
            let query = match &after {
                Some(cursor) => format!("?limit=10&after={cursor}"),
                None => "?limit=10".to_owned(),
            };
            let (events, next) = app.events(&query).await;
            pages += 1;
            if events.is_empty() && done {
                return (seen, pages);
            }
            after = next.as_str().map(str::to_owned);
            seen.extend(events);
        }
    };
    let ((), (seen, pages)) = futures_util::join!(writers, consumer);

    let mut conn = app.db.connect().await;
    let committed: HashSet<i64> = diesel::sql_query("SELECT id FROM order_events")
        .load::<EventId>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.id)
        .collect();
    let consumed: Vec<i64> = seen.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    let distinct: HashSet<i64> = consumed.iter().copied().collect();
    println!(
        "cannot-skip: {} events committed, {} consumed in {pages} pages, {} distinct",
        committed.len(),
        consumed.len(),
        distinct.len()
    );
    assert_eq!(distinct.len(), consumed.len(), "no event twice");
    let missed: Vec<&i64> = committed.difference(&distinct).collect();
    assert!(
        missed.is_empty(),
        "missed {} events: {missed:?}",
        missed.len()
    );
    assert_eq!(distinct, committed, "nothing that was not committed");

    // Each order the API writers made has its events in the order of its history: created,
    // then each move from the status the previous one left. (The slow writers' events are
    // about the first ten orders.)
    let mut last_status: HashMap<i64, String> = HashMap::new();
    let made_by_api =
        |event: &&Value| !orders.contains(&event["data"]["order"]["id"].as_i64().unwrap());
    for event in seen.iter().filter(made_by_api) {
        let order = event["data"]["order"]["id"].as_i64().unwrap();
        match event["type"].as_str().unwrap() {
            "order.created" => {
                assert!(
                    last_status.insert(order, "pending".into()).is_none(),
                    "created once"
                );
            }
            _ => {
                let from = event["data"]["from"].as_str().unwrap();
                assert_eq!(
                    last_status.get(&order).map(String::as_str),
                    Some(from),
                    "order {order}"
                );
                last_status.insert(order, event["data"]["to"].as_str().unwrap().into());
            }
        }
    }
}
