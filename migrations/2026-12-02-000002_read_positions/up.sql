-- Where a node stands in the write-ahead log, for reads from replicas (docs/SCALING.md). As
-- functions, so that the service sends them as prepared statements like every other query; in
-- PL/pgSQL, which plans its statements once per session, where an SQL function that is not
-- inlined plans its body again at every call.

-- The WAL position a read on this node is at least at: on a standby, what it has replayed; on
-- the primary, what it has inserted (every committed transaction is before it, even one
-- committed with synchronous_commit off). In bytes from 0/0, a number diesel reads as it is.
CREATE FUNCTION wal_position() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  RETURN (COALESCE(pg_last_wal_replay_lsn(), pg_current_wal_insert_lsn()) - '0/0'::pg_lsn)::bigint;
END
$$;

-- How far behind the primary this node's data is, in seconds: 0 on the primary and on a
-- standby that has replayed all it received; else the age of the last transaction it
-- replayed. NULL on a standby that receives nothing (no WAL receiver), whose data may be any
-- age.
CREATE FUNCTION replay_lag_seconds() RETURNS double precision
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF NOT pg_is_in_recovery() THEN
    RETURN 0;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_stat_wal_receiver) THEN
    RETURN NULL;
  END IF;
  IF pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN
    RETURN 0;
  END IF;
  RETURN extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp());
END
$$;
