//! Row types: what the tables hold, and their mapping to the domain's stored-order view.

use bigdecimal::BigDecimal;
use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::{order_items, order_status_history, orders};
use super::StoreError;
use crate::domain::{EventPosition, Money, Order, OrderId, OrderItem, OrderStatus, StatusChange};

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = orders, check_for_backend(diesel::pg::Pg))]
pub struct OrderRow {
    pub id: i64,
    pub customer_name: String,
    pub customer_email: String,
    pub total_amount: BigDecimal,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = order_items, check_for_backend(diesel::pg::Pg))]
pub struct ItemRow {
    pub id: i64,
    pub order_id: i64,
    pub product_name: String,
    pub quantity: i32,
    pub unit_price: BigDecimal,
    pub total_price: BigDecimal,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = order_status_history, check_for_backend(diesel::pg::Pg))]
pub struct HistoryRow {
    pub from_status: Option<String>,
    pub to_status: String,
    pub changed_at: DateTime<Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = order_status_history)]
pub struct NewHistoryRow {
    pub order_id: i64,
    pub from_status: Option<&'static str>,
    pub to_status: &'static str,
}

pub fn parse_status(stored: &str) -> Result<OrderStatus, StoreError> {
    stored
        .parse()
        .map_err(|e| StoreError::Query(diesel::result::Error::DeserializationError(Box::new(e))))
}

/// Where event `id` sits in the feed, given its transaction id as stored (`xid8`, which has no
/// diesel type, read as text).
pub fn stored_position(tx: &str, id: i64) -> Result<EventPosition, StoreError> {
    let tx = tx
        .parse()
        .map_err(|_| StoreError::Impossible(format!("event {id}: transaction id {tx:?}")))?;
    Ok(EventPosition { tx, id })
}

impl OrderRow {
    /// Joins the row with its items (already in id order) into the API's view of an order.
    pub fn into_order(self, items: Vec<ItemRow>) -> Result<Order, StoreError> {
        Ok(Order {
            id: OrderId::from_stored(self.id),
            status: parse_status(&self.status)?,
            customer_name: self.customer_name,
            customer_email: self.customer_email,
            total_amount: Money::from_stored(self.total_amount),
            items: items.into_iter().map(ItemRow::into_item).collect(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl HistoryRow {
    pub fn into_change(self) -> Result<StatusChange, StoreError> {
        Ok(StatusChange {
            from_status: self.from_status.as_deref().map(parse_status).transpose()?,
            to_status: parse_status(&self.to_status)?,
            changed_at: self.changed_at,
        })
    }
}

impl ItemRow {
    fn into_item(self) -> OrderItem {
        OrderItem {
            id: self.id,
            order_id: OrderId::from_stored(self.order_id),
            product_name: self.product_name,
            quantity: self.quantity,
            unit_price: Money::from_stored(self.unit_price),
            total_price: Money::from_stored(self.total_price),
        }
    }
}
