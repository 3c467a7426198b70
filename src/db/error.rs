use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::{PoolError, PoolableConnection};
use diesel_async::AsyncPgConnection;

use crate::domain::IllegalTransition;

/// Why a storage operation did not give its result.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("order not found")]
    NotFound,
    #[error(transparent)]
    IllegalTransition(#[from] IllegalTransition),
    #[error("this Idempotency-Key was already used with a different request body")]
    IdempotencyKeyReused,
    /// No connection could be had in time, or the connection broke: worth retrying later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A constraint refused the write. The domain should have caught it first, so this is a bug.
    #[error("database refused the write: {0}")]
    Rejected(DieselError),
    #[error("database error: {0}")]
    Query(DieselError),
}

impl StoreError {
    /// A query that failed on a connection that is now closed hit a database going away
    /// (restart, administrator shutdown): worth retrying later, not a bug.
    pub fn on_connection(self, conn: &mut AsyncPgConnection) -> Self {
        match self {
            Self::Query(e) if conn.is_broken() => Self::Unavailable(e.to_string()),
            other => other,
        }
    }
}

impl From<DieselError> for StoreError {
    fn from(error: DieselError) -> Self {
        match error {
            DieselError::NotFound => Self::NotFound,
            DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation
                | DatabaseErrorKind::CheckViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::NotNullViolation,
                _,
            ) => Self::Rejected(error),
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            )
            | DieselError::BrokenTransactionManager => Self::Unavailable(error.to_string()),
            other => Self::Query(other),
        }
    }
}

impl From<bb8::RunError<PoolError>> for StoreError {
    fn from(error: bb8::RunError<PoolError>) -> Self {
        match error {
            bb8::RunError::TimedOut => {
                Self::Unavailable("timed out waiting for a pooled connection".into())
            }
            bb8::RunError::User(e) => Self::Unavailable(e.to_string()),
        }
    }
}
