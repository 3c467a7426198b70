//! The API as its users see it: a real server, real actors and a real PostgreSQL.

mod auth;
mod create_order;
mod deliveries;
mod docs;
mod errors;
mod events;
mod get_order;
mod health;
mod helpers;
mod history;
mod hostile;
mod http_semantics;
mod idempotency;
mod integrity;
mod list_filters;
mod list_orders;
mod observability;
mod openapi;
mod reads;
mod traces;
mod update_status;
