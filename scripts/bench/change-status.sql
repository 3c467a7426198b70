-- pgbench script: the transaction of one PUT /api/v1/orders/{id}/status {"status":"processing"}
-- on a pending order, in the server's own text: lock the order, move it, write its history row,
-- read it back (pipelined, as the server sends the two), and write its event with no webhook
-- delivery. Each transaction moves the next order of its client, so that no two move the same
-- one: client c moves min_id + c, then min_id + c + clients, and so on. Pass -D min_id=…
-- -D max_id=… (pending orders, as many as the run moves: past max_id it starts again at
-- min_id, moving orders a second time with the same statements), -D clients=<-c> -D moved=0
-- (each client's count of its moves, kept from one transaction to the next), -D from=pending
-- -D to=processing -D urls='{}' -D order_json='{…}' (an order as JSON, the size of the
-- event's copy).
-- The server also sends a NOTIFY, in a transaction of its own, at most every 20 ms whatever the
-- rate: left out.
\set id :min_id + (:client_id + :moved * :clients) % (:max_id - :min_id + 1)
\set moved :moved + 1
\set lease_micros 0
BEGIN;
SELECT "orders"."status", "orders"."updated_at" FROM "orders" WHERE ("orders"."id" = :id) FOR UPDATE;
UPDATE "orders" SET "status" = :to, "updated_at" = CURRENT_TIMESTAMP WHERE ("orders"."id" = :id);
INSERT INTO "order_status_history" ("order_id", "from_status", "to_status") VALUES (:id, :from, :to);
\startpipeline
SELECT "orders"."id", "orders"."customer_name", "orders"."customer_email", "orders"."total_amount", "orders"."status", "orders"."created_at", "orders"."updated_at" FROM "orders" WHERE ("orders"."id" = :id);
SELECT "order_items"."id", "order_items"."order_id", "order_items"."product_name", "order_items"."quantity", "order_items"."unit_price", "order_items"."total_price" FROM "order_items" WHERE ("order_items"."order_id" = :id) ORDER BY "order_items"."id";
\endpipeline
WITH written AS ( INSERT INTO order_events (order_id, type, from_status, to_status, data) VALUES (:id, 'order.status_changed', :from, :to, :order_json::json) RETURNING id, tx_id, occurred_at ), deliveries AS ( INSERT INTO webhook_deliveries (event_id, url, attempts, next_attempt_at) SELECT written.id, urls.url, 1, now() + :lease_micros::float8 * interval '1 microsecond' FROM written CROSS JOIN unnest(:urls::text[]) AS urls (url) ) SELECT id, tx_id::text AS tx, occurred_at FROM written;
COMMIT;
