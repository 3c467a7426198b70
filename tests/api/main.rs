//! The API as its users see it: a real server, real actors and a real PostgreSQL.

mod create_order;
mod errors;
mod get_order;
mod health;
mod helpers;
mod hostile;
mod list_orders;
mod update_status;
