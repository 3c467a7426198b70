//! An order's version as HTTP clients see it: an entity tag made of the order's id and the
//! time of its last change, to the microsecond (the precision PostgreSQL keeps), so every
//! status change makes a new one.

use chrono::{DateTime, Utc};

use super::{Order, OrderId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderVersion(String);

impl OrderVersion {
    pub fn of(id: OrderId, updated_at: DateTime<Utc>) -> Self {
        Self(format!("{}-{}", id.get(), updated_at.timestamp_micros()))
    }

    /// The entity tag's opaque text, without quotes.
    pub fn tag(&self) -> &str {
        &self.0
    }
}

impl Order {
    pub fn version(&self) -> OrderVersion {
        OrderVersion::of(self.id, self.updated_at)
    }
}

/// `If-Match` on a change: the versions the client is willing to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// `*`: any version of an existing order.
    AnyVersion,
    /// One of these tags (strong comparison: weak tags were already left out).
    OneOf(Vec<String>),
}

impl Precondition {
    pub fn accepts(&self, version: &OrderVersion) -> bool {
        match self {
            Self::AnyVersion => true,
            Self::OneOf(tags) => tags.iter().any(|tag| tag == version.tag()),
        }
    }
}

/// The order changed since the client read it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the order changed since it was read: its version is now {}", .current.tag())]
pub struct VersionMismatch {
    pub current: OrderVersion,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn version(id: i64, micros: i64) -> OrderVersion {
        OrderVersion::of(
            OrderId::from_stored(id),
            Utc.timestamp_micros(micros).unwrap(),
        )
    }

    #[test]
    fn a_version_changes_with_the_id_and_with_each_microsecond() {
        let v = version(42, 1_764_000_000_123_456);
        assert_eq!(v.tag(), "42-1764000000123456");
        assert_ne!(v, version(42, 1_764_000_000_123_457));
        assert_ne!(v, version(43, 1_764_000_000_123_456));
    }

    #[test]
    fn a_precondition_accepts_only_the_versions_it_names() {
        let v = version(42, 7);
        assert!(Precondition::AnyVersion.accepts(&v));
        assert!(Precondition::OneOf(vec!["1-1".into(), "42-7".into()]).accepts(&v));
        assert!(!Precondition::OneOf(vec!["42-8".into()]).accepts(&v));
        assert!(!Precondition::OneOf(vec![]).accepts(&v));
    }
}
