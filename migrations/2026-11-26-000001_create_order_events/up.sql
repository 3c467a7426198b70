-- The outbox: one row per create and per status change, written in the transaction of the
-- change itself, so an event exists exactly when its change was committed.
CREATE TABLE order_events (
    id          BIGSERIAL   PRIMARY KEY,
    -- The writing transaction. The feed hands out an event only once every transaction older
    -- than the oldest still running has ended, ordered by (tx_id, id): ids are taken before
    -- commit, so id order alone would let a late commit slip in behind a consumer.
    tx_id       XID8        NOT NULL DEFAULT pg_current_xact_id(),
    order_id    BIGINT      NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    type        TEXT        NOT NULL CHECK (type IN ('order.created', 'order.status_changed')),
    from_status TEXT,
    to_status   TEXT,
    -- The order as the API shows it after the change, as the text it was written.
    data        JSON        NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((type = 'order.status_changed') = (from_status IS NOT NULL AND to_status IS NOT NULL))
);

-- The feed's order and its resumption point.
CREATE INDEX order_events_position_idx ON order_events (tx_id, id);
-- The retention purge.
CREATE INDEX order_events_occurred_at_idx ON order_events (occurred_at);

-- One row per (event, webhook URL), written with the event; the dispatchers of every instance
-- claim due rows with FOR UPDATE SKIP LOCKED.
CREATE TABLE webhook_deliveries (
    event_id        BIGINT      NOT NULL REFERENCES order_events (id) ON DELETE CASCADE,
    url             TEXT        NOT NULL,
    state           TEXT        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT,
    delivered_at    TIMESTAMPTZ,
    PRIMARY KEY (event_id, url)
);

CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';
