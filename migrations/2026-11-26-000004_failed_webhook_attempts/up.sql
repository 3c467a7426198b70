-- What each failed webhook attempt got, so that `GET /api/v1/events/{id}/deliveries` shows every
-- answer, not only the last. Only failures are written: a delivery answered 2xx at once (nearly
-- all of them) costs nothing more, and its success is the delivery row's `delivered_at`.
--
-- No foreign key: a row is only ever inserted by the statement that records the failure on its
-- delivery row (so the delivery exists), and a key's per-row triggers would slow the retention
-- purge, which takes rows away with their events below instead.
CREATE TABLE webhook_failed_attempts (
    event_id  BIGINT      NOT NULL,
    url       TEXT        NOT NULL,
    attempt   INTEGER     NOT NULL,
    failed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    error     TEXT        NOT NULL,
    PRIMARY KEY (event_id, url, attempt)
);

-- The last failed attempt's error is now that attempt's row (dated by this migration: when it
-- failed was not kept).
INSERT INTO webhook_failed_attempts (event_id, url, attempt, error)
SELECT event_id, url, attempts, last_error FROM webhook_deliveries WHERE last_error IS NOT NULL;
ALTER TABLE webhook_deliveries DROP COLUMN last_error;

CREATE OR REPLACE FUNCTION delete_deliveries_of_deleted_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM webhook_failed_attempts WHERE event_id IN (SELECT id FROM deleted);
    DELETE FROM webhook_deliveries WHERE event_id IN (SELECT id FROM deleted);
    RETURN NULL;
END $$;
