//! The event feed: reading events in an order no late commit can break, and the connection that
//! listens for commits (`EventListener`; `actors::Relay` wakes the waiting readers). Events are
//! written by `outbox`, in the transactions of their changes.
//!
//! Plain SQL: the transaction id column (`xid8`) has no diesel type, and the feed's condition
//! is PostgreSQL's snapshot functions.

use std::collections::HashMap;
use std::time::Duration;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz, Untyped};
use diesel::{QueryResult, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use serde_json::value::RawValue;

use super::models::{parse_status, stored_position};
use super::outbox::EVENTS_CHANNEL;
use super::queries::orders_by_id;
use super::{ConnectOptions, StoreError};
use crate::domain::{
    Event, EventData, EventId, EventPosition, EventType, EventsRequest, Order, OrderId, OrderStatus,
};

/// One page of the feed.
#[derive(Debug)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// With an empty page read for a waiting reader: whether committed events wait behind a
    /// transaction that is still running, and will be handed out once it ends.
    pub held_back: bool,
}

#[derive(QueryableByName)]
pub(super) struct EventRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    tx: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Nullable<Text>)]
    from_status: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    to_status: Option<String>,
    /// `None` for `order.created`: see `into_events`.
    #[diesel(sql_type = Nullable<Text>)]
    data: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    occurred_at: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = BigInt)]
    order_id: i64,
}

#[derive(QueryableByName)]
struct Flag {
    #[diesel(sql_type = Bool)]
    value: bool,
}

/// Events after `request.after`, oldest first by `(tx_id, id)`, from transactions older than
/// every transaction still running: those can no longer be joined by an event that would sort
/// before them, so a reader that has seen up to a position never misses anything behind it.
/// `waiting`: whether to find out, when there are none, if some are held back.
pub async fn events_page(
    conn: &mut AsyncPgConnection,
    request: &EventsRequest,
    waiting: bool,
) -> Result<EventPage, StoreError> {
    let rows: Vec<EventRow> = FeedPage::of(request).load(conn).await?;
    let events = into_events(conn, rows).await?;
    let held_back = waiting
        && events.is_empty()
        && events_behind_running_transactions(conn, request.after).await?;
    Ok(EventPage { events, held_back })
}

/// The feed's page query. Not `diesel::sql_query`, whose statements diesel never caches: each
/// page was parsed and planned afresh, a third of the database's time for a page. This one is
/// prepared once per connection and per limit.
struct FeedPage<'a> {
    after_tx: String,
    after_id: i64,
    types: Option<Vec<&'a str>>,
    limit: usize,
}

impl<'a> FeedPage<'a> {
    fn of(request: &'a EventsRequest) -> Self {
        Self {
            after_tx: request.after.tx.to_string(),
            after_id: request.after.id,
            types: (!request.types.is_empty())
                .then(|| request.types.iter().map(|kind| kind.as_str()).collect()),
            limit: request.limit.get(),
        }
    }
}

impl QueryFragment<Pg> for FeedPage<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "SELECT id, tx_id::text AS tx, type AS kind, from_status, to_status, \
                    data::text AS data, occurred_at, order_id \
             FROM order_events \
             WHERE (tx_id, id) > (",
        );
        out.push_bind_param::<Text, _>(&self.after_tx)?;
        out.push_sql("::xid8, ");
        out.push_bind_param::<BigInt, _>(&self.after_id)?;
        out.push_sql(") AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) AND (");
        out.push_bind_param::<Nullable<Array<Text>>, _>(&self.types)?;
        out.push_sql("::text[] IS NULL OR type = ANY (");
        out.push_bind_param::<Nullable<Array<Text>>, _>(&self.types)?;
        // The limit is written, not bound: costed for `LIMIT $n`, PostgreSQL's generic plan
        // reads a tenth of the table, never beats a custom plan, and each page is planned.
        out.push_sql(&format!(")) ORDER BY tx_id, id LIMIT {}", self.limit));
        Ok(())
    }
}

impl Query for FeedPage<'_> {
    type SqlType = Untyped;
}

/// Not a static id: diesel then caches the prepared statement by its text.
impl QueryId for FeedPage<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

async fn events_behind_running_transactions(
    conn: &mut AsyncPgConnection,
    after: EventPosition,
) -> Result<bool, StoreError> {
    let flag: Flag = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM order_events WHERE (tx_id, id) > ($1::xid8, $2)) AS value",
    )
    .bind::<Text, _>(after.tx.to_string())
    .bind::<BigInt, _>(after.id)
    .get_result(conn)
    .await?;
    Ok(flag.value)
}

/// Turns rows into events. An `order.created` row stores no copy of the order: what the API
/// answered for a create is fixed by the order's own rows (it is `pending`, last changed when
/// created, and names, items and amounts never change), so it is read back from them here
/// instead of being written a second time on the busiest path of the service.
pub(super) async fn into_events(
    conn: &mut AsyncPgConnection,
    rows: Vec<EventRow>,
) -> Result<Vec<Event>, StoreError> {
    let created: Vec<OrderId> = rows
        .iter()
        .filter(|row| row.data.is_none())
        .map(|row| OrderId::from_stored(row.order_id))
        .collect();
    let as_created: HashMap<i64, Order> = orders_by_id(conn, &created)
        .await?
        .into_iter()
        .map(|mut order| {
            order.status = OrderStatus::Pending;
            order.updated_at = order.created_at;
            (order.id.get(), order)
        })
        .collect();
    rows.into_iter()
        .map(|row| match row.data {
            Some(_) => row.into_event(),
            None => {
                let order = as_created.get(&row.order_id).ok_or_else(|| {
                    StoreError::Impossible(format!(
                        "event {}: order {} is gone",
                        row.id, row.order_id
                    ))
                })?;
                Event::created(row.position()?, order, None).map_err(|e| {
                    StoreError::Impossible(format!("event {}: order as JSON: {e}", row.id))
                })
            }
        })
        .collect()
}

impl EventRow {
    fn impossible(&self, what: String) -> StoreError {
        StoreError::Impossible(format!("event {}: {what}", self.id))
    }

    fn position(&self) -> Result<EventPosition, StoreError> {
        stored_position(&self.tx, self.id)
    }

    /// A row that holds its order's JSON (`data`).
    fn into_event(self) -> Result<Event, StoreError> {
        let cursor = self.position()?;
        let kind = EventType::parse(&self.kind).map_err(|e| self.impossible(e))?;
        let from = self.from_status.as_deref().map(parse_status).transpose()?;
        let to = self.to_status.as_deref().map(parse_status).transpose()?;
        let data = self.data.ok_or_else(|| {
            StoreError::Impossible(format!("event {}: no copy of its order", self.id))
        })?;
        let order = RawValue::from_string(data)
            .map_err(|e| StoreError::Impossible(format!("event {}: data: {e}", self.id)))?;
        Ok(Event {
            id: EventId::from_stored(self.id),
            kind,
            timestamp: self.occurred_at,
            cursor,
            data: EventData { order, from, to },
            // Only the webhooks need it: a claim reads it (`claim_deliveries`).
            traceparent: None,
        })
    }
}

/// Deletes events older than `age`, and their deliveries; returns how many events went.
pub async fn purge_events(
    conn: &mut AsyncPgConnection,
    age: Duration,
) -> Result<usize, StoreError> {
    let cutoff = chrono::Utc::now() - age;
    Ok(
        diesel::sql_query("DELETE FROM order_events WHERE occurred_at < $1")
            .bind::<Timestamptz, _>(cutoff)
            .execute(conn)
            .await?,
    )
}

/// A connection LISTENing for the commits of every instance (`outbox::notify_event_listeners`).
pub struct EventListener {
    conn: AsyncPgConnection,
}

impl EventListener {
    /// Connects and starts listening.
    pub async fn start(options: &ConnectOptions) -> Result<Self, StoreError> {
        let mut conn = options.connect().await?;
        diesel::sql_query(format!("LISTEN {EVENTS_CHANNEL}"))
            .execute(&mut conn)
            .await?;
        Ok(Self { conn })
    }

    /// Waits for the next notification; an error once the connection has ended.
    pub async fn notified(&mut self) -> Result<(), StoreError> {
        // The stream reads the connection's queue of notifications, so one made per call
        // misses none.
        match std::pin::pin!(self.conn.notifications_stream())
            .next()
            .await
        {
            Some(notification) => notification.map(drop).map_err(StoreError::from),
            None => Err(StoreError::Unavailable(
                "the listening connection closed".into(),
            )),
        }
    }
}
