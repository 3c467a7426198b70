-- The list filters (GET /api/v1/orders?status=&customer_email=&created_after=&created_before=).
-- Each index yields its orders already in list order (newest first) and serves the cursor's
-- (created_at, id) < (…) comparison as one range, so a filtered page reads about `limit`
-- entries however many orders there are. created_after / created_before use
-- orders_created_at_id_idx. These replace the single-column indexes, which they cover.
DROP INDEX orders_status_idx;
DROP INDEX orders_customer_email_idx;
CREATE INDEX orders_status_created_at_id_idx ON orders (status, created_at DESC, id DESC);
-- Case-insensitive e-mail match: the query compares lower(customer_email) = lower($1).
CREATE INDEX orders_email_created_at_id_idx
    ON orders (lower(customer_email), created_at DESC, id DESC);
