use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};

use super::{ConsistencyToken, ListFilter, OrderId};

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
/// Handed out as an opaque token that also binds the filter of the listing it came from, so
/// that a cursor sent with other filters is refused instead of paging through something else.
/// The legacy `<RFC 3339 time>_<id>` cursor (`2025-06-14T17:47:05Z_1`) is accepted too,
/// with any filter, as it carries none. Timestamps keep PostgreSQL's full microsecond
/// precision, so orders created within the same second are never skipped.
///
/// With reads served by replicas, the token also carries the point its page was read at, so
/// that the next page is read at that point or later, wherever it lands: a walk through the
/// pages never sees the list go back in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: OrderId,
    /// Where the page that handed it out was read; `None` when every read is on the primary.
    pub read_at: Option<ConsistencyToken>,
}

impl Cursor {
    /// Reads the `cursor` parameter of a listing with `filter`.
    pub fn parse(text: &str, filter: &ListFilter) -> Result<Self, String> {
        if let Some(cursor) = Self::parse_plain(text) {
            return Ok(cursor);
        }
        let (fingerprint, position) = URL_SAFE_NO_PAD
            .decode(text)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|token| {
                let (fingerprint, position) = token.split_once(TOKEN_SEPARATOR)?;
                let (position, read_at) = match position.split_once(READ_AT_SEPARATOR) {
                    Some((position, read_at)) => {
                        (position, Some(ConsistencyToken::parse(read_at).ok()?))
                    }
                    None => (position, None),
                };
                let cursor = Self {
                    read_at,
                    ..Self::parse_plain(position)?
                };
                Some((fingerprint.to_owned(), cursor))
            })
            .ok_or_else(|| format!("cursor {text:?} is not a next_cursor returned by this API"))?;
        if fingerprint != filter.fingerprint() {
            return Err(
                "this cursor belongs to a listing with other filters: send the same \
                        status, customer_email, created_after and created_before as for the page \
                        it came from, or start again without a cursor"
                    .into(),
            );
        }
        Ok(position)
    }

    /// The `next_cursor` to hand out: this position, bound to `filter`.
    pub fn token(&self, filter: &ListFilter) -> String {
        let mut token = format!("{}{TOKEN_SEPARATOR}{}", filter.fingerprint(), self.plain());
        if let Some(read_at) = self.read_at {
            token = format!("{token}{READ_AT_SEPARATOR}{read_at}");
        }
        URL_SAFE_NO_PAD.encode(token)
    }

    /// `<RFC 3339 time>_<id>`.
    fn parse_plain(text: &str) -> Option<Self> {
        let (time, id) = text.rsplit_once('_')?;
        Some(Self {
            created_at: DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc),
            id: OrderId::parse(id).ok()?,
            read_at: None,
        })
    }

    fn plain(&self) -> String {
        let time = self.created_at.to_rfc3339_opts(SecondsFormat::Micros, true);
        format!("{time}_{}", self.id.get())
    }
}

/// Between the filter's fingerprint and the position inside a token.
const TOKEN_SEPARATOR: char = '.';
/// Between the position and the point its page was read at, when there is one: a character
/// that RFC 3339 times never hold.
const READ_AT_SEPARATOR: char = '@';

/// One page request of the order list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: PageLimit,
    pub filter: ListFilter,
    pub after: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrderStatus;

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

    fn plain(text: &str) -> Cursor {
        Cursor::parse(text, &ListFilter::default()).expect(text)
    }

    fn pending() -> ListFilter {
        ListFilter {
            statuses: vec![OrderStatus::Pending],
            ..ListFilter::default()
        }
    }

    #[test]
    fn tokens_round_trip_with_microseconds_for_their_filter() {
        let cursor = plain("2025-06-14T17:47:05.123456Z_42");
        assert_eq!(cursor.id.get(), 42);
        for filter in [ListFilter::default(), pending()] {
            let token = cursor.token(&filter);
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)),
                "URL-safe as is: {token}"
            );
            assert_eq!(Cursor::parse(&token, &filter), Ok(cursor));
        }
        assert_eq!(
            cursor.plain(),
            "2025-06-14T17:47:05.123456Z_42",
            "microseconds are kept"
        );
    }

    #[test]
    fn tokens_keep_their_form_across_releases() {
        // Clients hold cursors across deployments, and the docs show this one.
        assert_eq!(
            plain("2026-11-24T13:05:01.123456Z_42").token(&ListFilter::default()),
            "NjY2ODdhYWRmODYyYmQ3Ny4yMDI2LTExLTI0VDEzOjA1OjAxLjEyMzQ1NlpfNDI"
        );
    }

    #[test]
    fn a_token_carries_the_point_its_page_was_read_at() {
        let read_at = ConsistencyToken::parse("16/B374D848").unwrap();
        let cursor = Cursor {
            read_at: Some(read_at),
            ..plain("2025-06-14T17:47:05.123456Z_42")
        };
        let token = cursor.token(&pending());
        assert_eq!(Cursor::parse(&token, &pending()), Ok(cursor));
        let tampered = URL_SAFE_NO_PAD.encode(format!(
            "{}.2025-06-14T17:47:05Z_1@not-a-point",
            pending().fingerprint()
        ));
        assert!(Cursor::parse(&tampered, &pending()).is_err());
    }

    #[test]
    fn a_token_is_refused_with_other_filters() {
        let cursor = plain("2025-06-14T17:47:05.123456Z_42");
        let error = Cursor::parse(&cursor.token(&pending()), &ListFilter::default()).unwrap_err();
        assert!(error.contains("other filters"), "{error}");
        assert!(Cursor::parse(&cursor.token(&ListFilter::default()), &pending()).is_err());
    }

    #[test]
    fn accepts_the_legacy_time_id_cursor_with_any_filter() {
        let cursor = plain("2025-06-14T17:47:05Z_1");
        assert_eq!(cursor.plain(), "2025-06-14T17:47:05.000000Z_1");
        let offset = plain("2025-06-14T19:47:05+02:00_1");
        assert_eq!(offset, cursor, "offsets are normalised to UTC");
        assert_eq!(
            Cursor::parse("2025-06-14T17:47:05Z_1", &pending()),
            Ok(cursor)
        );
    }

    #[test]
    fn rejects_malformed_cursors() {
        let tampered = URL_SAFE_NO_PAD.encode("0123456789abcdef.not-a-position");
        for bad in [
            "",
            "garbage",
            "2025-06-14T17:47:05Z",
            "2025-06-14T17:47:05Z_",
            "2025-06-14T17:47:05Z_0",
            "2025-06-14T17:47:05Z_-3",
            "2025-06-14_1",
            "_1",
            &tampered,
        ] {
            assert!(
                Cursor::parse(bad, &ListFilter::default()).is_err(),
                "cursor {bad:?} must be rejected"
            );
        }
    }
}
