//! Every query the service runs. Each takes the connection it works on; the caller decides
//! where connections come from.

use std::collections::HashMap;
use std::time::Instant;

use diesel::dsl::{exists, sql, AsSelect, SqlTypeOf};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::models::{parse_status, HistoryRow, ItemRow, NewHistoryRow, OrderRow};
use super::outbox::{record_status_changed, DeliveryRows};
use super::schema::{idempotency_keys, order_items, order_status_history, orders};
use super::StoreError;
use crate::domain::{
    Cursor, EventPosition, NewEvent, Order, OrderId, OrderStatus, OrderVersion, PageRequest,
    Precondition, StatusChange, Transition, VersionMismatch,
};

#[cfg(feature = "explain")]
mod explain;
#[cfg(feature = "explain")]
pub use explain::explain_orders_page;

/// One page of the newest-first order list.
#[derive(Debug)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

pub async fn ping(conn: &mut AsyncPgConnection) -> Result<(), StoreError> {
    diesel::sql_query("SELECT 1").execute(conn).await?;
    Ok(())
}

/// Deletes idempotency keys older than `age`; returns how many went.
pub async fn purge_idempotency_keys(
    conn: &mut AsyncPgConnection,
    age: std::time::Duration,
) -> Result<usize, StoreError> {
    let cutoff = chrono::Utc::now() - age;
    Ok(
        diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.lt(cutoff)))
            .execute(conn)
            .await?,
    )
}

/// Groups item rows by order, each group in id order.
fn group_items(mut items: Vec<ItemRow>) -> HashMap<i64, Vec<ItemRow>> {
    items.sort_by_key(|item| (item.order_id, item.id));
    let mut by_order: HashMap<i64, Vec<ItemRow>> = HashMap::new();
    for item in items {
        by_order.entry(item.order_id).or_default().push(item);
    }
    by_order
}

async fn record_status(
    conn: &mut AsyncPgConnection,
    order_id: i64,
    from: Option<OrderStatus>,
    to: OrderStatus,
) -> Result<(), StoreError> {
    diesel::insert_into(order_status_history::table)
        .values(NewHistoryRow {
            order_id,
            from_status: from.map(OrderStatus::as_str),
            to_status: to.as_str(),
        })
        .execute(conn)
        .await?;
    Ok(())
}

// The reads take the connection shared: diesel-async pipelines the statements of futures made
// on one connection, so a read and the statements around it (the replica's standing, for one)
// go in one round trip.

pub async fn find_order(
    conn: &AsyncPgConnection,
    id: OrderId,
) -> Result<Option<Order>, StoreError> {
    // The items query does not wait for the order's row: the two are pipelined, so a read
    // costs one round trip to PostgreSQL instead of two. `get_result`, not `first`: the key
    // finds one row at most, and the `LIMIT $2` that `first` binds would keep PostgreSQL on
    // custom plans, planning every read afresh.
    let row = orders::table
        .find(id.get())
        .select(OrderRow::as_select())
        .get_result(&mut &*conn);
    let items = order_items::table
        .filter(order_items::order_id.eq(id.get()))
        .order(order_items::id)
        .select(ItemRow::as_select())
        .load(&mut &*conn);
    let (row, items) = futures_util::join!(row, items);
    match row.optional()? {
        Some(row) => row.into_order(items?).map(Some),
        None => Ok(None),
    }
}

diesel::define_sql_function!(fn lower(text: Text) -> Text);

type PageQuery<'a> = orders::BoxedQuery<'a, Pg, SqlTypeOf<AsSelect<OrderRow, Pg>>>;

/// The orders of one page and one more (which tells whether another page follows): newest
/// first by `(created_at, id)`, matching the filter, strictly after the cursor. Each filter is
/// served by an index (docs/LIST_FILTERS.md shows the plans), never by reading the whole table.
fn page_query(page: &PageRequest) -> PageQuery<'_> {
    let filter = &page.filter;
    let mut query = orders::table
        .select(OrderRow::as_select())
        .order((orders::created_at.desc(), orders::id.desc()))
        .limit(page.limit.get() as i64 + 1)
        .into_boxed();
    match filter.statuses.as_slice() {
        [] => {}
        // `=` rather than `= ANY`: only then does PostgreSQL 15 read the (status, created_at
        // DESC, id DESC) index in list order, so a rare status costs `limit` rows, not a sort.
        [status] => query = query.filter(orders::status.eq(status.as_str())),
        statuses => {
            query = query.filter(orders::status.eq_any(statuses.iter().map(|s| s.as_str())))
        }
    }
    if let Some(email) = &filter.customer_email {
        query = query.filter(lower(orders::customer_email).eq(lower(email.as_str())));
    }
    if let Some(after) = filter.created_after {
        query = query.filter(orders::created_at.gt(after));
    }
    if let Some(before) = filter.created_before {
        query = query.filter(orders::created_at.lt(before));
    }
    if let Some(after) = page.after {
        // A row comparison, so that an index on (…, created_at DESC, id DESC) serves it as one range.
        query = query.filter(
            sql::<Bool>("(orders.created_at, orders.id) < (")
                .bind::<Timestamptz, _>(after.created_at)
                .sql(", ")
                .bind::<BigInt, _>(after.id.get())
                .sql(")"),
        );
    }
    query
}

/// One page of the list; the items of the whole page come in one query.
pub async fn orders_page(
    conn: &AsyncPgConnection,
    page: &PageRequest,
) -> Result<OrderPage, StoreError> {
    let limit = page.limit.get();
    let mut rows: Vec<OrderRow> = page_query(page).load(&mut &*conn).await?;
    let has_more = rows.len() > limit;
    rows.truncate(limit);

    let next = match rows.last() {
        Some(last) if has_more => Some(Cursor {
            created_at: last.created_at,
            id: OrderId::from_stored(last.id),
            // The caller knows where the page was read.
            read_at: None,
        }),
        _ => None,
    };
    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    let items = items_of(&ids).load(&mut &*conn).await?;
    let orders = with_items(rows, items)?;
    Ok(OrderPage { orders, next })
}

/// The orders with these ids, in no particular order, with their items.
pub(super) async fn orders_by_id(
    conn: &mut AsyncPgConnection,
    ids: &[OrderId],
) -> Result<Vec<Order>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = ids.iter().map(|id| id.get()).collect();
    // The ids are known before either query runs, so diesel-async pipelines the two: one round
    // trip, as for a single order (`find_order`).
    let shared: &AsyncPgConnection = conn;
    let rows = orders::table
        .filter(orders::id.eq_any(&ids))
        .select(OrderRow::as_select())
        .load(&mut &*shared);
    let items = items_of(&ids).load(&mut &*shared);
    let (rows, items) = futures_util::join!(rows, items);
    with_items(rows?, items?)
}

/// The items of the orders with these ids.
fn items_of(ids: &[i64]) -> order_items::BoxedQuery<'_, Pg, SqlTypeOf<AsSelect<ItemRow, Pg>>> {
    order_items::table
        .filter(order_items::order_id.eq_any(ids))
        .select(ItemRow::as_select())
        .into_boxed()
}

/// Each order of `rows` with its items among `items`.
fn with_items(rows: Vec<OrderRow>, items: Vec<ItemRow>) -> Result<Vec<Order>, StoreError> {
    let mut items_by_order = group_items(items);
    rows.into_iter()
        .map(|row| {
            let items = items_by_order.remove(&row.id).unwrap_or_default();
            row.into_order(items)
        })
        .collect()
}

/// The order's status changes, oldest first; `None` when there is no such order.
pub async fn status_history(
    conn: &AsyncPgConnection,
    id: OrderId,
) -> Result<Option<Vec<StatusChange>>, StoreError> {
    let rows: Vec<HistoryRow> = order_status_history::table
        .filter(order_status_history::order_id.eq(id.get()))
        // Ids follow commit order: changes of one order are serialised by its row lock.
        .order(order_status_history::id)
        .select(HistoryRow::as_select())
        .load(&mut &*conn)
        .await?;
    // The service writes a creation entry with every order, but an order stored by other
    // means may have none: only then does telling "no history" from "no order" cost a query.
    if rows.is_empty() {
        let exists: bool = diesel::select(exists(orders::table.find(id.get())))
            .get_result(&mut &*conn)
            .await?;
        if !exists {
            return Ok(None);
        }
    }
    rows.into_iter()
        .map(HistoryRow::into_change)
        .collect::<Result<_, _>>()
        .map(Some)
}

/// A status change as committed.
#[derive(Debug)]
pub struct StatusChanged {
    pub order: Order,
    /// With a move (a same-status no-op writes nothing): its event, where and when it was written.
    pub moved: Option<Moved>,
    /// Taken before the transaction began.
    pub began: Instant,
}

/// A move's event, where and when it was written.
#[derive(Debug)]
pub struct Moved {
    pub event: NewEvent,
    pub position: EventPosition,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Moves an order to `to` if the state machine allows it from its current status, writing its
/// event with `deliveries` and the trace context of the request, if sampled.
///
/// The row is locked before the check, so two concurrent changes are serialised: the second
/// one sees the first one's result and is judged against it.
pub async fn change_status(
    conn: &mut AsyncPgConnection,
    id: OrderId,
    to: OrderStatus,
    precondition: Option<&Precondition>,
    traceparent: Option<&str>,
    deliveries: &DeliveryRows<'_>,
) -> Result<StatusChanged, StoreError> {
    let began = Instant::now();
    let (order, moved) = conn
        .transaction::<_, StoreError, _>(async |conn| {
            change_in_transaction(conn, id, to, precondition, traceparent, deliveries).await
        })
        .await?;
    Ok(StatusChanged {
        order,
        moved,
        began,
    })
}

/// Under the order's row lock, so that the version the precondition checks and the status
/// the state machine checks are the ones the change replaces. A move writes its history row
/// and its `order.status_changed` event; a same-status no-op writes nothing.
async fn change_in_transaction(
    conn: &mut AsyncPgConnection,
    id: OrderId,
    to: OrderStatus,
    precondition: Option<&Precondition>,
    traceparent: Option<&str>,
    deliveries: &DeliveryRows<'_>,
) -> Result<(Order, Option<Moved>), StoreError> {
    let (current, updated_at): (String, chrono::DateTime<chrono::Utc>) = orders::table
        .find(id.get())
        .select((orders::status, orders::updated_at))
        .for_update()
        .get_result(conn)
        .await?;
    let version = OrderVersion::of(id, updated_at);
    if precondition.is_some_and(|p| !p.accepts(&version)) {
        return Err(VersionMismatch { current: version }.into());
    }
    let transition = parse_status(&current)?.transition(to)?;
    if let Transition::Move { from, to } = transition {
        diesel::update(orders::table.find(id.get()))
            .set((
                orders::status.eq(to.as_str()),
                orders::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
        record_status(conn, id.get(), Some(from), to).await?;
    }
    let order = find_order(conn, id).await?.ok_or(StoreError::NotFound)?;
    let Transition::Move { from, to } = transition else {
        return Ok((order, None));
    };
    let event = NewEvent::status_changed(&order, from, to, traceparent).map_err(|e| {
        StoreError::Impossible(format!("an order that cannot be written as JSON: {e}"))
    })?;
    let (position, at) = record_status_changed(conn, &event, deliveries).await?;
    Ok((
        order,
        Some(Moved {
            event,
            position,
            at,
        }),
    ))
}
