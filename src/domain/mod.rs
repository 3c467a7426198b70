//! The order domain: pure types and rules, no I/O.
//!
//! Everything that crosses the API boundary is parsed here into types that cannot hold an
//! invalid value (`NewOrder`, `OrderStatus`, `PageRequest` …), so the layers below never
//! re-check input. Nothing in this module may touch the database, actors or HTTP. The types
//! the API shows derive `ToSchema` next to `Serialize`: both describe the same JSON.

mod consistency;
mod email;
mod event;
mod filter;
mod fingerprint;
mod idempotency;
mod money;
mod order;
mod page;
mod request_id;
mod status;
mod text;
mod validation;
mod version;
mod webhook;

pub use consistency::ConsistencyToken;
pub use email::Email;
pub use event::{
    parse_event_types, parse_wait, Event, EventData, EventId, EventPosition, EventType,
    EventsRequest, NewEvent,
};
pub use filter::{FilterInput, ListFilter};
pub use idempotency::{CreateRequest, IdempotencyKey};
pub use money::Money;
pub use order::{Given, ItemInput, NewItem, NewOrder, Order, OrderId, OrderItem, MAX_ITEMS};
pub use page::{Cursor, PageLimit, PageRequest};
pub use request_id::RequestId;
pub use status::{IllegalTransition, OrderStatus, StatusChange, Transition, UnknownStatus};
pub use text::{CustomerName, ProductName};
pub use validation::{FieldError, ValidationErrors};
pub use version::{OrderVersion, Precondition, VersionMismatch};
pub use webhook::{
    webhook_signature, DeliveryReport, DeliveryState, FailedAttempt, RetrySchedule, WebhookSecret,
};
