//! The outbox's writing side: events go in the transaction of their change, and a commit
//! that wrote events notifies the listeners of `events`.

use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::StoreError;
use crate::domain::NewEvent;

/// The channel a transaction that wrote events notifies on commit.
pub(super) const EVENTS_CHANNEL: &str = "order_events";

/// Writes status-change `events` in the caller's transaction, with one delivery row per event
/// and webhook URL, and notifies the listeners, which PostgreSQL does only if the transaction
/// commits. One statement, however many events. (Creates write theirs within the batch insert
/// statement, `db::create`.)
pub async fn record_events(
    conn: &mut AsyncPgConnection,
    events: &[NewEvent],
    webhook_urls: &[String],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let (mut order_ids, mut froms, mut tos, mut data) = (
        Vec::with_capacity(events.len()),
        Vec::with_capacity(events.len()),
        Vec::with_capacity(events.len()),
        Vec::with_capacity(events.len()),
    );
    for event in events {
        order_ids.push(event.order_id.get());
        froms.push(event.from.as_str());
        tos.push(event.to.as_str());
        data.push(event.order_json.as_str());
    }
    diesel::sql_query(
        "WITH written AS ( \
             INSERT INTO order_events (order_id, type, from_status, to_status, data) \
             SELECT order_id, 'order.status_changed', from_status, to_status, data::json \
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) \
                  AS e (order_id, from_status, to_status, data) \
             RETURNING id \
         ), deliveries AS ( \
             INSERT INTO webhook_deliveries (event_id, url) \
             SELECT written.id, urls.url FROM written CROSS JOIN unnest($5::text[]) AS urls (url) \
         ) \
         SELECT pg_notify($6, '')",
    )
    .bind::<Array<BigInt>, _>(order_ids)
    .bind::<Array<Text>, _>(froms)
    .bind::<Array<Text>, _>(tos)
    .bind::<Array<Text>, _>(data)
    .bind::<Array<Text>, _>(webhook_urls)
    .bind::<Text, _>(EVENTS_CHANNEL)
    .execute(conn)
    .await?;
    Ok(())
}
