//! The client side of the service's API: one pooled HTTP client, and each request the stress
//! run sends reduced to how it ended.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderValue, ACCEPT_ENCODING, AUTHORIZATION, CONNECTION, CONTENT_ENCODING,
    CONTENT_TYPE, HOST,
};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use reqwest::{Client, Url};
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::order;

/// Why a request did not succeed. Ordered so that the report lists status codes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    Status(u16),
    Timeout,
    /// Could not connect, or the connection broke before the answer came.
    Connection,
    /// Anything else: a broken body, a 201 without an id.
    Other,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Status(code) => write!(f, "HTTP {code}"),
            Cause::Timeout => f.write_str("timeout"),
            Cause::Connection => f.write_str("connection error"),
            Cause::Other => f.write_str("other error"),
        }
    }
}

/// How one request ended: success (with the new order's id for a create) or why not.
pub type Answer = Result<Option<i64>, Cause>;

/// What the workers send; `n` numbers the requests of a run from 1.
pub enum Request {
    /// POST order number n.
    CreateOrder,
    /// GET one of these orders, picked by n.
    GetOrder { among: Vec<i64> },
    /// GET the list page this query string asks for.
    ListOrders { query: String },
    /// GET the event feed's first page: its oldest ten events.
    ListEvents,
    /// PUT order number n of these from pending to processing: a move each, as long as every
    /// order is pending and is sent once.
    ChangeStatus { among: Vec<i64> },
}

/// One request as it goes on the wire, and the status that answers it.
struct Call {
    method: Method,
    path: String,
    body: Option<String>,
    expected: StatusCode,
}

impl Request {
    /// How many requests can be sent, when that is bounded: each order moves once.
    pub fn most(&self) -> Option<u64> {
        match self {
            Request::ChangeStatus { among } => Some(among.len() as u64),
            _ => None,
        }
    }

    /// Request number n.
    fn nth(&self, n: u64) -> Call {
        let get = |path: String| Call {
            method: Method::GET,
            path,
            body: None,
            expected: StatusCode::OK,
        };
        match self {
            Request::CreateOrder => Call {
                method: Method::POST,
                path: "/api/v1/orders".to_owned(),
                body: Some(order::body(n).to_string()),
                expected: StatusCode::CREATED,
            },
            Request::GetOrder { among } => {
                let pick = scatter(n) % among.len() as u64;
                get(format!("/api/v1/orders/{}", among[pick as usize]))
            }
            Request::ListOrders { query } => get(format!("/api/v1/orders?{query}")),
            Request::ListEvents => get("/api/v1/events?limit=10".to_owned()),
            Request::ChangeStatus { among } => Call {
                method: Method::PUT,
                // The load loop sends numbers 1 to `most()` only.
                path: format!("/api/v1/orders/{}/status", among[(n - 1) as usize]),
                body: Some(r#"{"status":"processing"}"#.to_owned()),
                expected: StatusCode::OK,
            },
        }
    }
}

/// The service's address and how to talk to it. Cheap to clone: every worker holds one.
#[derive(Clone)]
pub struct Api {
    target: Arc<Target>,
    /// Pooled client for the read-back after the run, where convenience beats cost.
    http: Client,
}

struct Target {
    /// `host:port`, to connect to and to send as `Host`.
    authority: String,
    host: HeaderValue,
    /// The base URL's path, without a trailing slash.
    prefix: String,
    authorization: Option<HeaderValue>,
    /// Sent with every load request when set, to measure the server's compression.
    accept_encoding: Option<HeaderValue>,
    /// Sent with every load request when set, to measure the server's check of it.
    consistency_token: Option<HeaderValue>,
    timeout: Duration,
    /// With --max-idle: the connections the workers share between requests.
    idle: Option<IdlePool>,
}

/// Idle connections shared by all workers, at most `max` of them; a connection given back when
/// it is full is dropped, which closes it (Go's `Transport.tryPutIdleConn`).
struct IdlePool {
    max: usize,
    connections: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl IdlePool {
    /// An idle connection the server has not closed meanwhile, if there is one.
    fn take(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.lock();
        std::iter::from_fn(|| idle.pop()).find(|sender| !sender.is_closed())
    }

    fn give_back(&self, sender: SendRequest<Full<Bytes>>) {
        let mut idle = self.lock();
        if idle.len() < self.max {
            idle.push(sender);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SendRequest<Full<Bytes>>>> {
        // A worker that panicked left a plain list behind: still usable.
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Api {
    pub fn new(
        base_url: &str,
        api_key: Option<&str>,
        accept_encoding: Option<&str>,
        consistency_token: Option<&str>,
        timeout: Duration,
        max_idle: Option<usize>,
    ) -> Result<Self, String> {
        let url = Url::parse(base_url).map_err(|e| format!("--base-url {base_url:?}: {e}"))?;
        if url.scheme() != "http" {
            return Err(format!(
                "--base-url {base_url:?}: only http:// is supported"
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("--base-url {base_url:?} has no host"))?;
        let authority = format!("{host}:{}", url.port_or_known_default().unwrap_or(80));
        let authorization = api_key
            .map(|key| {
                let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
                    .map_err(|_| "the API key must be visible ASCII".to_owned())?;
                value.set_sensitive(true);
                Ok::<_, String>(value)
            })
            .transpose()?;
        let header = |flag: &str, value: Option<&str>| {
            value
                .map(|value| {
                    HeaderValue::from_str(value)
                        .map_err(|_| format!("--{flag} {value:?} is not a header value"))
                })
                .transpose()
        };
        let accept_encoding = header("accept-encoding", accept_encoding)?;
        let consistency_token = header("consistency-token", consistency_token)?;
        let mut headers = HeaderMap::new();
        if let Some(value) = &authorization {
            headers.insert(AUTHORIZATION, value.clone());
        }
        let http = Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            target: Arc::new(Target {
                host: HeaderValue::from_str(&authority)
                    .map_err(|_| format!("--base-url {base_url:?}: bad host"))?,
                authority,
                prefix: url.path().trim_end_matches('/').to_owned(),
                authorization,
                accept_encoding,
                consistency_token,
                timeout,
                idle: max_idle.map(|max| IdlePool {
                    max,
                    connections: Mutex::new(Vec::new()),
                }),
            }),
            http,
        })
    }

    /// A connection of the caller's own, opened on first use.
    pub fn session(&self) -> Session {
        Session {
            target: self.target.clone(),
            sender: None,
        }
    }

    /// The stored order, for verification.
    pub async fn fetch_order(&self, id: i64) -> Result<Value, String> {
        let url = format!(
            "http://{}{}/api/v1/orders/{id}",
            self.target.authority, self.target.prefix
        );
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("order {id}: {e}"))?;
        if response.status() != StatusCode::OK {
            return Err(format!("order {id}: HTTP {}", response.status().as_u16()));
        }
        response
            .json()
            .await
            .map_err(|e| format!("order {id}: {e}"))
    }
}

/// One worker's keep-alive connection. The load loop sends on it one request at a time, so it
/// needs no pool, no lock and no URL parsing per request: the client then costs a fraction of
/// the CPU of a pooled client such as reqwest's, and leaves the machine's cores to the server
/// being measured (docs/PERFORMANCE.md has the figures). With --max-idle the worker holds a
/// connection only while a request is on it, taken from the shared idle ones or opened anew.
pub struct Session {
    target: Arc<Target>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// The part of a created order the load loop needs.
#[derive(Deserialize)]
struct CreatedOrder {
    id: i64,
}

impl Session {
    pub async fn send(&mut self, request: &Request, n: u64) -> Answer {
        let Call {
            method,
            path,
            body,
            expected,
        } = request.nth(n);
        let timeout = self.target.timeout;
        let (status, encoding, body) =
            match tokio::time::timeout(timeout, self.exchange(method, &path, body)).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(cause)) => {
                    self.sender = None;
                    return Err(cause);
                }
                Err(_) => {
                    // The late answer may still arrive on this connection: start afresh.
                    self.sender = None;
                    return Err(Cause::Timeout);
                }
            };
        if status != expected {
            return Err(Cause::Status(status.as_u16()));
        }
        match request {
            Request::CreateOrder => {
                serde_json::from_slice::<CreatedOrder>(&decoded(encoding, body)?)
                    .map(|created| Some(created.id))
                    .map_err(|_| Cause::Other)
            }
            _ => Ok(None),
        }
    }

    /// Sends one request and reads the whole answer, as a real client would.
    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(StatusCode, Option<HeaderValue>, Bytes), Cause> {
        let target = self.target.clone();
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", target.prefix))
            .header(HOST, target.host.clone());
        if let Some(value) = &target.authorization {
            request = request.header(AUTHORIZATION, value.clone());
        }
        if let Some(value) = &target.accept_encoding {
            request = request.header(ACCEPT_ENCODING, value.clone());
        }
        if let Some(value) = &target.consistency_token {
            request = request.header("consistency-token", value.clone());
        }
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|_| Cause::Other)?;
        if self.sender.is_none() {
            self.sender = target.idle.as_ref().and_then(IdlePool::take);
        }
        let sender = match &mut self.sender {
            Some(sender) => sender,
            None => self.sender.insert(connect(&target.authority).await?),
        };
        sender.ready().await.map_err(|_| Cause::Connection)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| Cause::Connection)?;
        let status = response.status();
        let encoding = response.headers().get(CONTENT_ENCODING).cloned();
        // A server that says `Connection: close` (a draining one does) closes the connection
        // after this answer: a client must not send on it again, or its next request fails
        // without ever reaching the server.
        let closing = response
            .headers()
            .get(CONNECTION)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"));
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|_| Cause::Connection)?
            .to_bytes();
        if closing {
            self.sender = None;
        } else if let Some(idle) = &target.idle {
            if let Some(sender) = self.sender.take() {
                idle.give_back(sender);
            }
        }
        Ok((status, encoding, body))
    }
}

/// The body as sent before its `Content-Encoding`: only gzip is decoded, the one coding a
/// create's answer is read in (the others' bodies are not read).
fn decoded(encoding: Option<HeaderValue>, body: Bytes) -> Result<Bytes, Cause> {
    match encoding {
        None => Ok(body),
        Some(coding) if coding == "gzip" => {
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain)
                .map_err(|_| Cause::Other)?;
            Ok(plain.into())
        }
        Some(_) => Err(Cause::Other),
    }
}

async fn connect(authority: &str) -> Result<SendRequest<Full<Bytes>>, Cause> {
    let stream = TcpStream::connect(authority)
        .await
        .map_err(|_| Cause::Connection)?;
    // Requests are small and written whole: waiting to coalesce them only adds latency.
    stream.set_nodelay(true).map_err(|_| Cause::Connection)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| Cause::Connection)?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Spreads request numbers evenly and unpredictably over the ids (splitmix64), so that reads
/// hit the table at random without a random-number generator, and a run can be repeated.
fn scatter(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mode_moves_each_of_its_orders_once_to_processing() {
        let among = vec![7, 3, 12];
        let request = Request::ChangeStatus {
            among: among.clone(),
        };
        assert_eq!(request.most(), Some(3));
        let paths: Vec<String> = (1..=3)
            .map(|n| {
                let call = request.nth(n);
                assert_eq!(call.method, Method::PUT);
                assert_eq!(call.expected, StatusCode::OK);
                let body: Value =
                    serde_json::from_str(&call.body.expect("a body")).expect("the body is JSON");
                assert_eq!(body, serde_json::json!({ "status": "processing" }));
                call.path
            })
            .collect();
        let expected: Vec<String> = among
            .iter()
            .map(|id| format!("/api/v1/orders/{id}/status"))
            .collect();
        assert_eq!(paths, expected);
    }

    #[test]
    fn a_gzip_answer_is_read_decoded_and_an_unknown_coding_is_an_error() {
        let plain = br#"{"id":7}"#;
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gzip, plain).unwrap();
        let gzip = Bytes::from(gzip.finish().unwrap());

        let as_sent = |coding: Option<&'static str>, body: Bytes| {
            decoded(coding.map(HeaderValue::from_static), body)
        };
        assert_eq!(as_sent(Some("gzip"), gzip).unwrap(), &plain[..]);
        assert_eq!(
            as_sent(None, Bytes::from_static(plain)).unwrap(),
            &plain[..]
        );
        assert_eq!(
            as_sent(Some("br"), Bytes::from_static(plain)),
            Err(Cause::Other)
        );
    }

    #[tokio::test]
    async fn a_connection_the_server_says_it_closes_is_not_sent_on_again() {
        // A server that answers every request with `Connection: close`, as a draining one
        // does, and then closes: each request must go out on a connection of its own.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut accepted = 0;
            for stream in listener.incoming().take(3) {
                let mut stream = stream.unwrap();
                accepted += 1;
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    std::io::Read::read_exact(&mut stream, &mut byte).unwrap();
                    head.push(byte[0]);
                }
                std::io::Write::write_all(
                    &mut stream,
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .unwrap();
            }
            accepted
        });
        let api = Api::new(
            &format!("http://{address}"),
            None,
            None,
            None,
            Duration::from_secs(5),
            None,
        )
        .unwrap();
        let mut session = api.session();
        for n in 1..=3 {
            assert_eq!(
                session.send(&Request::ListEvents, n).await,
                Ok(None),
                "request {n}"
            );
        }
        assert_eq!(server.join().unwrap(), 3, "one connection per request");
    }

    #[test]
    fn list_mode_asks_for_its_query_and_other_modes_are_unbounded() {
        let request = Request::ListOrders {
            query: "status=pending&limit=10".to_owned(),
        };
        assert_eq!(
            request.nth(1).path,
            "/api/v1/orders?status=pending&limit=10"
        );
        assert_eq!(request.most(), None);
        assert_eq!(Request::GetOrder { among: vec![1] }.most(), None);
    }
}
