use super::fingerprint::Fingerprint;
use super::text::is_visible_ascii;
use super::NewOrder;

const MAX_LEN: usize = 255;

/// A client's `Idempotency-Key`: 1–255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if !is_visible_ascii(raw, MAX_LEN) {
            return Err(format!(
                "Idempotency-Key must be 1 to {MAX_LEN} visible ASCII characters"
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A create request that may carry an idempotency key, with the fingerprint of its content
/// that a repeat of the key must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    pub order: NewOrder,
    pub key: Option<IdempotencyKey>,
    /// The W3C `traceparent` of the request, when its trace is sampled: its order's event
    /// carries it to the webhooks. Not part of the fingerprint.
    pub traceparent: Option<String>,
}

impl CreateRequest {
    /// SHA-256 over the validated order, so that two requests that mean the same order (whatever
    /// their JSON spacing or key order) match, and any difference in content does not.
    pub fn fingerprint(&self) -> String {
        let mut fingerprint = Fingerprint::default();
        fingerprint
            .field(self.order.customer_name.as_str())
            .field(self.order.customer_email.as_str());
        for item in &self.order.items {
            fingerprint
                .field(item.product_name.as_str())
                .field(&item.quantity.to_string())
                .field(&item.unit_price.to_string());
        }
        fingerprint.hex()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ItemInput;

    fn request(name: &str, price: &str) -> CreateRequest {
        let item = Ok(ItemInput {
            product_name: Ok("Laptop"),
            quantity: Ok(1),
            unit_price: Ok(price),
        });
        CreateRequest {
            order: NewOrder::parse(Ok(name), Ok("john@example.com"), Ok(std::iter::once(item)))
                .unwrap(),
            key: None,
            traceparent: None,
        }
    }

    #[test]
    fn keys_are_visible_ascii_up_to_255() {
        let cases = [
            ("a", true),
            ("order-2026-11-24/42:retry", true),
            (&*"k".repeat(255), true),
            (&*"k".repeat(256), false),
            ("", false),
            ("has space", false),
            ("tab\t", false),
            ("ключ", false),
        ];
        for (raw, ok) in cases {
            assert_eq!(IdempotencyKey::parse(raw).is_ok(), ok, "key {raw:?}");
        }
    }

    #[test]
    fn fingerprint_is_stable_for_stored_keys() {
        // Stored keys hold this value: a change here would make every retry of a stored key 422.
        assert_eq!(
            request("John", "999.99").fingerprint(),
            "b3551a633ab4214b373534a7d8d10ed786ce5ac0ee989ecbd29fb2133345ae92"
        );
    }

    #[test]
    fn fingerprint_follows_the_content() {
        assert_eq!(
            request("John", "999.99").fingerprint(),
            request(" John ", "999.990").fingerprint()
        );
        assert_ne!(
            request("John", "999.99").fingerprint(),
            request("John", "999.98").fingerprint()
        );
        assert_ne!(
            request("John", "1").fingerprint(),
            request("Joh", "1").fingerprint()
        );
    }
}
