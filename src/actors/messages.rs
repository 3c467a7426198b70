use actix::Message;

use super::{ExecutorError, Positioned};
use crate::db::{Created, EventPage, OrderPage};
use crate::domain::{
    ConsistencyToken, CreateRequest, DeliveryReport, EventId, EventsRequest, Order, OrderId,
    OrderStatus, PageRequest, Precondition, StatusChange,
};

// Writes answer the point they committed at, and reads take the point they must see (a
// client's `Consistency-Token`): both only mean something with replicas configured.

/// Store a validated order with its items, unless its idempotency key was seen before.
#[derive(Message)]
#[rtype(result = "Result<Positioned<Created>, ExecutorError>")]
pub struct CreateOrder(pub CreateRequest);

/// Read one order with its items; `None` when absent.
#[derive(Message)]
#[rtype(result = "Result<Positioned<Option<Order>>, ExecutorError>")]
pub struct GetOrder {
    pub id: OrderId,
    pub at: Option<ConsistencyToken>,
}

/// Read an order's status changes, oldest first; `None` when there is no such order.
#[derive(Message)]
#[rtype(result = "Result<Positioned<Option<Vec<StatusChange>>>, ExecutorError>")]
pub struct GetHistory {
    pub id: OrderId,
    pub at: Option<ConsistencyToken>,
}

/// Read one page of the newest-first list; it answers the point it was read at.
#[derive(Message)]
#[rtype(result = "Result<Positioned<OrderPage>, ExecutorError>")]
pub struct ListOrders {
    pub page: PageRequest,
    pub at: Option<ConsistencyToken>,
}

/// Move an order to another status, if the state machine allows it and the order is still at
/// a version the precondition accepts.
#[derive(Message)]
#[rtype(result = "Result<Positioned<Order>, ExecutorError>")]
pub struct ChangeStatus {
    pub id: OrderId,
    pub to: OrderStatus,
    pub precondition: Option<Precondition>,
}

/// Read one page of the event feed.
#[derive(Message)]
#[rtype(result = "Result<EventPage, ExecutorError>")]
pub struct ListEvents {
    pub request: EventsRequest,
    /// Whether the reader waits when the page is empty: only then is it told whether events
    /// are held back (`EventPage::held_back`), which costs a query.
    pub waiting: bool,
}

/// Read how the webhook deliveries of one event stand; `None` when there is no such event.
#[derive(Message)]
#[rtype(result = "Result<Option<Vec<DeliveryReport>>, ExecutorError>")]
pub struct GetDeliveries(pub EventId);

/// Delete events older than the given age, with their deliveries; answers how many went.
#[derive(Message)]
#[rtype(result = "Result<usize, ExecutorError>")]
pub struct PurgeEvents(pub std::time::Duration);

/// Check that a pooled connection answers.
#[derive(Message)]
#[rtype(result = "Result<(), ExecutorError>")]
pub struct CheckHealth;

/// Commit an empty transaction on the primary, so that replicas that keep up show it.
#[derive(Message)]
#[rtype(result = "Result<(), ExecutorError>")]
pub struct Heartbeat;

/// Delete idempotency keys older than the given age; answers how many went.
#[derive(Message)]
#[rtype(result = "Result<usize, ExecutorError>")]
pub struct PurgeIdempotencyKeys(pub std::time::Duration);
