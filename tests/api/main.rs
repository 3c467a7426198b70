//! The API as its users see it: a real server, real actors and a real PostgreSQL.

mod auth;
mod create_order;
mod errors;
mod get_order;
mod health;
mod helpers;
mod hostile;
mod idempotency;
mod list_orders;
mod openapi;
mod update_status;
