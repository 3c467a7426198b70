//! A create load whose clients send each order with an idempotency key and, when asked, retry
//! it through 503s, timeouts and refused connections; then every acknowledged order is read
//! back from the database and the run's orders are counted per key.

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::{json, Value};

/// How long a client keeps retrying one order before it gives up on it.
const RETRY_BUDGET: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub replays: AtomicU64,
    pub unanswered: AtomicU64,
    pub server_errors: AtomicU64,
}

impl Stats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// An order acknowledged with 201: its idempotency key and the id it was given.
pub struct Acked {
    pub key: String,
    pub id: i64,
    pub at: Instant,
}

/// One load run: `clients` clients creating orders on `base` until `duration` is over, with
/// keys `<prefix>-<client>-<n>`. With `retry`, a client that gets a 503, a timeout or no
/// connection retries the same order with the same key; without, it stops at the first
/// request that gets no answer (the server is gone).
pub struct Load<'a> {
    pub base: &'a str,
    pub prefix: &'a str,
    pub clients: usize,
    pub duration: Duration,
    pub retry: bool,
}

pub fn order_body(key: &str) -> Value {
    json!({
        "customer_name": format!("Load {key}"),
        "customer_email": format!("{key}@example.com"),
        "items": [
            {"product_name": "Load A", "quantity": 1, "unit_price": 99.99},
            {"product_name": "Load B", "quantity": 2, "unit_price": 49.99}
        ]
    })
}

impl Load<'_> {
    pub async fn run(&self, http: &reqwest::Client, stats: &Arc<Stats>) -> Vec<Acked> {
        let deadline = Instant::now() + self.duration;
        self.run_while(http, stats, || Instant::now() < deadline)
            .await
    }

    /// Like `run`, but a client starts each new order only if `more()` says so, instead of
    /// until `duration` is over: a shared budget of orders, or a flag that an event sets.
    pub async fn run_while(
        &self,
        http: &reqwest::Client,
        stats: &Arc<Stats>,
        more: impl Fn() -> bool,
    ) -> Vec<Acked> {
        let url = format!("{}/api/v1/orders", self.base);
        let url = &url;
        clients(self.clients, self.prefix, more, |key| async move {
            match create(http, url, &key, stats, self.retry).await {
                Answer::Created { id, .. } => ControlFlow::Continue(Some(Acked {
                    key,
                    id,
                    at: Instant::now(),
                })),
                Answer::Refused => ControlFlow::Continue(None),
                Answer::None => ControlFlow::Break(()),
            }
        })
        .await
    }
}

/// `count` clients, each running `each` on keys `<prefix>-<client>-<n>` while `more()` says so,
/// until `each` breaks; returns what `each` made.
pub async fn clients<T, F>(
    count: usize,
    prefix: &str,
    more: impl Fn() -> bool,
    each: impl Fn(String) -> F,
) -> Vec<T>
where
    F: Future<Output = ControlFlow<(), Option<T>>>,
{
    let (more, each) = (&more, &each);
    let clients = (0..count).map(|client| async move {
        let mut made = Vec::new();
        let mut n = 0;
        while more() {
            n += 1;
            match each(format!("{prefix}-{client}-{n}")).await {
                ControlFlow::Continue(one) => made.extend(one),
                ControlFlow::Break(()) => break,
            }
        }
        made
    });
    futures_util::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// What became of one order.
pub enum Answer {
    /// A 201, with its Consistency-Token when the instance has a read pool.
    Created {
        id: i64,
        token: Option<String>,
    },
    Refused,
    /// No answer at all: the server is gone.
    None,
}

/// Sends the order with key `key` to `url` (the orders collection), retrying it as `Load` says.
pub async fn create(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    stats: &Stats,
    retry: bool,
) -> Answer {
    let body = order_body(key);
    let give_up = Instant::now() + RETRY_BUDGET;
    loop {
        stats.requests.fetch_add(1, Ordering::Relaxed);
        let answer = http
            .post(url)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await;
        match answer {
            Ok(response) if response.status() == 201 => {
                if response.headers().contains_key("idempotent-replayed") {
                    stats.replays.fetch_add(1, Ordering::Relaxed);
                }
                let token = response
                    .headers()
                    .get("consistency-token")
                    .and_then(|t| t.to_str().ok())
                    .map(String::from);
                let order: Value = response.json().await.unwrap_or_default();
                return order["id"]
                    .as_i64()
                    .map_or(Answer::Refused, |id| Answer::Created { id, token });
            }
            Ok(response) if response.status().is_server_error() && response.status() != 503 => {
                stats.server_errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("load: unexpected {} for {key}", response.status());
                return Answer::Refused;
            }
            Ok(response) if !retry || response.status() != 503 => {
                stats.server_errors.fetch_add(
                    u64::from(response.status().is_server_error()),
                    Ordering::Relaxed,
                );
                return Answer::Refused;
            }
            Err(_) if !retry => {
                stats.unanswered.fetch_add(1, Ordering::Relaxed);
                return Answer::None;
            }
            _ if Instant::now() > give_up => return Answer::Refused,
            _ => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                actix_rt::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[derive(QueryableByName)]
struct OrderCheck {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    customer_email: String,
    #[diesel(sql_type = Text)]
    total_amount: String,
    #[diesel(sql_type = BigInt)]
    items: i64,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

pub struct Report {
    pub found: usize,
    pub lost: usize,
    pub wrong: usize,
    pub duplicates: i64,
    pub orders_without_ack: i64,
}

impl Report {
    pub fn check(&self) -> Result<(), String> {
        if self.lost > 0 || self.wrong > 0 || self.duplicates > 0 {
            return Err(format!(
                "lost {}, wrong contents {}, duplicated keys {}",
                self.lost, self.wrong, self.duplicates
            ));
        }
        if self.orders_without_ack > 0 {
            return Err(format!(
                "{} orders exist whose key was never acknowledged",
                self.orders_without_ack
            ));
        }
        Ok(())
    }
}

/// Reads every acknowledged order back and counts the orders whose keys start with `prefix`.
/// With `every_key_retried`, each key was retried until acknowledged, so an order without an
/// acknowledgement is an error; without, a request cut off may have been stored unacknowledged.
pub async fn verify(
    url: &str,
    prefix: &str,
    acked: &[Acked],
    every_key_retried: bool,
) -> Result<Report, String> {
    use diesel_async::RunQueryDsl;

    let mut conn = AsyncPgConnection::establish(url)
        .await
        .map_err(|e| e.to_string())?;
    let ids: Vec<i64> = acked.iter().map(|a| a.id).collect();
    let rows: Vec<OrderCheck> = diesel::sql_query(
        "SELECT o.id, o.customer_email, o.total_amount::text AS total_amount, count(i.id) AS items \
         FROM orders o JOIN order_items i ON i.order_id = o.id WHERE o.id = ANY($1) GROUP BY o.id",
    )
    .bind::<diesel::sql_types::Array<BigInt>, _>(&ids)
    .load(&mut conn)
    .await
    .map_err(|e| e.to_string())?;
    let wrong = acked
        .iter()
        .filter(|a| {
            !rows.iter().any(|r| {
                r.id == a.id
                    && r.customer_email == format!("{}@example.com", a.key)
                    && r.total_amount == "199.97"
                    && r.items == 2
            })
        })
        .count();
    let pattern = format!("{prefix}-%");
    let mut count = async |sql: &'static str| {
        diesel::sql_query(sql)
            .bind::<Text, _>(&pattern)
            .get_result::<Count>(&mut conn)
            .await
            .map(|c| c.n)
            .map_err(|e| e.to_string())
    };
    // Each key's email is unique, so more orders than distinct emails means a duplicate.
    let duplicates = count(
        "SELECT count(*) - count(DISTINCT customer_email) AS n FROM orders WHERE customer_email LIKE $1",
    )
    .await?;
    let orders = count("SELECT count(*) AS n FROM orders WHERE customer_email LIKE $1").await?;
    let keys = count("SELECT count(*) AS n FROM idempotency_keys WHERE key LIKE $1").await?;
    if orders != keys {
        return Err(format!("{orders} orders but {keys} idempotency keys"));
    }
    let unique_acked = acked
        .iter()
        .map(|a| &a.key)
        .collect::<std::collections::HashSet<_>>()
        .len();
    Ok(Report {
        found: rows.len(),
        lost: ids.len() - rows.len(),
        wrong: wrong.saturating_sub(ids.len() - rows.len()),
        duplicates,
        orders_without_ack: if every_key_retried {
            orders - unique_acked as i64
        } else {
            0
        },
    })
}
