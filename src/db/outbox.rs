//! The outbox's writing side: events go in the transaction of their change, and a commit
//! that wrote events notifies the listeners of `events`.

use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::StoreError;
use crate::domain::NewEvent;

/// The channel a transaction that wrote events notifies on commit.
pub(super) const EVENTS_CHANNEL: &str = "order_events";

/// Writes a status change's event in the caller's transaction, with one delivery row per
/// webhook URL, and notifies the listeners, which PostgreSQL does only if the transaction
/// commits. (Creates write theirs within the batch insert statement, `db::create`.)
pub async fn record_status_changed(
    conn: &mut AsyncPgConnection,
    event: &NewEvent,
    webhook_urls: &[String],
) -> Result<(), StoreError> {
    diesel::sql_query(
        "WITH written AS ( \
             INSERT INTO order_events (order_id, type, from_status, to_status, data) \
             VALUES ($1, 'order.status_changed', $2, $3, $4::json) \
             RETURNING id \
         ), deliveries AS ( \
             INSERT INTO webhook_deliveries (event_id, url) \
             SELECT written.id, urls.url FROM written CROSS JOIN unnest($5::text[]) AS urls (url) \
         ) \
         SELECT pg_notify($6, '')",
    )
    .bind::<BigInt, _>(event.order_id.get())
    .bind::<Text, _>(event.from.as_str())
    .bind::<Text, _>(event.to.as_str())
    .bind::<Text, _>(&event.order_json)
    .bind::<Array<Text>, _>(webhook_urls)
    .bind::<Text, _>(EVENTS_CHANNEL)
    .execute(conn)
    .await?;
    Ok(())
}
