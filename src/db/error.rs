use diesel::result::{ConnectionError, DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::{PoolError, PoolableConnection};
use diesel_async::AsyncPgConnection;

use crate::domain::{IllegalTransition, VersionMismatch};
use crate::metrics;

/// Why a storage operation did not give its result.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("order not found")]
    NotFound,
    #[error(transparent)]
    IllegalTransition(#[from] IllegalTransition),
    #[error("this Idempotency-Key was already used with a different request body")]
    IdempotencyKeyReused,
    #[error(transparent)]
    VersionMismatch(#[from] VersionMismatch),
    /// No connection could be had in time, or the connection broke: worth retrying later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A constraint refused the write. The domain should have caught it first, so this is a bug.
    #[error("database refused the write: {0}")]
    ConstraintViolated(DieselError),
    #[error("database error: {0}")]
    Query(DieselError),
    /// The database answered something its statements cannot produce: a bug on our side or
    /// a corrupted database, never the client's doing.
    #[error("impossible database answer: {0}")]
    Impossible(String),
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

/// Every database error becomes a `StoreError` here, so this is where they are counted.
impl From<DieselError> for StoreError {
    fn from(error: DieselError) -> Self {
        if let Some(kind) = error_kind(&error) {
            metrics::db_error(kind);
        }
        match error {
            DieselError::NotFound => Self::NotFound,
            DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation
                | DatabaseErrorKind::CheckViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::NotNullViolation,
                _,
            ) => Self::ConstraintViolated(error),
            // A read-only transaction means the server was demoted under us (a failover):
            // the next connection finds the new primary, so the client should retry.
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection
                | DatabaseErrorKind::UnableToSendCommand
                | DatabaseErrorKind::ReadOnlyTransaction,
                _,
            )
            | DieselError::BrokenTransactionManager => Self::Unavailable(error.to_string()),
            DieselError::DatabaseError(_, ref info) if ends_the_session(info.message()) => {
                Self::Unavailable(error.to_string())
            }
            other => Self::Query(other),
        }
    }
}

/// Whether PostgreSQL is ending the session with this error: a shutdown (a switchover stops
/// the old primary with "terminating connection due to administrator command"), a crash of
/// another backend, a timeout. The session is gone and nothing of its open transaction was
/// committed, so the request may be retried elsewhere. diesel does not pass the SQLSTATE on
/// (class 57 and the session timeouts), so this reads PostgreSQL's message, whose English text
/// starts so for every one of them; a server with other `lc_messages` leaves these errors to
/// `on_connection`, which sees them once the socket has closed.
fn ends_the_session(message: &str) -> bool {
    message.starts_with("terminating connection")
}

/// A connection of its own (the listener's, the dispatcher's) that could not be made.
impl From<ConnectionError> for StoreError {
    fn from(error: ConnectionError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

impl From<bb8::RunError<PoolError>> for StoreError {
    fn from(error: bb8::RunError<PoolError>) -> Self {
        match error {
            bb8::RunError::TimedOut => {
                metrics::db_error("pool_timeout");
                Self::Unavailable("timed out waiting for a pooled connection".into())
            }
            bb8::RunError::User(e) => {
                metrics::db_error("connect");
                Self::Unavailable(e.to_string())
            }
        }
    }
}

/// The `kind` label of a database error; `None` for "no such row", which is an answer.
fn error_kind(error: &DieselError) -> Option<&'static str> {
    Some(match error {
        DieselError::NotFound => return None,
        DieselError::DatabaseError(kind, _) => match kind {
            DatabaseErrorKind::UniqueViolation => "unique_violation",
            DatabaseErrorKind::ForeignKeyViolation => "foreign_key_violation",
            DatabaseErrorKind::NotNullViolation => "not_null_violation",
            DatabaseErrorKind::CheckViolation => "check_violation",
            DatabaseErrorKind::SerializationFailure => "serialization_failure",
            DatabaseErrorKind::ReadOnlyTransaction => "read_only_transaction",
            DatabaseErrorKind::ClosedConnection => "closed_connection",
            DatabaseErrorKind::UnableToSendCommand => "unable_to_send_command",
            _ => "other_database_error",
        },
        DieselError::DeserializationError(_) => "deserialization",
        DieselError::SerializationError(_) => "serialization",
        DieselError::BrokenTransactionManager => "broken_transaction_manager",
        _ => "other",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database_error(message: &str) -> StoreError {
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, Box::new(message.to_owned())).into()
    }

    #[test]
    fn a_session_the_server_ends_is_unavailable_not_a_bug() {
        for message in [
            "terminating connection due to administrator command",
            "terminating connection because of crash of another server process",
            "terminating connection due to idle-in-transaction timeout",
        ] {
            assert!(
                matches!(database_error(message), StoreError::Unavailable(_)),
                "{message}"
            );
        }
        assert!(matches!(
            database_error("relation \"orders\" does not exist"),
            StoreError::Query(_)
        ));
    }
}
