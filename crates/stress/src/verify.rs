//! After a create run: every acknowledged order is read back through the API and compared with
//! what was sent, and the orders table must have grown by exactly the number of 201 answers.

use std::fmt;

use futures_util::{stream, StreamExt};
use tokio_postgres::NoTls;

use crate::api::Api;
use crate::order;

/// Read-backs in flight: enough to be quick, few enough not to be a second stress test.
const READ_BACK_CONCURRENCY: usize = 32;
/// Problems printed in full; the rest are only counted.
const SHOWN_PROBLEMS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Yes,
    No,
    Skipped,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Yes => "yes",
            Verdict::No => "no",
            Verdict::Skipped => "skipped",
        })
    }
}

/// The count check's starting point, taken before the load.
pub struct CountBefore<'a> {
    pub database_url: &'a str,
    pub orders: i64,
}

/// `SELECT count(*) FROM orders`, in plain SQL: the client knows the table's name, not the
/// server's code. Without TLS, as `sslmode=prefer` falls back to; `require` is refused.
pub async fn count_orders(database_url: &str) -> Result<i64, String> {
    let (client, connection) = tokio_postgres::connect(database_url, NoTls)
        .await
        .map_err(|e| format!("cannot connect to the database for the count check: {e}"))?;
    // The connection does the talking; it ends when `client` is dropped.
    tokio::spawn(connection);
    let row = client
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .map_err(|e| format!("cannot count the orders: {e}"))?;
    row.try_get(0)
        .map_err(|e| format!("cannot read the orders' count: {e}"))
}

/// Checks the orders acknowledged with 201 (`(n, id)`), prints one line with the figures and
/// the first problems, and says whether everything was stored as sent.
pub async fn verify(api: &Api, acked: &[(u64, i64)], before: Option<CountBefore<'_>>) -> Verdict {
    // Counted first, while the read-back has not yet had time to overlap any other writer.
    let count = match before {
        Some(before) => Some(count_check(before, acked.len()).await),
        None => None,
    };
    let problems = read_back(api, acked).await;
    let good = acked.len() - problems.len();
    let (count_line, count_agrees) = match count {
        Some(Ok(line)) => (line, true),
        Some(Err(problem)) => (problem, false),
        None => (
            "count check skipped (no --database-url or DATABASE_URL)".to_owned(),
            true,
        ),
    };
    println!(
        "verify:     read back {good}/{} as sent, {count_line}",
        acked.len()
    );
    for problem in problems.iter().take(SHOWN_PROBLEMS) {
        println!("            {problem}");
    }
    if problems.len() > SHOWN_PROBLEMS {
        println!("            … and {} more", problems.len() - SHOWN_PROBLEMS);
    }
    if problems.is_empty() && count_agrees {
        Verdict::Yes
    } else {
        Verdict::No
    }
}

/// The problems found reading back every acknowledged order.
async fn read_back(api: &Api, acked: &[(u64, i64)]) -> Vec<String> {
    stream::iter(acked)
        .map(|&(n, id)| async move {
            let stored = api.fetch_order(id).await?;
            order::check(n, &stored)
        })
        .buffer_unordered(READ_BACK_CONCURRENCY)
        .filter_map(|checked| async move { checked.err() })
        .collect()
        .await
}

/// "count grew by N = 201s" when the table grew by exactly the number of 201s, else why not.
async fn count_check(before: CountBefore<'_>, created: usize) -> Result<String, String> {
    let after = count_orders(before.database_url).await?;
    let grew = after - before.orders;
    if i64::try_from(created) == Ok(grew) {
        Ok(format!("count grew by {grew} = 201s"))
    } else {
        // A request that timed out may still have been stored, so growth can exceed the 201s.
        Err(format!(
            "count grew by {grew} ≠ {created} 201s ({} → {after}; timed-out requests or \
             another writer?)",
            before.orders
        ))
    }
}
