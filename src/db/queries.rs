//! Every query the service runs. Each takes the connection it works on; the caller decides
//! where connections come from.

use std::collections::HashMap;

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::models::{parse_status, ItemRow, NewHistoryRow, OrderRow};
use super::schema::{idempotency_keys, order_items, order_status_history, orders};
use super::StoreError;
use crate::domain::{Cursor, Order, OrderId, OrderStatus, PageRequest, Transition};

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

pub async fn find_order(
    conn: &mut AsyncPgConnection,
    id: OrderId,
) -> Result<Option<Order>, StoreError> {
    let Some(row) = orders::table
        .find(id.get())
        .select(OrderRow::as_select())
        .first(conn)
        .await
        .optional()?
    else {
        return Ok(None);
    };
    let items = order_items::table
        .filter(order_items::order_id.eq(id.get()))
        .order(order_items::id)
        .select(ItemRow::as_select())
        .load(conn)
        .await?;
    row.into_order(items).map(Some)
}

/// Newest first by `(created_at, id)`, strictly after the cursor; the items of the whole page
/// come in one query.
pub async fn orders_page(
    conn: &mut AsyncPgConnection,
    page: PageRequest,
) -> Result<OrderPage, StoreError> {
    let limit = page.limit.get();
    let mut query = orders::table
        .select(OrderRow::as_select())
        .order((orders::created_at.desc(), orders::id.desc()))
        // One more than asked tells whether another page follows.
        .limit(limit as i64 + 1)
        .into_boxed();
    if let Some(after) = page.after {
        // A row comparison, so the (created_at DESC, id DESC) index serves it as one range.
        query = query.filter(
            sql::<Bool>("(orders.created_at, orders.id) < (")
                .bind::<Timestamptz, _>(after.created_at)
                .sql(", ")
                .bind::<BigInt, _>(after.id.get())
                .sql(")"),
        );
    }
    let mut rows: Vec<OrderRow> = query.load(conn).await?;
    let has_more = rows.len() > limit;
    rows.truncate(limit);

    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    let items: Vec<ItemRow> = order_items::table
        .filter(order_items::order_id.eq_any(&ids))
        .select(ItemRow::as_select())
        .load(conn)
        .await?;
    let mut items_by_order = group_items(items);

    let next = match rows.last() {
        Some(last) if has_more => Some(Cursor {
            created_at: last.created_at,
            id: OrderId::from_stored(last.id),
        }),
        _ => None,
    };
    let orders = rows
        .into_iter()
        .map(|row| {
            let items = items_by_order.remove(&row.id).unwrap_or_default();
            row.into_order(items)
        })
        .collect::<Result<_, _>>()?;
    Ok(OrderPage { orders, next })
}

/// Moves an order to `to` if the state machine allows it from its current status.
///
/// The row is locked before the check, so two concurrent changes are serialised: the second
/// one sees the first one's result and is judged against it.
pub async fn change_status(
    conn: &mut AsyncPgConnection,
    id: OrderId,
    to: OrderStatus,
) -> Result<Order, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let current: String = orders::table
            .find(id.get())
            .select(orders::status)
            .for_update()
            .first(conn)
            .await?;
        if let Transition::Move { from, to } = parse_status(&current)?.transition(to)? {
            diesel::update(orders::table.find(id.get()))
                .set((
                    orders::status.eq(to.as_str()),
                    orders::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            record_status(conn, id.get(), Some(from), to).await?;
        }
        find_order(conn, id).await?.ok_or(StoreError::NotFound)
    })
    .await
}
