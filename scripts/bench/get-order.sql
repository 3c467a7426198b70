-- pgbench script: the two SELECTs of one GET /api/v1/orders/{id}, for an id between :min_id
-- and :max_id (pass both with -D).
\set id random(:min_id, :max_id)
SELECT id, customer_name, customer_email, total_amount, status, created_at, updated_at
  FROM orders WHERE id = :id;
SELECT id, order_id, product_name, quantity, unit_price, total_price
  FROM order_items WHERE order_id = :id ORDER BY id;
