//! The `DbExecutor` actors. Each turns typed messages into queries on a connection from the
//! shared bb8 pool; the executor set spreads messages over them and keeps them alive. Beside
//! them, the webhook dispatcher, which shares neither their pool nor their mailboxes. Holds no
//! business rules (those are in `domain`) and knows nothing of the API's HTTP.

mod delivery;
mod executor;
mod messages;
mod relay;
mod set;

pub use delivery::{delivery_lease, start_dispatcher, DispatcherHandle, WebhookSettings};
pub use executor::{DbExecutor, ExecutorError};
pub use messages::{
    ChangeStatus, CheckHealth, CreateOrder, GetDeliveries, GetHistory, GetOrder, ListEvents,
    ListOrders, PurgeEvents, PurgeIdempotencyKeys,
};
pub use relay::{listen_for_events, Relay};
pub use set::{Executors, Queued};
