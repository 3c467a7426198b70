-- Where a node stands in the write-ahead log, for reads from replicas (docs/SCALING.md). As
-- functions, so that the service sends them as prepared statements like every other query;
-- each body is one expression with no subquery, so that PostgreSQL inlines it into the
-- statement's plan instead of planning it at every call.

-- The WAL position a read on this node is at least at: on a standby, what it has replayed; on
-- the primary, what it has inserted (every committed transaction is before it, even one
-- committed with synchronous_commit off). In bytes from 0/0, a number diesel reads as it is.
CREATE FUNCTION wal_position() RETURNS bigint
LANGUAGE sql VOLATILE AS $$
  SELECT (COALESCE(pg_last_wal_replay_lsn(), pg_current_wal_insert_lsn()) - '0/0'::pg_lsn)::bigint
$$;

-- How old this node's data may be, in seconds: 0 on the primary; on a standby, the age of the
-- last transaction it replayed, since everything committed before that is there. An upper
-- bound: a standby cut off from the primary ages, and so does one whose primary commits
-- nothing. NULL on a standby that has replayed no transaction since it started.
CREATE FUNCTION replay_lag_seconds() RETURNS double precision
LANGUAGE sql VOLATILE AS $$
  SELECT CASE
    WHEN pg_is_in_recovery()
      THEN extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::double precision
    ELSE 0
  END
$$;

-- A transaction that writes nothing but its commit record. While reads go to replicas, every
-- instance runs it four times per DB_READ_MAX_LAG, so that on a standby that keeps up, the last
-- replayed transaction is never older than that, even while no order is written.
CREATE FUNCTION replication_heartbeat() RETURNS bigint
LANGUAGE sql VOLATILE AS $$
  SELECT pg_current_xact_id()::text::bigint
$$;
