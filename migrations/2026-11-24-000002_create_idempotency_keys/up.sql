-- A client's Idempotency-Key and the order it created, written in the same transaction as the
-- order: the key and the order exist together or not at all.
CREATE TABLE idempotency_keys (
    key          TEXT        PRIMARY KEY CHECK (char_length(key) BETWEEN 1 AND 255),
    request_hash TEXT        NOT NULL,
    order_id     BIGINT      NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Serves the purge of keys older than a day.
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
