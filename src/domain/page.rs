use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};

use super::OrderId;

const DEFAULT_LIMIT: u8 = 10;
const MAX_LIMIT: u8 = 100;

/// How many orders one page holds: 1..=100, 10 when not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u8);

impl PageLimit {
    pub fn parse(text: Option<&str>) -> Result<Self, String> {
        let Some(text) = text else {
            return Ok(Self(DEFAULT_LIMIT));
        };
        match text.parse::<u8>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(Self(n)),
            _ => Err(format!(
                "limit must be an integer between 1 and {MAX_LIMIT}, got {text:?}"
            )),
        }
    }

    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

/// A position in the newest-first list: the `(created_at, id)` of the last order already seen.
///
/// Written as `<RFC 3339 timestamp with microseconds>_<id>`. Timestamps keep PostgreSQL's full
/// microsecond precision, so orders created within the same second are never skipped; the seed's
/// second-precision form (`2025-06-14T17:47:05Z_1`) is accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: OrderId,
}

impl Cursor {
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = || {
            format!("cursor {text:?} is not a cursor returned by this API (expected <RFC 3339 time>_<id>)")
        };
        let (time, id) = text.rsplit_once('_').ok_or_else(invalid)?;
        let created_at = DateTime::parse_from_rfc3339(time).map_err(|_| invalid())?;
        let id = OrderId::parse(id).map_err(|_| invalid())?;
        Ok(Self {
            created_at: created_at.with_timezone(&Utc),
            id,
        })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = self.created_at.to_rfc3339_opts(SecondsFormat::Micros, true);
        write!(f, "{time}_{}", self.id.get())
    }
}

/// One page request of the order list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: PageLimit,
    pub after: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_bounds() {
        let cases = [
            (None, Some(10)),
            (Some("1"), Some(1)),
            (Some("100"), Some(100)),
            (Some("0"), None),
            (Some("101"), None),
            (Some("-1"), None),
            (Some("ten"), None),
            (Some(""), None),
        ];
        for (text, expected) in cases {
            assert_eq!(
                PageLimit::parse(text).ok().map(PageLimit::get),
                expected,
                "limit {text:?}"
            );
        }
    }

    #[test]
    fn cursor_round_trips_with_microseconds() {
        let cursor = Cursor::parse("2025-06-14T17:47:05.123456Z_42").unwrap();
        assert_eq!(cursor.id.get(), 42);
        assert_eq!(cursor.to_string(), "2025-06-14T17:47:05.123456Z_42");
        assert_eq!(Cursor::parse(&cursor.to_string()), Ok(cursor));
    }

    #[test]
    fn accepts_the_seed_cursor_form() {
        let cursor = Cursor::parse("2025-06-14T17:47:05Z_1").unwrap();
        assert_eq!(cursor.to_string(), "2025-06-14T17:47:05.000000Z_1");
        let offset = Cursor::parse("2025-06-14T19:47:05+02:00_1").unwrap();
        assert_eq!(offset, cursor, "offsets are normalised to UTC");
    }

    #[test]
    fn rejects_malformed_cursors() {
        for bad in [
            "",
            "garbage",
            "2025-06-14T17:47:05Z",
            "2025-06-14T17:47:05Z_",
            "2025-06-14T17:47:05Z_0",
            "2025-06-14T17:47:05Z_-3",
            "2025-06-14_1",
            "_1",
        ] {
            assert!(
                Cursor::parse(bad).is_err(),
                "cursor {bad:?} must be rejected"
            );
        }
    }
}
