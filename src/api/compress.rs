//! Compression of the answers worth compressing, when the client asks for it.
//!
//! actix-web's `Compress` compresses every answer the client accepts compressed, whatever its
//! size, and Go's default HTTP client (among others) asks for gzip on every request. Starting a
//! compressor allocates and zeroes its window and tables: for the 300-byte orders of the
//! extreme stress test (`make test-stress-extreme`), about a sixth of the server's CPU
//! (docs/PERFORMANCE.md), to save a few hundred bytes that fit in the same packet anyway. So
//! only bodies of known size from `MIN_BYTES` up are compressed: list pages, feed pages,
//! histories, the OpenAPI document. Streams (the SSE feed) go as they are, so that each event
//! leaves when it is written.

use actix_http::encoding::Encoder;
use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{AcceptEncoding, ContentEncoding, Encoding};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};

/// Smallest body compressed: below about a kilobyte the saving is less than a packet.
const MIN_BYTES: u64 = 1024;

/// What the client may get, in actix's order of preference among equally acceptable ones.
static OFFERED: [Encoding; 4] = [
    Encoding::identity(),
    Encoding::brotli(),
    Encoding::gzip(),
    Encoding::zstd(),
];

/// Middleware: compresses the answer with the coding the client prefers (`Accept-Encoding`)
/// when its body is at least `MIN_BYTES` long. Outermost, so that error bodies, written by
/// the middleware inside it, are handled like any other.
pub async fn compress(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let response = next.call(req).await?;
    let coding = match response.response().body().size() {
        BodySize::Sized(len) if len >= MIN_BYTES => negotiate(response.request()),
        _ => ContentEncoding::Identity,
    };
    Ok(response.map_body(move |head, body| match coding {
        ContentEncoding::Identity => EitherBody::right(body),
        // Leaves alone answers that must not be encoded (204, 206, an encoding already set).
        coding => EitherBody::left(Encoder::response(coding, head, body)),
    }))
}

/// The client's preferred coding among those offered. A client that refuses them all (even
/// `identity`) gets the body as it is, which RFC 9110 (12.5.3) allows in place of a 406.
fn negotiate(req: &HttpRequest) -> ContentEncoding {
    match req
        .get_header::<AcceptEncoding>()
        .and_then(|accepted| accepted.negotiate(OFFERED.iter()))
    {
        Some(Encoding::Known(coding)) => coding,
        _ => ContentEncoding::Identity,
    }
}
