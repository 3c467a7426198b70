//! Where a node stands in the write-ahead log, for serving reads from replicas: the functions
//! of migration 2026-12-02-000002, sent as prepared statements like every other query.

use std::time::Duration;

use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::StoreError;
use crate::domain::ConsistencyToken;

diesel::define_sql_function!(fn wal_position() -> BigInt);
diesel::define_sql_function!(fn replay_lag_seconds() -> Nullable<Double>);
diesel::define_sql_function!(fn replication_heartbeat() -> BigInt);

/// What a read on a connection's node would see, asked before the read.
#[derive(Debug, Clone, Copy)]
pub struct Standing {
    /// Every read that starts after this question sees at least this point.
    pub position: ConsistencyToken,
    /// How old the node's data may be, at most; `None` on a standby that has replayed nothing
    /// since it started.
    pub lag: Option<Duration>,
}

/// The node's standing: on the primary, where it has written up to with no lag.
pub async fn standing(conn: &AsyncPgConnection) -> Result<Standing, StoreError> {
    let (position, lag): (i64, Option<f64>) =
        diesel::select((wal_position(), replay_lag_seconds()))
            .get_result(&mut &*conn)
            .await?;
    Ok(Standing {
        position: token(position)?,
        // A clock step on the primary can make the age negative: none then.
        lag: lag.and_then(|seconds| Duration::try_from_secs_f64(seconds.max(0.0)).ok()),
    })
}

/// The point every read or commit that finished before this question is at or before: after a
/// commit, its position; after a read, a point that read's snapshot does not pass.
pub async fn current_position(conn: &AsyncPgConnection) -> Result<ConsistencyToken, StoreError> {
    token(
        diesel::select(wal_position())
            .get_result(&mut &*conn)
            .await?,
    )
}

/// Commits a transaction that writes nothing else: its commit record, replayed, tells a
/// standby's readers that its data is that fresh.
pub async fn heartbeat(conn: &AsyncPgConnection) -> Result<(), StoreError> {
    diesel::select(replication_heartbeat())
        .get_result::<i64>(&mut &*conn)
        .await?;
    Ok(())
}

fn token(bytes: i64) -> Result<ConsistencyToken, StoreError> {
    u64::try_from(bytes)
        .map(ConsistencyToken::from_wal_bytes)
        .map_err(|_| StoreError::Impossible(format!("a negative WAL position: {bytes}")))
}
