//! Cross-origin calls from browsers: which other sites' pages may use the API.

use actix_cors::Cors;
use actix_web::http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use actix_web::http::Method;

use super::headers::{CONSISTENCY_TOKEN, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, X_REQUEST_ID};

/// How long a browser may reuse a preflight answer.
const PREFLIGHT_MAX_AGE_SECS: usize = 3600;

/// The origins whose pages may call the API (`CORS_ALLOWED_ORIGINS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Same-origin pages only: browsers get no cross-origin permission at all.
    #[default]
    None,
    /// These origins exactly, e.g. `https://shop.example.com`.
    Listed(Vec<String>),
    /// Any origin (`*`). No credentials are involved: keys travel in `Authorization`.
    Any,
}

impl CorsOrigins {
    /// `CORS_ALLOWED_ORIGINS`: `*`, or comma-separated origins as browsers send them
    /// (`https://shop.example.com`, `http://localhost:3000`).
    pub fn parse(list: &str) -> Result<Self, String> {
        let origins: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .collect();
        if origins == ["*"] {
            return Ok(Self::Any);
        }
        if origins.is_empty() {
            return Ok(Self::None);
        }
        let is_origin = |origin: &str| {
            let host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            host.is_some_and(|host| {
                !host.is_empty()
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b"/*".contains(&b))
            })
        };
        if let Some(bad) = origins.iter().find(|o| !is_origin(o)) {
            return Err(format!(
                "{bad:?} is not an origin: expected `*` alone, or origins like \
                 https://shop.example.com (scheme and host, optional port, no path)"
            ));
        }
        Ok(Self::Listed(
            origins.into_iter().map(str::to_owned).collect(),
        ))
    }
}

/// The CORS middleware for `origins`. Requests from other origins are still served (browsers,
/// not the server, withhold the answer from the page); preflights from them are refused.
pub fn cors(origins: &CorsOrigins) -> Cors {
    let cors = Cors::default()
        .allowed_methods([Method::GET, Method::POST, Method::PUT])
        .allowed_headers([
            AUTHORIZATION,
            CONTENT_TYPE,
            IDEMPOTENCY_KEY,
            CONSISTENCY_TOKEN,
            X_REQUEST_ID,
        ])
        .expose_headers([
            ALLOW,
            LOCATION,
            RETRY_AFTER,
            IDEMPOTENT_REPLAYED,
            CONSISTENCY_TOKEN,
            X_REQUEST_ID,
        ])
        .max_age(PREFLIGHT_MAX_AGE_SECS);
    match origins {
        CorsOrigins::None => cors,
        CorsOrigins::Listed(origins) => origins
            .iter()
            .fold(cors, |cors, origin| cors.allowed_origin(origin)),
        CorsOrigins::Any => cors.allow_any_origin().send_wildcard(),
    }
}
