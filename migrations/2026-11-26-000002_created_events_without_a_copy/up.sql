-- An order.created event keeps no copy of the order: the order as created is its own rows
-- (pending, unchanged since; names, items and amounts never change), which the feed reads back,
-- so the create path does not write it twice. Status changes keep the order as it was after
-- the move, which its rows no longer show.
ALTER TABLE order_events ALTER COLUMN data DROP NOT NULL;
-- Created events written before this carry a copy, the same as what the rows give.
UPDATE order_events SET data = NULL WHERE type = 'order.created';
ALTER TABLE order_events ADD CONSTRAINT order_events_data_only_for_status_changes
    CHECK ((type = 'order.status_changed') = (data IS NOT NULL));
