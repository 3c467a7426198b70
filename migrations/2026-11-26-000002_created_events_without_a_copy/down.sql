ALTER TABLE order_events DROP CONSTRAINT order_events_data_only_for_status_changes;
DELETE FROM order_events WHERE data IS NULL;
ALTER TABLE order_events ALTER COLUMN data SET NOT NULL;
