-- Money is NUMERIC with two decimals: exact, never float. The CHECK constraints mirror
-- the domain rules so a bug that lets a bad value past the domain still cannot store it.
CREATE TABLE orders (
    id             BIGSERIAL PRIMARY KEY,
    customer_name  TEXT           NOT NULL CHECK (char_length(customer_name) BETWEEN 1 AND 255),
    customer_email TEXT           NOT NULL CHECK (char_length(customer_email) BETWEEN 3 AND 255),
    total_amount   NUMERIC(14, 2) NOT NULL CHECK (total_amount >= 0),
    status         TEXT           NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'processing', 'completed', 'cancelled')),
    created_at     TIMESTAMPTZ    NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ    NOT NULL DEFAULT now()
);

-- Serves the list order (newest first) and its keyset cursor.
CREATE INDEX orders_created_at_id_idx ON orders (created_at DESC, id DESC);
CREATE INDEX orders_status_idx ON orders (status);
CREATE INDEX orders_customer_email_idx ON orders (lower(customer_email));

CREATE TABLE order_items (
    id           BIGSERIAL PRIMARY KEY,
    order_id     BIGINT         NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_name TEXT           NOT NULL CHECK (char_length(product_name) BETWEEN 1 AND 255),
    quantity     INTEGER        NOT NULL CHECK (quantity BETWEEN 1 AND 1000000),
    unit_price   NUMERIC(12, 2) NOT NULL CHECK (unit_price >= 0),
    total_price  NUMERIC(14, 2) NOT NULL CHECK (total_price >= 0)
);

CREATE INDEX order_items_order_id_idx ON order_items (order_id);

-- One row per status change, written in the same transaction as the change itself.
-- from_status is NULL for the initial 'pending' recorded at creation.
CREATE TABLE order_status_history (
    id          BIGSERIAL PRIMARY KEY,
    order_id    BIGINT      NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    from_status TEXT        CHECK (from_status IN ('pending', 'processing', 'completed', 'cancelled')),
    to_status   TEXT        NOT NULL
                CHECK (to_status IN ('pending', 'processing', 'completed', 'cancelled')),
    changed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX order_status_history_order_id_idx ON order_status_history (order_id, id);
