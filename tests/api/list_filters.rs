//! List filters on `GET /api/v1/orders`: each alone and combined, always with pagination, and
//! each served by an index.

use std::collections::HashSet;

use diesel_async::RunQueryDsl;
use order_service::db::explain_orders_page;
use order_service::domain::{Cursor, FilterInput, ListFilter, PageLimit, PageRequest};
use serde_json::{json, Value};

use crate::helpers::{assert_newest_first, detail_fields, error_body, spawn_app, TestApp};

/// E-mail spellings of three customers: the filter must not care about case.
const EMAILS: [&str; 5] = [
    "alice@example.com",
    "ALICE@Example.com",
    "Bob@Example.com",
    "bob@example.com",
    "carol@example.com",
];
const STATUSES: [&str; 4] = ["pending", "processing", "completed", "cancelled"];
/// Orders are spread over this many hours of 2026-01-01, several per hour, so that pages
/// also break between orders created at the very same instant.
const HOURS: i64 = 8;

/// What the test knows about a stored order, to compute what each filter must return.
struct Known {
    id: i64,
    status: &'static str,
    email: String,
    hour: i64,
}

async fn seed(app: &TestApp, count: usize) -> Vec<Known> {
    let mut known = Vec::new();
    for n in 0..count {
        let email = EMAILS[n % EMAILS.len()];
        let status = STATUSES[n % STATUSES.len()];
        let order = app
            .created(&json!({
                "customer_name": format!("Customer {n}"),
                "customer_email": email,
                "items": [{"product_name": "A", "quantity": 1, "unit_price": 1.00}]
            }))
            .await;
        let id = order["id"].as_i64().unwrap();
        let path: &[&str] = match status {
            "processing" => &["processing"],
            "completed" => &["processing", "completed"],
            "cancelled" => &["cancelled"],
            _ => &[],
        };
        for step in path {
            assert_eq!(app.set_status(id, step).await.status(), 200);
        }
        known.push(Known {
            id,
            status,
            email: email.to_lowercase(),
            hour: id % HOURS,
        });
    }
    diesel::sql_query(format!(
        "UPDATE orders SET created_at = timestamptz '2026-01-01T00:00:00Z' + (id % {HOURS}) * interval '1 hour'"
    ))
    .execute(&mut app.db.connect().await)
    .await
    .unwrap();
    known
}

fn at_hour(hour: i64) -> String {
    format!("2026-01-01T{hour:02}:00:00Z")
}

#[actix_web::test]
async fn filters_combined_with_pagination_return_every_matching_order_exactly_once() {
    let app = spawn_app().await;
    let known = seed(&app, 40).await;

    type Rule = Box<dyn Fn(&Known) -> bool>;
    let cases: Vec<(String, Rule)> = vec![
        (String::new(), Box::new(|_| true)),
        ("status=pending".into(), Box::new(|o| o.status == "pending")),
        (
            "status=processing,completed".into(),
            Box::new(|o| ["processing", "completed"].contains(&o.status)),
        ),
        (
            "customer_email=ALICE@EXAMPLE.COM".into(),
            Box::new(|o| o.email == "alice@example.com"),
        ),
        (
            format!("created_after={}", at_hour(2)),
            Box::new(|o| o.hour > 2),
        ),
        (
            format!("created_before={}", at_hour(5)),
            Box::new(|o| o.hour < 5),
        ),
        (
            format!("created_after={}&created_before={}", at_hour(1), at_hour(6)),
            Box::new(|o| o.hour > 1 && o.hour < 6),
        ),
        (
            "status=pending,cancelled&customer_email=bob@example.com".into(),
            Box::new(|o| ["pending", "cancelled"].contains(&o.status) && o.email == "bob@example.com"),
        ),
        (
            format!(
                "status=completed&customer_email=Alice@example.com&created_after={}&created_before={}",
                at_hour(0),
                at_hour(7)
            ),
            Box::new(|o| {
                o.status == "completed" && o.email == "alice@example.com" && o.hour > 0 && o.hour < 7
            }),
        ),
    ];
    for (filters, rule) in &cases {
        let expected: HashSet<i64> = known.iter().filter(|o| rule(o)).map(|o| o.id).collect();
        assert!(
            filters.is_empty() || expected.len() < known.len(),
            "{filters}: the data leaves something out"
        );
        for limit in [1, 3, 100] {
            let seen = app.every_page(filters, limit).await;
            assert_newest_first(&seen, &format!("{filters}, limit {limit}"));
            let ids: Vec<i64> = seen.iter().map(|o| o["id"].as_i64().unwrap()).collect();
            let unique: HashSet<i64> = ids.iter().copied().collect();
            assert_eq!(
                unique.len(),
                ids.len(),
                "{filters}, limit {limit}: an order twice"
            );
            assert_eq!(
                unique, expected,
                "{filters}, limit {limit}: every matching order, and no other"
            );
        }
    }
}

#[actix_web::test]
async fn a_cursor_is_valid_only_with_the_filters_of_its_page() {
    let app = spawn_app().await;
    seed(&app, 12).await;
    let first: Value = app
        .list_orders("?limit=1&status=pending")
        .await
        .json()
        .await
        .unwrap();
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();

    for other in [
        "status=processing",
        "",
        "status=pending&customer_email=alice@example.com",
        "status=pending&created_after=2026-01-01T00:00:00Z",
    ] {
        let response = app
            .list_orders(&format!("?limit=1&{other}&cursor={cursor}"))
            .await;
        let error = error_body(response, 400, "invalid_cursor").await;
        assert!(
            error["error"].as_str().unwrap().contains("other filters"),
            "{other}: {error}"
        );
    }
    for same in ["status=pending", "status=pending,pending"] {
        let response = app
            .list_orders(&format!("?limit=1&{same}&cursor={cursor}"))
            .await;
        assert_eq!(
            response.status(),
            200,
            "{same}: the same filter, spelt otherwise"
        );
    }
    let seed_form = app
        .list_orders("?status=pending&cursor=2027-01-01T00:00:00Z_1")
        .await;
    assert_eq!(
        seed_form.status(),
        200,
        "the seed's plain cursor carries no filter and goes with any"
    );
}

#[actix_web::test]
async fn bad_filters_are_a_400_naming_each_one() {
    let app = spawn_app().await;
    let cases: &[(&str, &[&str])] = &[
        ("status=shipped", &["status"]),
        ("status=", &["status"]),
        ("status=pending,", &["status"]),
        ("customer_email=not-an-email", &["customer_email"]),
        ("created_after=yesterday", &["created_after"]),
        ("created_before=2026-01-01", &["created_before"]),
        // An unencoded `+` arrives as a space.
        (
            "created_after=2026-01-01T00:00:00+01:00",
            &["created_after"],
        ),
        (
            "created_after=2026-01-02T00:00:00Z&created_before=2026-01-01T00:00:00Z",
            &["created_before"],
        ),
        (
            "status=shipped&customer_email=x&created_after=soon",
            &["status", "customer_email", "created_after"],
        ),
    ];
    for (query, fields) in cases {
        let error = error_body(
            app.list_orders(&format!("?{query}")).await,
            400,
            "validation_failed",
        )
        .await;
        let named = detail_fields(&error);
        assert_eq!(&named, fields, "{query}");
    }
    let encoded = app
        .list_orders("?created_after=2026-01-01T00:00:00%2B01:00")
        .await;
    assert_eq!(encoded.status(), 200, "an offset with %2B is fine");
}

/// The plan PostgreSQL picks for a page's query must never read the whole orders table: with
/// 100,000 orders, a page with any filter (and a cursor) comes from an index.
#[actix_web::test]
async fn every_filter_is_served_by_an_index_on_100_000_orders() {
    let app = spawn_app().await;
    let mut conn = app.db.connect().await;
    // 70 % completed, 10 % each other status; 20,000 customers with 5 orders each; one order
    // every 5 minutes through 2026.
    for sql in [
        "INSERT INTO orders (customer_name, customer_email, total_amount, status, created_at, updated_at) \
         SELECT 'Customer ' || n, 'customer' || (n % 20000) || '@example.com', 10.00, \
                CASE WHEN n % 10 < 7 THEN 'completed' WHEN n % 10 = 7 THEN 'pending' \
                     WHEN n % 10 = 8 THEN 'processing' ELSE 'cancelled' END, \
                t, t \
         FROM generate_series(1, 100000) AS n, \
              LATERAL (SELECT timestamptz '2026-01-01T00:00:00Z' + n * interval '5 minutes' AS t) AS times",
        "ANALYZE orders",
    ] {
        diesel::sql_query(sql).execute(&mut conn).await.unwrap();
    }
    let cases: &[(&str, FilterInput<'_>)] = &[
        ("no filter", FilterInput::default()),
        (
            "status (one)",
            FilterInput {
                status: Some("pending"),
                ..FilterInput::default()
            },
        ),
        (
            "status (several)",
            FilterInput {
                status: Some("processing,cancelled"),
                ..FilterInput::default()
            },
        ),
        (
            "customer_email",
            FilterInput {
                customer_email: Some("Customer42@example.com"),
                ..FilterInput::default()
            },
        ),
        (
            "created_after",
            FilterInput {
                created_after: Some("2026-12-01T00:00:00Z"),
                ..FilterInput::default()
            },
        ),
        (
            "created_before",
            FilterInput {
                created_before: Some("2026-02-01T00:00:00Z"),
                ..FilterInput::default()
            },
        ),
        (
            "all four",
            FilterInput {
                status: Some("completed,cancelled"),
                customer_email: Some("customer42@example.com"),
                created_after: Some("2026-01-01T00:00:00Z"),
                created_before: Some("2026-12-31T00:00:00Z"),
            },
        ),
    ];
    for (name, input) in cases {
        let filter = ListFilter::parse(*input).unwrap();
        for cursor in [None, Some("2026-07-01T00:00:00Z_50000")] {
            let after = cursor.map(|c| Cursor::parse(c, &filter).unwrap());
            let page = PageRequest {
                limit: PageLimit::parse(Some("10")).unwrap(),
                filter: filter.clone(),
                after,
            };
            let plan = explain_orders_page(&mut conn, &page)
                .await
                .unwrap()
                .join("\n");
            println!("-- {name}, cursor {cursor:?}\n{plan}\n");
            assert!(
                !plan.contains("Seq Scan on orders"),
                "{name}, cursor {cursor:?}: reads the whole table\n{plan}"
            );
            assert!(plan.contains("Index"), "{name}: uses an index\n{plan}");
        }
    }
}
