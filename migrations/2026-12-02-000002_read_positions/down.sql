DROP FUNCTION replication_heartbeat();
DROP FUNCTION replay_lag_seconds();
DROP FUNCTION wal_position();
