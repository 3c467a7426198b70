//! `webhook-receiver PORT`: the webhook receiver of `make bench` and `make bench-ab`. Answers
//! every request with 204 and, when stopped (SIGTERM or Ctrl-C), says how many it took. It
//! listens on loopback only, and spends as little CPU as it can: on the benchmark's machine its
//! CPU is taken from the service being measured.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .ok_or("usage: webhook-receiver PORT")?
        .parse()?;
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let received = Arc::new(AtomicU64::new(0));
    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => accepted?.0,
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        let received = Arc::clone(&received);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let received = Arc::clone(&received);
                async move {
                    // Read to the end, as a real receiver would before answering.
                    let taken = request.into_body().collect().await.is_ok();
                    if taken {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut response = Response::new(Empty::<Bytes>::new());
                    *response.status_mut() = if taken {
                        StatusCode::NO_CONTENT
                    } else {
                        StatusCode::BAD_REQUEST
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            // A sender that hangs up mid-request is its business.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    eprintln!(
        "webhook-receiver: {} deliveries",
        received.load(Ordering::Relaxed)
    );
    Ok(())
}
