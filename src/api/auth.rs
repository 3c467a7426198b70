//! Optional API keys: when any are configured, every `/api/v1` route wants
//! `Authorization: Bearer <key>`. With none, the API is open.

use std::fmt;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderValue, AUTHORIZATION};
use actix_web::middleware::Next;
use actix_web::web;
use subtle::{Choice, ConstantTimeEq};

use super::{ApiError, InternalError};

/// The keys a client may present. Never printed: `Debug` shows only how many there are.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiKeys(Vec<String>);

impl ApiKeys {
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(keys: I) -> Self {
        Self(keys.into_iter().map(Into::into).collect())
    }

    /// `API_KEYS`: comma-separated keys, each visible ASCII so that it fits in a header. The
    /// error never repeats the value, which is a secret.
    pub fn parse(list: &str) -> Result<Self, String> {
        let keys: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .collect();
        if keys
            .iter()
            .any(|k| !k.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err("keys may only hold visible ASCII characters, separated by commas".into());
        }
        Ok(Self::new(keys))
    }

    /// Whether requests must carry a key at all.
    pub fn required(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether the `Authorization` header carries one of the keys. Every key is compared in
    /// constant time, whichever matches, so timing tells nothing about a key's content (only,
    /// as with any comparison of unequal lengths, whether the lengths differ).
    fn admits(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(presented) = authorization.and_then(bearer_token) else {
            return !self.required();
        };
        let matched = self.0.iter().fold(Choice::from(0), |matched, key| {
            matched | key.as_bytes().ct_eq(presented)
        });
        !self.required() || bool::from(matched)
    }
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeys({} key(s))", self.0.len())
    }
}

/// The token of `Bearer <token>`; the scheme is case-insensitive (RFC 7235).
fn bearer_token(value: &HeaderValue) -> Option<&[u8]> {
    let value = value.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
        .filter(|token| !token.is_empty())
}

/// Middleware for the `/api/v1` scope: answers 401 unless the request carries a configured key.
/// The keys come from the app data the application registers at start-up; without them, every
/// request is refused rather than let through.
pub async fn require_api_key(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let keys = req.app_data::<web::Data<ApiKeys>>().ok_or_else(|| {
        ApiError::Internal(InternalError::Other(
            "BUG: ApiKeys are not registered as app data".into(),
        ))
    })?;
    if keys.admits(req.headers().get(AUTHORIZATION)) {
        next.call(req)
            .await
            .map(ServiceResponse::map_into_left_body)
    } else {
        // A response rather than an `Err`, so that the layers outside see the request's route.
        Ok(req
            .error_response(ApiError::Unauthorized)
            .map_into_right_body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_only_a_configured_bearer_key() {
        let keys = ApiKeys::new(["first-key", "second-key"]);
        let cases: &[(Option<&str>, bool)] = &[
            (Some("Bearer first-key"), true),
            (Some("Bearer second-key"), true),
            (Some("bearer first-key"), true),
            (Some("BEARER  first-key "), true),
            (None, false),
            (Some(""), false),
            (Some("Bearer"), false),
            (Some("Bearer "), false),
            (Some("Bearer first"), false),
            (Some("Bearer first-key2"), false),
            (Some("Basic first-key"), false),
            (Some("first-key"), false),
        ];
        for (header, admitted) in cases {
            let value = header.map(|h| HeaderValue::from_str(h).unwrap());
            assert_eq!(keys.admits(value.as_ref()), *admitted, "{header:?}");
        }
    }

    #[test]
    fn without_keys_everything_is_admitted() {
        let open = ApiKeys::default();
        assert!(!open.required());
        assert!(open.admits(None));
        assert!(open.admits(Some(&HeaderValue::from_static("Bearer anything"))));
    }

    #[test]
    fn debug_never_shows_a_key() {
        let shown = format!("{:?}", ApiKeys::new(["s3cret"]));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
