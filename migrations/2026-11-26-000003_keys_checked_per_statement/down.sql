DROP INDEX order_events_occurred_at_idx;
CREATE INDEX order_events_occurred_at_idx ON order_events (occurred_at);

DROP TRIGGER deliveries_go_with_their_event ON order_events;
DROP FUNCTION delete_deliveries_of_deleted_events();
DROP TRIGGER rows_go_with_their_order ON orders;
DROP FUNCTION delete_rows_of_deleted_orders();
DROP TRIGGER event_exists ON webhook_deliveries;
DROP FUNCTION check_events_exist();
DROP TRIGGER order_exists ON order_events;
DROP TRIGGER order_exists ON idempotency_keys;
DROP TRIGGER order_exists ON order_status_history;
DROP TRIGGER order_exists ON order_items;
DROP FUNCTION check_orders_exist();

ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_event_id_fkey
    FOREIGN KEY (event_id) REFERENCES order_events (id) ON DELETE CASCADE;
ALTER TABLE order_events ADD CONSTRAINT order_events_order_id_fkey
    FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_order_id_fkey
    FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE;
ALTER TABLE order_status_history ADD CONSTRAINT order_status_history_order_id_fkey
    FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE;
ALTER TABLE order_items ADD CONSTRAINT order_items_order_id_fkey
    FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE;
