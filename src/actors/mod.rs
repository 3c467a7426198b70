//! The actor layer: what runs the storage layer's queries, and what follows their commits.
//!
//! - `executor`: the `DbExecutor` actors. Each turns typed messages (`messages`) into queries on
//!   a connection from its own bb8 pool, and group-commits creates.
//! - `executors`: the supervised set of them, one per HTTP worker thread, and what `/metrics`
//!   reads of them: what waits in their mailboxes, their pools, their restarts.
//! - `reads`: where a read is served, a replica or the primary, and what it must see there.
//! - `relay`: what follows a commit that wrote events (the feed's readers woken, the events
//!   handed to the dispatcher), and the connection that LISTENs for other instances' commits.
//! - `dispatcher`: the webhook dispatcher, a task beside the executors (not an actor) that
//!   shares neither their pool nor their mailboxes.
//!
//! Holds no business rules (those are in `domain`) and no SQL (in `db`), and knows nothing of
//! the API's HTTP.

mod dispatcher;
mod executor;
mod executors;
mod messages;
mod reads;
mod relay;

pub use dispatcher::{start_dispatcher, DispatcherHandle, WebhookSettings};
pub use executor::{DbExecutor, ExecutorError};
pub use executors::{Executor, Executors};
pub use messages::{
    ChangeStatus, CheckHealth, CreateOrder, GetDeliveries, GetHistory, GetOrder, Heartbeat,
    ListEvents, ListOrders, PurgeEvents, PurgeIdempotencyKeys,
};
pub use reads::{Positioned, ReadSettings, Replicas};
pub use relay::{listen_for_events, Relay};

/// The database the unit tests that need one use: `TEST_DATABASE_URL`, which `make test` sets,
/// else the test cluster's default. Any reachable database will do.
#[cfg(test)]
fn test_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:25432/postgres".into())
}
