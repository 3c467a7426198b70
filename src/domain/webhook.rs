//! Webhook signing, after the Standard Webhooks conventions: receivers verify with any of its
//! libraries.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

const SECRET_PREFIX: &str = "whsec_";
/// Shorter keys would weaken HMAC-SHA256; the conventions ask for 24 to 64 bytes.
const MIN_SECRET_BYTES: usize = 24;

/// The signing key: `whsec_` and the base64 of at least 24 random bytes. Its `Debug` shows
/// nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// Parses `whsec_<base64>`. The error never repeats the value.
    pub fn parse(text: &str) -> Result<Self, String> {
        let key = text
            .strip_prefix(SECRET_PREFIX)
            .and_then(|encoded| STANDARD.decode(encoded).ok())
            .ok_or_else(|| format!("must be {SECRET_PREFIX} followed by base64"))?;
        if key.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "must hold at least {MIN_SECRET_BYTES} bytes after base64 decoding, has {}",
                key.len()
            ));
        }
        Ok(Self(key))
    }

    pub fn key(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<hidden>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_whsec_and_at_least_24_bytes_of_base64() {
        let key = STANDARD.encode([7u8; 24]);
        let secret = WebhookSecret::parse(&format!("whsec_{key}")).unwrap();
        assert_eq!(secret.key(), [7u8; 24]);
        assert_eq!(format!("{secret:?}"), "WebhookSecret(<hidden>)");
        for bad in [
            key.clone(),
            format!("whsec_{}", STANDARD.encode([7u8; 23])),
            "whsec_not base64!".to_owned(),
            "whsec_".to_owned(),
        ] {
            let err = WebhookSecret::parse(&bad).unwrap_err();
            assert!(!err.contains(&key), "never repeats the secret: {err}");
        }
    }
}
