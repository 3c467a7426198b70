//! Webhook deliveries: claiming the due ones, so that the dispatchers of several instances share
//! them without sending one twice, and recording how each attempt went (a failed one in
//! `webhook_failed_attempts`, kept with its delivery).
//!
//! A claim is a lease, not a lock held while sending: the claiming statement moves the row's
//! `next_attempt_at` past the end of the attempt and commits at once, so no connection waits on
//! a receiver, and a claim whose instance died comes back by itself when the lease runs out.

use std::time::Duration;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamptz};
use diesel::{QueryResult, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::events::{into_events, EventRow};
use super::outbox::micros;
use super::{ConnectOptions, StoreError};
use crate::domain::{DeliveryReport, DeliveryState, Event, EventId, FailedAttempt};

/// A delivery claimed for one attempt.
#[derive(Debug)]
pub struct DueDelivery {
    pub event: Event,
    pub url: String,
    /// This attempt's number, the first being 1.
    pub attempt: u32,
}

/// A connection of the webhook dispatcher's own.
///
/// Its prepared statements are planned for their parameters every time. The connection lives
/// as long as the instance, and `webhook_deliveries` grows from nothing to millions of rows
/// meanwhile: a generic plan cached while it was small (a sequential scan for the outcomes'
/// statement) would still be used once it is large, where a fresh plan looks up the indexes
/// (docs/PERFORMANCE.md has the figures).
///
/// Its commits wait for the disk like any other: outcomes are recorded together, so the wait
/// costs the creates nothing measurable, and a PostgreSQL crash cannot lose a delivered mark
/// (which would send that delivery again).
pub async fn connect_dispatcher(
    database: &ConnectOptions,
) -> Result<AsyncPgConnection, StoreError> {
    let mut conn = database.connect().await?;
    diesel::sql_query("SET plan_cache_mode = force_custom_plan")
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = Text)]
    url: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(embed)]
    event: EventRow,
    #[diesel(sql_type = Nullable<Text>)]
    traceparent: Option<String>,
}

#[derive(QueryableByName)]
struct Millis {
    #[diesel(sql_type = Nullable<BigInt>)]
    value: Option<i64>,
}

/// Claims up to `limit` due deliveries, oldest due first, for `lease`: until then no dispatcher
/// claims them again. Rows another dispatcher is claiming are skipped, not waited for.
pub async fn claim_deliveries(
    conn: &mut AsyncPgConnection,
    limit: usize,
    lease: Duration,
) -> Result<Vec<DueDelivery>, StoreError> {
    let rows: Vec<ClaimedRow> = diesel::sql_query(
        "WITH due AS ( \
             SELECT event_id, url FROM webhook_deliveries \
             WHERE state = 'pending' AND next_attempt_at <= now() \
             ORDER BY next_attempt_at \
             LIMIT $1 \
             FOR UPDATE SKIP LOCKED \
         ), claimed AS ( \
             UPDATE webhook_deliveries AS d \
             SET attempts = d.attempts + 1, \
                 next_attempt_at = now() + $2::float8 * interval '1 microsecond' \
             FROM due WHERE d.event_id = due.event_id AND d.url = due.url \
             RETURNING d.event_id, d.url, d.attempts \
         ) \
         SELECT claimed.url, claimed.attempts, e.id, e.tx_id::text AS tx, e.type AS kind, \
                e.from_status, e.to_status, e.data::text AS data, e.occurred_at, e.order_id, \
                e.traceparent \
         FROM claimed JOIN order_events AS e ON e.id = claimed.event_id",
    )
    .bind::<BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
    .bind::<BigInt, _>(micros(lease))
    .load(conn)
    .await?;
    let (claims, events): (Vec<_>, Vec<EventRow>) = rows
        .into_iter()
        .map(|row| ((row.url, row.attempts, row.traceparent), row.event))
        .unzip();
    let events = into_events(conn, events).await?;
    claims
        .into_iter()
        .zip(events)
        .map(|((url, attempts, traceparent), mut event)| {
            event.traceparent = traceparent;
            let attempt = u32::try_from(attempts).map_err(|_| {
                StoreError::Impossible(format!("delivery with {attempts} attempts"))
            })?;
            Ok(DueDelivery {
                event,
                url,
                attempt,
            })
        })
        .collect()
}

/// Marks deliveries, each an event id and a URL, delivered.
pub async fn record_delivered(
    conn: &mut AsyncPgConnection,
    delivered: &[(EventId, &str)],
) -> Result<(), StoreError> {
    if delivered.is_empty() {
        return Ok(());
    }
    let (event_ids, urls) = delivered
        .iter()
        .map(|&(event_id, url)| (event_id.get(), url))
        .unzip();
    MarkDelivered { event_ids, urls }.execute(conn).await?;
    Ok(())
}

/// The statement that marks deliveries delivered, all those a dispatcher has seen answered
/// since it last recorded in one: it runs for nearly every delivery, so unlike
/// `diesel::sql_query` it is prepared once per connection, and its text is the same for any
/// number of deliveries.
struct MarkDelivered<'a> {
    event_ids: Vec<i64>,
    urls: Vec<&'a str>,
}

impl QueryFragment<Pg> for MarkDelivered<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "UPDATE webhook_deliveries AS d \
             SET state = 'delivered', delivered_at = now() \
             FROM unnest(",
        );
        out.push_bind_param::<Array<BigInt>, _>(&self.event_ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.urls)?;
        out.push_sql(
            ") AS delivered (event_id, url) \
             WHERE d.event_id = delivered.event_id AND d.url = delivered.url \
               AND d.state = 'pending'",
        );
        Ok(())
    }
}

/// Not a static id: diesel then caches the prepared statement by its text.
impl QueryId for MarkDelivered<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// Records why attempt `attempt` failed, and schedules the next one after `retry_in`, or marks
/// the delivery failed when there is none. Does nothing if the delivery was claimed again
/// meanwhile (this attempt outlived its lease): that claim's outcome is the one to keep.
/// Recording the same failure again is harmless (it only moves the retry), as it must be: a
/// dispatcher that lost its connection in the middle of a batch of outcomes, or before the
/// commit's answer came back, records the whole batch again.
pub async fn record_failed_attempt(
    conn: &mut AsyncPgConnection,
    event_id: EventId,
    url: &str,
    attempt: u32,
    error: &str,
    retry_in: Option<Duration>,
) -> Result<(), StoreError> {
    diesel::sql_query(
        "WITH failed AS ( \
             UPDATE webhook_deliveries \
             SET state = CASE WHEN $5::bigint IS NULL THEN 'failed' ELSE 'pending' END, \
                 next_attempt_at = CASE WHEN $5::bigint IS NULL THEN next_attempt_at \
                                        ELSE now() + $5::float8 * interval '1 microsecond' END \
             WHERE event_id = $1 AND url = $2 AND attempts = $3 AND state = 'pending' \
             RETURNING event_id, url, attempts \
         ) \
         INSERT INTO webhook_failed_attempts (event_id, url, attempt, error) \
         SELECT event_id, url, attempts, $4 FROM failed \
         ON CONFLICT DO NOTHING",
    )
    .bind::<BigInt, _>(event_id.get())
    .bind::<Text, _>(url)
    .bind::<Integer, _>(i32::try_from(attempt).unwrap_or(i32::MAX))
    .bind::<Text, _>(error)
    .bind::<Nullable<BigInt>, _>(retry_in.map(micros))
    .execute(conn)
    .await?;
    Ok(())
}

/// How soon the next pending delivery falls due (zero when one is due already); `None` when
/// nothing is pending.
pub async fn next_delivery_due_in(
    conn: &mut AsyncPgConnection,
) -> Result<Option<Duration>, StoreError> {
    let due: Millis = diesel::sql_query(
        "SELECT (extract(epoch FROM min(next_attempt_at) - clock_timestamp()) * 1000)::bigint \
                AS value \
         FROM webhook_deliveries WHERE state = 'pending'",
    )
    .get_result(conn)
    .await?;
    Ok(due
        .value
        .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))))
}

#[derive(QueryableByName)]
struct Seconds {
    #[diesel(sql_type = Nullable<diesel::sql_types::Double>)]
    value: Option<f64>,
}

/// How long ago the event of the oldest pending delivery happened; `None` when none is pending.
/// Reads every pending delivery (a backlog grows only while receivers fail).
pub async fn oldest_pending_delivery_age(
    conn: &mut AsyncPgConnection,
) -> Result<Option<Duration>, StoreError> {
    let age: Seconds = diesel::sql_query(
        "SELECT extract(epoch FROM clock_timestamp() - min(e.occurred_at))::float8 AS value \
         FROM webhook_deliveries d JOIN order_events e ON e.id = d.event_id \
         WHERE d.state = 'pending'",
    )
    .get_result(conn)
    .await?;
    Ok(age.value.map(|secs| Duration::from_secs_f64(secs.max(0.0))))
}

#[derive(QueryableByName)]
struct DeliveryRow {
    #[diesel(sql_type = Text)]
    url: String,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Timestamptz)]
    next_attempt_at: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    delivered_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(QueryableByName)]
struct FailedAttemptRow {
    #[diesel(sql_type = Text)]
    url: String,
    #[diesel(sql_type = Integer)]
    attempt: i32,
    #[diesel(sql_type = Timestamptz)]
    failed_at: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = Text)]
    error: String,
}

/// How the deliveries of event `event_id` stand, one per webhook URL, each with its failed
/// attempts; `None` when there is no such event.
pub async fn event_deliveries(
    conn: &mut AsyncPgConnection,
    event_id: EventId,
) -> Result<Option<Vec<DeliveryReport>>, StoreError> {
    // The three reads are pipelined (none waits for another's answer): one round trip.
    let shared: &AsyncPgConnection = conn;
    let event =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM order_events WHERE id = $1) AS value")
            .bind::<BigInt, _>(event_id.get())
            .get_result::<Exists>(&mut &*shared);
    let rows = diesel::sql_query(
        "SELECT url, state, attempts, next_attempt_at, delivered_at \
         FROM webhook_deliveries WHERE event_id = $1 ORDER BY url",
    )
    .bind::<BigInt, _>(event_id.get())
    .load::<DeliveryRow>(&mut &*shared);
    let failures = diesel::sql_query(
        "SELECT url, attempt, failed_at, error \
         FROM webhook_failed_attempts WHERE event_id = $1 ORDER BY url, attempt",
    )
    .bind::<BigInt, _>(event_id.get())
    .load::<FailedAttemptRow>(&mut &*shared);
    let (event, rows, failures) = futures_util::join!(event, rows, failures);
    if !event?.value {
        return Ok(None);
    }
    let (rows, failures) = (rows?, failures?);
    let mut failures = failures.into_iter().peekable();
    rows.into_iter()
        .map(|row| {
            let state = DeliveryState::parse(&row.state)
                .ok_or_else(|| StoreError::Impossible(format!("delivery state {:?}", row.state)))?;
            // Both are ordered by URL: this delivery's failures are the next ones.
            let mut failed_attempts = Vec::new();
            while let Some(failure) = failures.next_if(|failure| failure.url == row.url) {
                failed_attempts.push(FailedAttempt {
                    attempt: u32::try_from(failure.attempt).unwrap_or(0),
                    failed_at: failure.failed_at,
                    error: failure.error,
                });
            }
            Ok(DeliveryReport::new(
                row.url,
                state,
                u32::try_from(row.attempts).unwrap_or(0),
                row.next_attempt_at,
                row.delivered_at,
                failed_attempts,
            ))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    value: bool,
}
