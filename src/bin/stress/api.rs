//! The client side of the service's API: one pooled HTTP client, and each request the stress
//! run sends reduced to how it ended.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::{Client, StatusCode};
use serde_json::Value;

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

impl From<reqwest::Error> for Cause {
    fn from(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            Cause::Timeout
        } else if e.is_connect() || e.is_request() {
            Cause::Connection
        } else {
            Cause::Other
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
    /// GET the newest ten orders.
    ListOrders,
}

/// Cheap to clone: every worker holds one.
#[derive(Clone)]
pub struct Api {
    http: Client,
    base: Arc<str>,
}

impl Api {
    /// One client for the whole run, its pool sized so that each worker keeps its connection.
    pub fn new(
        base_url: &str,
        api_key: Option<&str>,
        concurrency: usize,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        if let Some(key) = api_key {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| "the API key must be visible ASCII".to_owned())?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = Client::builder()
            .default_headers(headers)
            .pool_max_idle_per_host(concurrency)
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').into(),
        })
    }

    pub async fn send(&self, request: &Request, n: u64) -> Answer {
        match request {
            Request::CreateOrder => self.create_order(n).await,
            Request::GetOrder { among } => {
                let pick = scatter(n) % among.len() as u64;
                self.get_order(among[pick as usize]).await
            }
            Request::ListOrders => {
                self.read(&format!("{}/api/v1/orders?limit=10", self.base))
                    .await
            }
        }
    }

    /// POSTs order number `n`; success is a 201 whose body carries the new id.
    async fn create_order(&self, n: u64) -> Answer {
        let response = self
            .http
            .post(format!("{}/api/v1/orders", self.base))
            .json(&order::body(n))
            .send()
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(refused(response).await);
        }
        let created: Value = response.json().await?;
        created["id"].as_i64().map(Some).ok_or(Cause::Other)
    }

    async fn get_order(&self, id: i64) -> Answer {
        self.read(&format!("{}/api/v1/orders/{id}", self.base))
            .await
    }

    /// The stored order, for verification.
    pub async fn fetch_order(&self, id: i64) -> Result<Value, String> {
        let response = self
            .http
            .get(format!("{}/api/v1/orders/{id}", self.base))
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

    /// A GET that succeeds with 200; the whole body is read, as a real client would.
    async fn read(&self, url: &str) -> Answer {
        let response = self.http.get(url).send().await?;
        if response.status() != StatusCode::OK {
            return Err(refused(response).await);
        }
        response.bytes().await?;
        Ok(None)
    }
}

/// Reads the refusal's body so that the connection can be reused, and names its status.
async fn refused(response: reqwest::Response) -> Cause {
    let cause = Cause::Status(response.status().as_u16());
    let _ = response.bytes().await;
    cause
}

/// Spreads request numbers evenly and unpredictably over the ids (splitmix64), so that reads
/// hit the table at random without a random-number generator, and a run can be repeated.
fn scatter(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
