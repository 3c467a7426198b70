//! The outbox's SQL: an event is written in the transaction of its change, with a delivery row
//! per webhook URL, and other instances' feed readers are woken by a `NOTIFY` on
//! `EVENTS_CHANNEL`. What follows a commit (waking readers, handing events to the dispatcher)
//! belongs to the caller: `actors::Relay`.

use std::time::Duration;

use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::models::stored_position;
use super::StoreError;
use crate::domain::{EventPosition, NewEvent};

/// The channel the listeners LISTEN on.
pub(super) const EVENTS_CHANNEL: &str = "order_events";

/// What the rows an event is written with must say about its deliveries.
pub struct DeliveryRows<'a> {
    pub(super) urls: &'a [String],
    /// How long after the write the first attempt belongs to the writer.
    pub(super) lease_micros: i64,
}

impl<'a> DeliveryRows<'a> {
    /// A delivery row per URL of `urls`, leased to the writer for `lease`; none without URLs.
    pub fn new(urls: &'a [String], lease: Duration) -> Self {
        Self {
            urls,
            lease_micros: micros(lease),
        }
    }
}

/// A duration in whole microseconds, as the SQL here takes them.
pub(super) fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// One `NOTIFY` to the other instances' listeners, committed without waiting for the disk: a
/// wake-up is only a hint, and the lock it takes is then held for a moment rather than a WAL
/// flush.
pub async fn notify_event_listeners(conn: &mut AsyncPgConnection) -> Result<(), StoreError> {
    diesel::sql_query("SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')")
        .bind::<Text, _>(EVENTS_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(QueryableByName)]
struct Written {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    tx: String,
    #[diesel(sql_type = Timestamptz)]
    occurred_at: chrono::DateTime<chrono::Utc>,
}

/// Writes a status change's event in the caller's transaction, with its delivery rows, and
/// answers where and when it was written. (Creates write theirs within the batch insert
/// statement, `db::create`.)
pub(super) async fn record_status_changed(
    conn: &mut AsyncPgConnection,
    event: &NewEvent,
    deliveries: &DeliveryRows<'_>,
) -> Result<(EventPosition, chrono::DateTime<chrono::Utc>), StoreError> {
    let written: Written = diesel::sql_query(
        "WITH written AS ( \
             INSERT INTO order_events (order_id, type, from_status, to_status, data, traceparent) \
             VALUES ($1, 'order.status_changed', $2, $3, $4::json, $7) \
             RETURNING id, tx_id, occurred_at \
         ), deliveries AS ( \
             INSERT INTO webhook_deliveries (event_id, url, attempts, next_attempt_at) \
             SELECT written.id, urls.url, 1, now() + $6::float8 * interval '1 microsecond' \
             FROM written CROSS JOIN unnest($5::text[]) AS urls (url) \
         ) \
         SELECT id, tx_id::text AS tx, occurred_at FROM written",
    )
    .bind::<BigInt, _>(event.order_id.get())
    .bind::<Text, _>(event.from.as_str())
    .bind::<Text, _>(event.to.as_str())
    .bind::<Text, _>(&event.order_json)
    .bind::<Array<Text>, _>(deliveries.urls)
    .bind::<BigInt, _>(deliveries.lease_micros)
    .bind::<Nullable<Text>, _>(event.traceparent.as_deref())
    .get_result(conn)
    .await?;
    Ok((
        stored_position(&written.tx, written.id)?,
        written.occurred_at,
    ))
}
