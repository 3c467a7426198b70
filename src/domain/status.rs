use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// Where an order is in its lifecycle.
///
/// ```text
/// pending ──► processing ──► completed
///    │            │
///    └──► cancelled ◄┘
/// ```
/// `completed` and `cancelled` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Pending,
    Processing,
    Completed,
    Cancelled,
}

/// What applying a requested status to the current one means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The order already has the requested status: PUT is idempotent, nothing is written.
    Unchanged,
    /// A legal move; it must be written together with its history row.
    Move { from: OrderStatus, to: OrderStatus },
}

/// One recorded change of an order's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct StatusChange {
    /// `null` for the first entry, written when the order was created.
    #[schema(required = true)]
    pub from_status: Option<OrderStatus>,
    pub to_status: OrderStatus,
    pub changed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot change status from {from} to {to}")]
pub struct IllegalTransition {
    pub from: OrderStatus,
    pub to: OrderStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}: expected one of pending, processing, completed, cancelled")]
pub struct UnknownStatus(pub String);

impl OrderStatus {
    pub const ALL: [OrderStatus; 4] = [
        Self::Pending,
        Self::Processing,
        Self::Completed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The statuses this one may move to.
    pub fn next(self) -> &'static [OrderStatus] {
        match self {
            Self::Pending => &[Self::Processing, Self::Cancelled],
            Self::Processing => &[Self::Completed, Self::Cancelled],
            Self::Completed | Self::Cancelled => &[],
        }
    }

    pub fn transition(self, to: OrderStatus) -> Result<Transition, IllegalTransition> {
        if self == to {
            Ok(Transition::Unchanged)
        } else if self.next().contains(&to) {
            Ok(Transition::Move { from: self, to })
        } else {
            Err(IllegalTransition { from: self, to })
        }
    }
}

impl FromStr for OrderStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::*;
    use super::*;

    #[test]
    fn full_transition_table() {
        // (from, to, allowed?) for all 16 pairs; same-status pairs are idempotent no-ops.
        let table = [
            (Pending, Pending, true),
            (Pending, Processing, true),
            (Pending, Completed, false),
            (Pending, Cancelled, true),
            (Processing, Pending, false),
            (Processing, Processing, true),
            (Processing, Completed, true),
            (Processing, Cancelled, true),
            (Completed, Pending, false),
            (Completed, Processing, false),
            (Completed, Completed, true),
            (Completed, Cancelled, false),
            (Cancelled, Pending, false),
            (Cancelled, Processing, false),
            (Cancelled, Completed, false),
            (Cancelled, Cancelled, true),
        ];
        assert_eq!(table.len(), OrderStatus::ALL.len() * OrderStatus::ALL.len());
        for (from, to, allowed) in table {
            let got = from.transition(to);
            match (allowed, got) {
                (true, Ok(Transition::Unchanged)) => assert_eq!(from, to),
                (true, Ok(Transition::Move { from: f, to: t })) => assert_eq!((f, t), (from, to)),
                (false, Err(e)) => assert_eq!(e, IllegalTransition { from, to }),
                (_, got) => panic!("{from} -> {to}: expected allowed={allowed}, got {got:?}"),
            }
        }
    }

    #[test]
    fn parses_only_the_four_lowercase_names() {
        for status in OrderStatus::ALL {
            assert_eq!(status.as_str().parse::<OrderStatus>(), Ok(status));
        }
        for bad in ["", "shipped", "Pending", " pending", "PROCESSING"] {
            assert!(
                bad.parse::<OrderStatus>().is_err(),
                "{bad:?} must be rejected"
            );
        }
    }
}
