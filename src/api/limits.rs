//! A deadline for request bodies. actix-web's `client_request_timeout` bounds only the request
//! head: a client that sends its headers and then stalls in the body would hold the connection
//! (and a handler waiting for the body) for as long as it likes.

use std::io;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use futures_util::stream::{self, StreamExt};
use tokio::time::{timeout_at, Instant};

/// Middleware: the whole body must arrive within `timeout` of the head having been read.
/// After that the body reads as a `TimedOut` I/O error, which `ApiError` answers with 408.
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
    timeout: Duration,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let deadline = Instant::now() + timeout;
    let body = stream::unfold(Some(req.take_payload()), move |payload| async move {
        let mut payload = payload?;
        match timeout_at(deadline, payload.next()).await {
            Ok(chunk) => chunk.map(|chunk| (chunk, Some(payload))),
            // One error ends the body; dropping the payload lets the server drop the connection.
            Err(_) => Some((Err(PayloadError::Io(timed_out())), None)),
        }
    });
    req.set_payload(Payload::from(body.boxed_local()));
    next.call(req).await
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "request body not received in time")
}
