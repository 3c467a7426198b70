use chrono::{DateTime, SecondsFormat, Utc};

use super::fingerprint::Fingerprint;
use super::validation::Collector;
use super::{Email, OrderStatus, ValidationErrors};

/// The list filters as the client sent them, before parsing.
#[derive(Debug, Default, Clone, Copy)]
pub struct FilterInput<'a> {
    /// One status or several, comma-separated.
    pub status: Option<&'a str>,
    pub customer_email: Option<&'a str>,
    /// RFC 3339.
    pub created_after: Option<&'a str>,
    /// RFC 3339.
    pub created_before: Option<&'a str>,
}

/// Which orders a list shows. Each part is optional; the parts combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Orders in any of these statuses, in `OrderStatus::ALL` order without repeats; empty
    /// means any status.
    pub statuses: Vec<OrderStatus>,
    /// Orders with this e-mail address, ignoring case.
    pub customer_email: Option<Email>,
    /// Orders created strictly after this instant.
    pub created_after: Option<DateTime<Utc>>,
    /// Orders created strictly before this instant.
    pub created_before: Option<DateTime<Utc>>,
}

impl ListFilter {
    /// Parses the filters, reporting every bad one at once.
    pub fn parse(input: FilterInput<'_>) -> Result<Self, ValidationErrors> {
        let mut errors = Collector::default();
        let statuses = errors.check(
            || "status".into(),
            input.status.map_or(Ok(Vec::new()), parse_statuses),
        );
        let customer_email = errors.check(
            || "customer_email".into(),
            input.customer_email.map(Email::parse).transpose(),
        );
        let created_after = errors.check(
            || "created_after".into(),
            input.created_after.map(parse_time).transpose(),
        );
        let created_before = errors.check(
            || "created_before".into(),
            input.created_before.map(parse_time).transpose(),
        );
        let range = match (created_after, created_before) {
            (Some(Some(after)), Some(Some(before))) if after >= before => errors.check(
                || "created_before".into(),
                Err::<(), _>("must be later than created_after".into()),
            ),
            _ => Some(()),
        };
        let filter = (|| {
            range?;
            Some(Self {
                statuses: statuses?,
                customer_email: customer_email?,
                created_after: created_after?,
                created_before: created_before?,
            })
        })();
        errors.finish(filter)
    }

    /// 16 hex digits that differ between filters that select different orders (with
    /// overwhelming probability), so that a cursor can carry the filter it was issued for.
    pub fn fingerprint(&self) -> String {
        let time = |t: Option<DateTime<Utc>>| {
            t.map_or(String::new(), |t| {
                t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            })
        };
        let statuses: Vec<&str> = self.statuses.iter().map(|s| s.as_str()).collect();
        let email = self
            .customer_email
            .as_ref()
            .map_or(String::new(), |e| e.as_str().to_lowercase());
        let mut fingerprint = Fingerprint::default();
        fingerprint
            .field(&statuses.join(","))
            .field(&email)
            .field(&time(self.created_after))
            .field(&time(self.created_before));
        let mut hex = fingerprint.hex();
        hex.truncate(16);
        hex
    }
}

/// `pending` or `pending,processing`: each a status name, repeats ignored.
fn parse_statuses(raw: &str) -> Result<Vec<OrderStatus>, String> {
    let named = raw
        .split(',')
        .map(|name| name.trim().parse::<OrderStatus>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok(OrderStatus::ALL
        .into_iter()
        .filter(|status| named.contains(status))
        .collect())
}

fn parse_time(raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            format!(
                "{raw:?} is not an RFC 3339 time like 2026-11-24T13:05:01Z \
                 (send a `+` in an offset as %2B)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::*;

    fn filter(input: FilterInput<'_>) -> ListFilter {
        ListFilter::parse(input).expect("a valid filter")
    }

    fn bad_fields(input: FilterInput<'_>) -> Vec<String> {
        ListFilter::parse(input)
            .expect_err("an invalid filter")
            .0
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn no_parameters_select_every_order() {
        assert_eq!(filter(FilterInput::default()), ListFilter::default());
    }

    #[test]
    fn statuses_are_one_or_several_comma_separated() {
        let cases: &[(&str, Option<&[OrderStatus]>)] = &[
            ("pending", Some(&[Pending])),
            ("cancelled,pending", Some(&[Pending, Cancelled])),
            ("processing, completed", Some(&[Processing, Completed])),
            ("pending,pending", Some(&[Pending])),
            ("", None),
            ("pending,", None),
            ("shipped", None),
            ("Pending", None),
        ];
        for (raw, expected) in cases {
            let got = ListFilter::parse(FilterInput {
                status: Some(raw),
                ..FilterInput::default()
            });
            assert_eq!(
                got.ok().map(|f| f.statuses),
                expected.map(<[_]>::to_vec),
                "status={raw:?}"
            );
        }
    }

    #[test]
    fn times_are_rfc_3339_and_the_range_must_not_be_empty() {
        let parsed = filter(FilterInput {
            created_after: Some("2026-11-24T14:05:01+01:00"),
            created_before: Some("2026-11-24T13:05:01.000001Z"),
            ..FilterInput::default()
        });
        assert_eq!(
            parsed.created_after.map(|t| t.to_rfc3339()),
            Some("2026-11-24T13:05:01+00:00".into()),
            "offsets are normalised to UTC"
        );
        for bad in ["2026-11-24", "2026-11-24T13:05:01", "yesterday", ""] {
            let fields = bad_fields(FilterInput {
                created_after: Some(bad),
                ..FilterInput::default()
            });
            assert_eq!(fields, ["created_after"], "created_after={bad:?}");
        }
        for (after, before) in [
            ("2026-11-24T13:05:01Z", "2026-11-24T13:05:01Z"),
            ("2026-11-24T13:05:02Z", "2026-11-24T13:05:01Z"),
        ] {
            let fields = bad_fields(FilterInput {
                created_after: Some(after),
                created_before: Some(before),
                ..FilterInput::default()
            });
            assert_eq!(fields, ["created_before"], "{after} .. {before}");
        }
    }

    #[test]
    fn every_bad_filter_is_reported_at_once() {
        let fields = bad_fields(FilterInput {
            status: Some("shipped"),
            customer_email: Some("not-an-email"),
            created_after: Some("soon"),
            created_before: Some("later"),
        });
        assert_eq!(
            fields,
            [
                "status",
                "customer_email",
                "created_after",
                "created_before"
            ]
        );
    }

    #[test]
    fn the_fingerprint_tells_filters_apart_but_not_spellings_of_one() {
        let of = |input: FilterInput<'_>| filter(input).fingerprint();
        let email = |e| FilterInput {
            customer_email: Some(e),
            ..FilterInput::default()
        };
        let status = |s| FilterInput {
            status: Some(s),
            ..FilterInput::default()
        };
        assert_eq!(of(email("John@Example.com")), of(email("john@example.com")));
        assert_eq!(
            of(status("pending,cancelled")),
            of(status("cancelled,pending"))
        );
        let distinct = [
            of(FilterInput::default()),
            of(email("john@example.com")),
            of(status("pending")),
            of(status("pending,cancelled")),
            of(FilterInput {
                created_after: Some("2026-11-24T13:05:01Z"),
                ..FilterInput::default()
            }),
            of(FilterInput {
                created_before: Some("2026-11-24T13:05:01Z"),
                ..FilterInput::default()
            }),
        ];
        for (i, a) in distinct.iter().enumerate() {
            assert_eq!(a.len(), 16);
            for b in &distinct[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
