use std::fmt;

use uuid::Uuid;

use super::text::is_visible_ascii;

const MAX_LEN: usize = 128;

/// Names one request in the access log and in its answer, so that a user's bug report can be
/// found in the log: 1–128 visible ASCII characters, the client's own `X-Request-Id` or a
/// generated UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// A client's id, when it is 1–128 visible ASCII characters (so that it cannot forge log
    /// lines or break the response header).
    pub fn parse(raw: &str) -> Option<Self> {
        is_visible_ascii(raw, MAX_LEN).then(|| Self(raw.to_owned()))
    }

    /// A fresh random id (UUID v4).
    pub fn generate() -> Self {
        Self(Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_visible_ascii_up_to_128() {
        let cases = [
            ("a", true),
            ("5f0c2a4e-3b1d-4c9a-8e7f-0a1b2c3d4e5f", true),
            ("trace:abc/123=", true),
            (&*"x".repeat(128), true),
            (&*"x".repeat(129), false),
            ("", false),
            ("has space", false),
            ("line\nbreak", false),
            ("ünïcode", false),
        ];
        for (raw, ok) in cases {
            assert_eq!(RequestId::parse(raw).is_some(), ok, "request id {raw:?}");
        }
    }

    #[test]
    fn generated_ids_are_unique_valid_uuids() {
        let (a, b) = (RequestId::generate(), RequestId::generate());
        assert_ne!(a, b);
        assert!(Uuid::parse_str(a.as_str()).is_ok(), "{a}");
        assert_eq!(RequestId::parse(a.as_str()), Some(a));
    }
}
