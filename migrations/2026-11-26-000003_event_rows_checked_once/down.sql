DROP INDEX order_events_occurred_at_idx;
CREATE INDEX order_events_occurred_at_idx ON order_events (occurred_at);

DROP TRIGGER deliveries_go_with_their_event ON order_events;
DROP FUNCTION delete_deliveries_of_deleted_events();
DROP TRIGGER events_go_with_their_order ON orders;
DROP FUNCTION delete_events_of_deleted_orders();

ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_event_id_fkey
    FOREIGN KEY (event_id) REFERENCES order_events (id) ON DELETE CASCADE;
ALTER TABLE order_events ADD CONSTRAINT order_events_order_id_fkey
    FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE;
