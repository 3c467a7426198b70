-- pgbench script: the database work of one POST /api/v1/orders (the stress client's order:
-- two items) as one single-statement transaction, the cheapest way to do it one order at a time.
WITH new_order AS (
  INSERT INTO orders (customer_name, customer_email, total_amount)
  VALUES ('StressTest Customer', 'stress@example.com', 199.97)
  RETURNING id
), items AS (
  INSERT INTO order_items (order_id, product_name, quantity, unit_price, total_price)
  SELECT new_order.id, v.product_name, v.quantity, v.unit_price, v.total_price
  FROM new_order, (VALUES ('Widget', 1, 99.99, 99.99), ('Gadget', 2, 49.99, 99.98))
    AS v (product_name, quantity, unit_price, total_price)
)
INSERT INTO order_status_history (order_id, to_status) SELECT id, 'pending' FROM new_order;
