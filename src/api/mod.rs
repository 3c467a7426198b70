//! HTTP: routes, request and response bodies, and the one mapping of errors to status codes.
//! Handlers parse input through `domain`, send a message to the executors and shape the answer;
//! they never touch the database themselves.

mod auth;
mod compress;
mod cors;
mod error;
mod events;
mod headers;
mod health;
mod json;
mod limits;
mod metrics;
mod observe;
mod openapi;
mod orders;
mod params;
mod routes;

pub use auth::ApiKeys;
pub use compress::compress;
pub use cors::{cors, CorsOrigins};
pub use error::{ApiError, InternalError};
pub use events::EventSignal;
pub use health::Draining;
pub use limits::body_deadline;
pub use observe::observe;
pub use routes::configure;
