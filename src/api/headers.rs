//! The header names of our own that the API reads or writes, in one place.

use actix_web::http::header::HeaderName;

/// Makes a create safe to retry: a repeat with the same key and body replays the first answer.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// `true` on a create answered from an earlier request with the same Idempotency-Key.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// The point a write committed at, or a list page was read at; sent back on reads, so that
/// they are served at that point or later (with replicas configured; ignored without).
pub const CONSISTENCY_TOKEN: HeaderName = HeaderName::from_static("consistency-token");
/// The request's id: the client's when it sent a usable one, else one made for it.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
