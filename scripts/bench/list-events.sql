-- pgbench script: the three statements of one GET /api/v1/events?limit=10, the feed's first
-- page, in the server's own text: the page, then (pipelined, as the server sends them) the
-- orders its `order.created` events stand for and their items. Pass -D order_ids='{…}': the
-- order ids of the page's `order.created` events, in feed order, as the server binds them.
-- The server binds NULL for "no type filter", which pgbench cannot bind: those two are written
-- as NULL, which lets PostgreSQL drop a filter that costs the server a comparison per row.
\set after_tx 0
\set after_id 0
SELECT id, tx_id::text AS tx, type AS kind, from_status, to_status, data::text AS data, occurred_at, order_id FROM order_events WHERE (tx_id, id) > (:after_tx::xid8, :after_id) AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) AND (NULL::text[] IS NULL OR type = ANY (NULL)) ORDER BY tx_id, id LIMIT 10;
\startpipeline
SELECT "orders"."id", "orders"."customer_name", "orders"."customer_email", "orders"."total_amount", "orders"."status", "orders"."created_at", "orders"."updated_at" FROM "orders" WHERE ("orders"."id" = ANY(:order_ids));
SELECT "order_items"."id", "order_items"."order_id", "order_items"."product_name", "order_items"."quantity", "order_items"."unit_price", "order_items"."total_price" FROM "order_items" WHERE ("order_items"."order_id" = ANY(:order_ids));
\endpipeline
