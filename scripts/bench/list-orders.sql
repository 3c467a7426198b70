-- pgbench script: the two statements of one GET /api/v1/orders?limit=10, in the server's own
-- text: the page (one order more than asked, which tells whether another page follows), then
-- the items of its ten orders. Pass -D page_ids='{…}': the ids of the page, newest first, as
-- the server binds them to the second statement.
\set limit 11
SELECT "orders"."id", "orders"."customer_name", "orders"."customer_email", "orders"."total_amount", "orders"."status", "orders"."created_at", "orders"."updated_at" FROM "orders" ORDER BY "orders"."created_at" DESC, "orders"."id" DESC LIMIT :limit;
SELECT "order_items"."id", "order_items"."order_id", "order_items"."product_name", "order_items"."quantity", "order_items"."unit_price", "order_items"."total_price" FROM "order_items" WHERE ("order_items"."order_id" = ANY(:page_ids));
