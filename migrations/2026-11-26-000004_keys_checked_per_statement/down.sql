DROP TRIGGER rows_go_with_their_order ON orders;
DROP FUNCTION delete_rows_of_deleted_orders();
CREATE FUNCTION delete_events_of_deleted_orders() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM order_events WHERE order_id IN (SELECT id FROM deleted);
    RETURN NULL;
END $$;
CREATE TRIGGER events_go_with_their_order AFTER DELETE ON orders
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT
    EXECUTE FUNCTION delete_events_of_deleted_orders();

DROP TRIGGER event_exists ON webhook_deliveries;
DROP FUNCTION check_events_exist();
DROP TRIGGER order_exists ON order_events;
DROP TRIGGER order_exists ON idempotency_keys;
DROP TRIGGER order_exists ON order_status_history;
DROP TRIGGER order_exists ON order_items;
DROP FUNCTION check_orders_exist();

ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_order_id_fkey
    FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE;
ALTER TABLE order_status_history ADD CONSTRAINT order_status_history_order_id_fkey
    FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE;
ALTER TABLE order_items ADD CONSTRAINT order_items_order_id_fkey
    FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE;
