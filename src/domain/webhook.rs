//! Webhook signing, after the Standard Webhooks conventions: receivers verify with any of its
//! libraries; and the schedule failed deliveries are retried on.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use utoipa::ToSchema;

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

/// The `webhook-signature` header for `body` sent as message `id` at `timestamp` (Unix
/// seconds): `v1,` and the base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`. The timestamp
/// is signed so that a receiver can refuse an old message replayed by someone who recorded it.
pub fn webhook_signature(secret: &WebhookSecret, id: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.key()).expect("HMAC takes a key of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// How long to wait after each failed attempt before the next: after the n-th failure, the
/// n-th delay; after a failure past the last delay, the delivery is given up as failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

/// Delays are stretched by a random fraction up to this, so that deliveries that failed
/// together (a receiver's outage) do not all come back in the same instant. Never shortened:
/// a receiver is never retried sooner than the schedule says.
const JITTER: f64 = 0.1;

impl RetrySchedule {
    /// Twelve attempts over a little less than three days (with the jitter at its largest).
    pub const DEFAULT: &str = "5s,30s,2m,10m,1h,2h,4h,8h,16h,16h,16h";

    /// Comma-separated durations (`5s,30m,2h`), each longer than zero.
    pub fn parse(text: &str) -> Result<Self, String> {
        let delays = text
            .split(',')
            .map(|delay| match humantime::parse_duration(delay.trim()) {
                Ok(d) if !d.is_zero() => Ok(d),
                Ok(_) => Err("every delay must be longer than zero".to_owned()),
                Err(e) => Err(format!("{delay:?}: {e} (expected e.g. 5s,30s,2m)")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(delays))
    }

    /// The wait after failed attempt number `attempt` (the first is 1), stretched by
    /// `jitter` (0 to 1) times `JITTER`; `None` once the schedule is spent.
    pub fn after(&self, attempt: u32, jitter: f64) -> Option<Duration> {
        let delay = self.0.get(usize::try_from(attempt).ok()?.checked_sub(1)?)?;
        Some(delay.mul_f64(1.0 + JITTER * jitter.clamp(0.0, 1.0)))
    }

    pub fn delays(&self) -> &[Duration] {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<hidden>)")
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet answered with 2xx; `next_attempt_at` says when it is tried again.
    Pending,
    Delivered,
    /// Every attempt of the schedule failed; it will not be sent again.
    Failed,
}

impl DeliveryState {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// An event's delivery to one webhook URL, as `GET /api/v1/events/{id}/deliveries` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DeliveryReport {
    pub url: String,
    pub state: DeliveryState,
    /// Attempts made so far (one in flight included).
    pub attempts: u32,
    /// Unless `delivered`: what the last failed attempt got, as in `failed_attempts`.
    pub last_error: Option<String>,
    /// With `pending`: when the next attempt is due.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// Every failed attempt, oldest first. An attempt whose outcome was never recorded (its
    /// instance died while it was out) has no entry.
    pub failed_attempts: Vec<FailedAttempt>,
}

/// One attempt that did not get a 2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FailedAttempt {
    /// Its number, the first attempt being 1.
    pub attempt: u32,
    pub failed_at: DateTime<Utc>,
    /// The receiver's status and the start of its answer, or why there was none (a timeout, a
    /// refused connection).
    pub error: String,
}

impl DeliveryReport {
    /// `next_attempt_at` is kept only while pending; `failed_attempts` must be oldest first.
    pub fn new(
        url: String,
        state: DeliveryState,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        delivered_at: Option<DateTime<Utc>>,
        failed_attempts: Vec<FailedAttempt>,
    ) -> Self {
        let last_error = match state {
            DeliveryState::Delivered => None,
            DeliveryState::Pending | DeliveryState::Failed => {
                failed_attempts.last().map(|failed| failed.error.clone())
            }
        };
        Self {
            url,
            state,
            attempts,
            last_error,
            next_attempt_at: (state == DeliveryState::Pending).then_some(next_attempt_at),
            delivered_at,
            failed_attempts,
        }
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

    #[test]
    fn signatures_match_hmac_sha256_computed_elsewhere() {
        // Expected values made outside Rust:
        //   printf '42.1764158400.{"id":42,"type":"order.created"}' \
        //     | openssl dgst -sha256 -hmac 'ordersvc-webhook-test-key-0123' -binary | base64
        // (and the same with Python's hmac module).
        let ours = WebhookSecret::parse("whsec_b3JkZXJzdmMtd2ViaG9vay10ZXN0LWtleS0wMTIz").unwrap();
        assert_eq!(
            webhook_signature(
                &ours,
                "42",
                1_764_158_400,
                r#"{"id":42,"type":"order.created"}"#
            ),
            "v1,rbRWbzK83tiNe3J32wWeTOr3l+Fcxn3TtzXWwwaRDqY="
        );
        // The example of the Standard Webhooks specification, recomputed with Python's hmac:
        // what its libraries accept, we produce.
        let spec = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            webhook_signature(
                &spec,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                r#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn the_retry_schedule_waits_each_delay_once_then_gives_up() {
        let schedule = RetrySchedule::parse(" 5s, 30s,2m ").unwrap();
        let secs = |attempt, jitter| schedule.after(attempt, jitter).map(|d| d.as_secs_f64());
        assert_eq!(secs(1, 0.0), Some(5.0));
        assert_eq!(secs(2, 0.0), Some(30.0));
        assert_eq!(secs(3, 0.5), Some(126.0), "stretched by up to a tenth");
        assert_eq!(secs(3, 7.0), Some(132.0), "never by more");
        assert_eq!(secs(1, -1.0), Some(5.0), "never shortened");
        assert_eq!(secs(4, 0.0), None, "spent: failed");
        assert_eq!(secs(0, 0.0), None);
        let default = RetrySchedule::parse(RetrySchedule::DEFAULT).unwrap();
        let longest: Duration = default
            .delays()
            .iter()
            .map(|d| d.mul_f64(1.0 + JITTER))
            .sum();
        assert!(
            longest < Duration::from_secs(3 * 24 * 60 * 60),
            "{longest:?}"
        );
        for bad in ["", "5s,,30s", "5s,0s", "soon"] {
            assert!(RetrySchedule::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_report_shows_the_last_error_until_delivered_and_the_next_attempt_while_pending() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let failed = |attempt: u32, error: &str| FailedAttempt {
            attempt,
            failed_at: at,
            error: error.to_owned(),
        };
        let report = |state, failures: Vec<FailedAttempt>| {
            DeliveryReport::new("http://hooks".into(), state, 3, at, None, failures)
        };
        let two = || {
            vec![
                failed(1, "answered 500"),
                failed(2, "no answer within the timeout"),
            ]
        };

        let pending = report(DeliveryState::Pending, two());
        assert_eq!(
            pending.last_error.as_deref(),
            Some("no answer within the timeout")
        );
        assert_eq!(pending.next_attempt_at, Some(at));
        assert_eq!(pending.failed_attempts, two());

        let failed_for_good = report(DeliveryState::Failed, two());
        assert_eq!(
            failed_for_good.last_error.as_deref(),
            Some("no answer within the timeout")
        );
        assert_eq!(failed_for_good.next_attempt_at, None);

        let delivered = report(DeliveryState::Delivered, two());
        assert_eq!(delivered.last_error, None, "the third attempt got a 2xx");
        assert_eq!(delivered.failed_attempts.len(), 2, "the failures stay");

        assert_eq!(report(DeliveryState::Pending, vec![]).last_error, None);
    }
}
