DROP INDEX orders_email_created_at_id_idx;
DROP INDEX orders_status_created_at_id_idx;
CREATE INDEX orders_customer_email_idx ON orders (lower(customer_email));
CREATE INDEX orders_status_idx ON orders (status);
