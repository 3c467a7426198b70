//! Storing new orders: a whole batch of create requests in one statement.
//!
//! Under load the executors hand over many orders at once (group commit), so the cost to beat
//! is per statement and per commit, not per row. diesel's multi-row `VALUES` has a different
//! SQL text for every batch size and is prepared afresh each time, which costs a round trip
//! and a parse per table per batch. Here the orders and their items travel as parallel arrays
//! (`unnest`), so the text never changes: each connection prepares it once, and a batch of any
//! size is one round trip that writes orders, items, history and idempotency keys together.

use std::collections::HashMap;
use std::time::Instant;

use bigdecimal::BigDecimal;
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Numeric, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::models::stored_position;
use super::outbox::DeliveryRows;
use super::queries::find_order;
use super::schema::idempotency_keys;
use super::StoreError;
use crate::domain::{
    CreateRequest, EventPosition, IdempotencyKey, NewOrder, Order, OrderId, OrderItem, OrderStatus,
};

/// What a create request came to.
#[derive(Debug)]
pub enum Created {
    New(Order),
    /// Its idempotency key was used before with the same content: the order created then.
    Replayed(Order),
}

/// A batch as committed.
#[derive(Debug)]
pub struct CreatedBatch {
    /// One per request, in order; an error belongs to its request alone.
    pub outcomes: Vec<Result<Created, StoreError>>,
    /// Where the `order.created` event of each new order was written, in the order of the
    /// `Created::New` outcomes.
    pub events: Vec<EventPosition>,
    /// Taken before the transaction began.
    pub began: Instant,
}

/// Stores the orders of `requests` with all their items, their initial history rows, their
/// idempotency keys and their `order.created` events (with `deliveries`), atomically, in one
/// transaction and one statement. Requests whose key was seen before are answered from it
/// instead, and write nothing.
///
/// The error fails the whole batch.
pub async fn insert_orders(
    conn: &mut AsyncPgConnection,
    requests: &[CreateRequest],
    deliveries: &DeliveryRows<'_>,
) -> Result<CreatedBatch, StoreError> {
    let began = Instant::now();
    let (outcomes, events) = conn
        .transaction::<_, StoreError, _>(async |conn| {
            create_in_transaction(conn, requests, deliveries).await
        })
        .await?;
    Ok(CreatedBatch {
        outcomes,
        events,
        began,
    })
}

/// What to do with one request of a batch.
enum Plan {
    Insert { fingerprint: Option<String> },
    Replay(OrderId),
    KeyReused,
}

async fn create_in_transaction(
    conn: &mut AsyncPgConnection,
    requests: &[CreateRequest],
    deliveries: &DeliveryRows<'_>,
) -> Result<(Vec<Result<Created, StoreError>>, Vec<EventPosition>), StoreError> {
    let plans = plan(conn, requests).await?;
    let fresh: Vec<(&CreateRequest, Option<&str>)> = requests
        .iter()
        .zip(&plans)
        .filter_map(|(request, plan)| match plan {
            Plan::Insert { fingerprint } => Some((request, fingerprint.as_deref())),
            _ => None,
        })
        .collect();
    let (inserted, events): (Vec<Order>, Vec<EventPosition>) =
        insert_batch(conn, &fresh, deliveries)
            .await?
            .into_iter()
            .unzip();
    let mut inserted = inserted.into_iter();

    let mut outcomes = Vec::with_capacity(requests.len());
    for plan in plans {
        outcomes.push(match plan {
            Plan::Insert { .. } => Ok(Created::New(inserted.next().ok_or_else(|| {
                StoreError::Impossible("fewer stored orders than planned inserts".into())
            })?)),
            // The key's row references its order, so the order exists.
            Plan::Replay(id) => find_order(conn, id)
                .await?
                .map(Created::Replayed)
                .ok_or_else(|| {
                    StoreError::Impossible(format!("idempotency key of missing order {id:?}"))
                }),
            Plan::KeyReused => Err(StoreError::IdempotencyKeyReused),
        });
    }
    Ok((outcomes, events))
}

/// Looks up the batch's idempotency keys (only when it has any, so a batch without keys costs
/// no query here) and decides per request.
async fn plan(
    conn: &mut AsyncPgConnection,
    requests: &[CreateRequest],
) -> Result<Vec<Plan>, StoreError> {
    let keys: Vec<&str> = requests
        .iter()
        .filter_map(|r| r.key.as_ref())
        .map(IdempotencyKey::as_str)
        .collect();
    let known: HashMap<String, (String, i64)> = if keys.is_empty() {
        HashMap::new()
    } else {
        idempotency_keys::table
            .filter(idempotency_keys::key.eq_any(&keys))
            .select((
                idempotency_keys::key,
                idempotency_keys::request_hash,
                idempotency_keys::order_id,
            ))
            .load::<(String, String, i64)>(conn)
            .await?
            .into_iter()
            .map(|(key, hash, order)| (key, (hash, order)))
            .collect()
    };
    Ok(requests
        .iter()
        .map(|request| {
            let Some(key) = &request.key else {
                return Plan::Insert { fingerprint: None };
            };
            let fingerprint = request.fingerprint();
            match known.get(key.as_str()) {
                None => Plan::Insert {
                    fingerprint: Some(fingerprint),
                },
                Some((hash, order)) if *hash == fingerprint => {
                    Plan::Replay(OrderId::from_stored(*order))
                }
                Some(_) => Plan::KeyReused,
            }
        })
        .collect())
}

/// Writes the orders (each with its key's fingerprint, if it has a key) and returns them as
/// stored, in the same order, each with where its `order.created` event is.
async fn insert_batch(
    conn: &mut AsyncPgConnection,
    orders: &[(&CreateRequest, Option<&str>)],
    deliveries: &DeliveryRows<'_>,
) -> Result<Vec<(Order, EventPosition)>, StoreError> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let statement = InsertBatch::new(orders, deliveries);
    let stored: Vec<StoredRow> = statement.load(conn).await?;
    stored_orders(orders, stored)
}

/// What the batch statement returns per order: its id, creation time and item ids, and its
/// event's id and transaction id (as text: `xid8` has no diesel type).
type StoredRow = (i64, DateTime<Utc>, Vec<i64>, i64, String);

/// Pairs each order sent with the row the statement returned for it. The statement returns one
/// row per order and one item id per item, in input order, by construction: anything else is
/// impossible, and no order may be answered from a misaligned row.
fn stored_orders(
    orders: &[(&CreateRequest, Option<&str>)],
    stored: Vec<StoredRow>,
) -> Result<Vec<(Order, EventPosition)>, StoreError> {
    if stored.len() != orders.len() {
        return Err(StoreError::Impossible(format!(
            "the batch insert returned {} rows for {} orders",
            stored.len(),
            orders.len()
        )));
    }
    orders
        .iter()
        .zip(stored)
        .map(|((request, _), (id, created_at, item_ids, event_id, tx))| {
            if item_ids.len() != request.order.items.len() {
                return Err(StoreError::Impossible(format!(
                    "order {id} was stored with {} item ids for {} items",
                    item_ids.len(),
                    request.order.items.len()
                )));
            }
            let event = stored_position(&tx, event_id)?;
            Ok((
                stored_order(&request.order, id, created_at, item_ids),
                event,
            ))
        })
        .collect()
}

/// The order as the database now holds it: what was sent, plus the ids and the time it got.
fn stored_order(order: &NewOrder, id: i64, created_at: DateTime<Utc>, item_ids: Vec<i64>) -> Order {
    let order_id = OrderId::from_stored(id);
    Order {
        id: order_id,
        customer_name: order.customer_name.as_str().to_owned(),
        customer_email: order.customer_email.as_str().to_owned(),
        status: OrderStatus::Pending,
        total_amount: order.total_amount.clone(),
        items: order
            .items
            .iter()
            .zip(item_ids)
            .map(|(item, item_id)| OrderItem {
                id: item_id,
                order_id,
                product_name: item.product_name.as_str().to_owned(),
                quantity: stored_quantity(item.quantity),
                unit_price: item.unit_price.clone(),
                total_price: item.total_price.clone(),
            })
            .collect(),
        created_at,
        updated_at: created_at,
    }
}

/// The batch insert statement, its values as one array per column.
///
/// Ids come from the sequences in input order inside materialised CTEs, so every item is tied
/// to its order by position (`item_order` is the 1-based position of its order in the batch),
/// and the result lists each order's id with its item ids in input order.
#[derive(Default)]
struct InsertBatch<'a> {
    customer_names: Vec<&'a str>,
    customer_emails: Vec<&'a str>,
    total_amounts: Vec<&'a BigDecimal>,
    keys: Vec<Option<&'a str>>,
    fingerprints: Vec<Option<&'a str>>,
    item_order: Vec<i32>,
    product_names: Vec<&'a str>,
    quantities: Vec<i32>,
    unit_prices: Vec<&'a BigDecimal>,
    total_prices: Vec<&'a BigDecimal>,
    webhook_urls: &'a [String],
    lease_micros: i64,
    /// Per order, its request's `traceparent`; empty when no request has one.
    traceparents: Vec<Option<&'a str>>,
}

impl<'a> InsertBatch<'a> {
    fn new(orders: &[(&'a CreateRequest, Option<&'a str>)], deliveries: &DeliveryRows<'a>) -> Self {
        let mut batch = Self {
            webhook_urls: deliveries.urls,
            lease_micros: deliveries.lease_micros,
            ..Self::default()
        };
        if orders
            .iter()
            .any(|(request, _)| request.traceparent.is_some())
        {
            batch.traceparents = orders
                .iter()
                .map(|(request, _)| request.traceparent.as_deref())
                .collect();
        }
        for (index, (request, fingerprint)) in orders.iter().enumerate() {
            let order = &request.order;
            batch.customer_names.push(order.customer_name.as_str());
            batch.customer_emails.push(order.customer_email.as_str());
            batch.total_amounts.push(order.total_amount.as_decimal());
            batch
                .keys
                .push(request.key.as_ref().map(IdempotencyKey::as_str));
            batch.fingerprints.push(*fingerprint);
            for item in &order.items {
                // At most MAX_BATCH orders: the position fits an i32.
                batch.item_order.push(index as i32 + 1);
                batch.product_names.push(item.product_name.as_str());
                batch.quantities.push(stored_quantity(item.quantity));
                batch.unit_prices.push(item.unit_price.as_decimal());
                batch.total_prices.push(item.total_price.as_decimal());
            }
        }
        batch
    }
}

/// A quantity as its `INTEGER` column holds it; the domain bounds it to 1..=1_000_000.
fn stored_quantity(quantity: u32) -> i32 {
    quantity as i32
}

impl QueryFragment<Pg> for InsertBatch<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "WITH new_orders AS MATERIALIZED (\
               SELECT nextval('orders_id_seq') AS id, \
                      nextval('order_events_id_seq') AS event_id, n, customer_name, \
                      customer_email, total_amount, key, fingerprint \
               FROM unnest(",
        );
        out.push_bind_param::<Array<Text>, _>(&self.customer_names)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.customer_emails)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Numeric>, _>(&self.total_amounts)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.keys)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.fingerprints)?;
        out.push_sql(
            ") WITH ORDINALITY AS o (customer_name, customer_email, total_amount, key, \
                                     fingerprint, n)\
             ), new_items AS MATERIALIZED (\
               SELECT nextval('order_items_id_seq') AS id, n, item_order, product_name, \
                      quantity, unit_price, total_price \
               FROM unnest(",
        );
        out.push_bind_param::<Array<Integer>, _>(&self.item_order)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.product_names)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Integer>, _>(&self.quantities)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Numeric>, _>(&self.unit_prices)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Numeric>, _>(&self.total_prices)?;
        out.push_sql(
            ") WITH ORDINALITY AS i (item_order, product_name, quantity, unit_price, \
                                     total_price, n)\
             ), stored_orders AS (\
               INSERT INTO orders (id, customer_name, customer_email, total_amount) \
               SELECT id, customer_name, customer_email, total_amount FROM new_orders\
             ), stored_items AS (\
               INSERT INTO order_items (id, order_id, product_name, quantity, unit_price, \
                                        total_price) \
               SELECT i.id, o.id, i.product_name, i.quantity, i.unit_price, i.total_price \
               FROM new_items i JOIN new_orders o ON o.n = i.item_order\
             ), history AS (\
               INSERT INTO order_status_history (order_id, to_status) \
               SELECT id, 'pending' FROM new_orders\
             )",
        );
        // The trace contexts only when a request has one: with traces off, or none sampled, the
        // statement is the one without them.
        if self.traceparents.is_empty() {
            out.push_sql(
                ", created_events AS (\
                   INSERT INTO order_events (id, order_id, type) \
                   SELECT event_id, id, 'order.created' FROM new_orders\
                 )",
            );
        } else {
            out.push_sql(
                ", created_events AS (\
                   INSERT INTO order_events (id, order_id, type, traceparent) \
                   SELECT o.event_id, o.id, 'order.created', t.traceparent \
                   FROM new_orders o JOIN unnest(",
            );
            out.push_bind_param::<Array<Nullable<Text>>, _>(&self.traceparents)?;
            out.push_sql(") WITH ORDINALITY AS t (traceparent, n) ON t.n = o.n)");
        }
        // Only when there is something to write: an INSERT of no rows still fires its table's
        // statement trigger (the integrity check), which costs PostgreSQL more than an order's
        // event row. So a batch without idempotency keys, on a server without webhooks, writes
        // neither; each of the (at most eight, with the trace contexts) texts is prepared once
        // per connection.
        if self.keys.iter().any(Option::is_some) {
            out.push_sql(
                ", stored_keys AS (\
                   INSERT INTO idempotency_keys (key, request_hash, order_id) \
                   SELECT key, fingerprint, id FROM new_orders WHERE key IS NOT NULL\
                 )",
            );
        }
        if !self.webhook_urls.is_empty() {
            out.push_sql(
                ", deliveries AS (\
                   INSERT INTO webhook_deliveries (event_id, url, attempts, next_attempt_at) \
                   SELECT o.event_id, urls.url, 1, now() + ",
            );
            out.push_bind_param::<BigInt, _>(&self.lease_micros)?;
            out.push_sql(
                "::float8 * interval '1 microsecond' FROM new_orders o CROSS JOIN unnest(",
            );
            out.push_bind_param::<Array<Text>, _>(&self.webhook_urls)?;
            out.push_sql(") AS urls (url))");
        }
        out.push_sql(
            " SELECT o.id, now(), coalesce(i.ids, '{}'), o.event_id, \
                    pg_current_xact_id()::text \
             FROM new_orders o \
             LEFT JOIN (\
               SELECT item_order, array_agg(id ORDER BY n) AS ids FROM new_items \
               GROUP BY item_order\
             ) i ON i.item_order = o.n \
             ORDER BY o.n",
        );
        Ok(())
    }
}

impl Query for InsertBatch<'_> {
    type SqlType = (BigInt, Timestamptz, Array<BigInt>, BigInt, Text);
}

/// Not a static id: diesel then caches the prepared statement by its SQL text, which is the
/// same for every batch.
impl QueryId for InsertBatch<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ItemInput;

    fn request(items: usize) -> CreateRequest {
        let lines = (0..items).map(|_| {
            Ok(ItemInput {
                product_name: Ok("Pen"),
                quantity: Ok(1),
                unit_price: Ok("1.50"),
            })
        });
        let order = NewOrder::parse(Ok("Ann"), Ok("ann@example.com"), Ok(lines)).expect("valid");
        CreateRequest {
            order,
            key: None,
            traceparent: None,
        }
    }

    /// The row of order `id`, with its event `id + 100` written by transaction 5.
    fn row(id: i64, item_ids: &[i64]) -> StoredRow {
        (id, Utc::now(), item_ids.to_vec(), id + 100, "5".to_owned())
    }

    #[test]
    fn stored_rows_that_do_not_match_the_orders_sent_are_impossible() {
        let (one, two) = (request(1), request(2));
        let sent = [(&one, None), (&two, None)];

        let aligned = stored_orders(&sent, vec![row(7, &[70]), row(8, &[80, 81])])
            .expect("one row per order, one id per item");
        let (order, event) = &aligned[1];
        assert_eq!(order.id, OrderId::from_stored(8));
        assert_eq!(order.items[1].id, 81);
        assert_eq!(*event, EventPosition { tx: 5, id: 108 });

        let mut not_a_transaction = row(8, &[80, 81]);
        not_a_transaction.4 = "5-108".to_owned();
        let cases = [
            vec![row(7, &[70])],
            vec![row(7, &[70]), row(8, &[80])],
            vec![row(7, &[70]), row(8, &[80, 81]), row(9, &[90])],
            vec![row(7, &[70]), not_a_transaction],
        ];
        for rows in cases {
            let shown = format!("{rows:?}");
            let outcome = stored_orders(&sent, rows);
            assert!(
                matches!(outcome, Err(StoreError::Impossible(_))),
                "{shown}: {outcome:?}"
            );
        }
    }
}
