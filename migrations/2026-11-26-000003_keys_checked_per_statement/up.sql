-- A create writes its order's items, history row, idempotency key and event (and the event's
-- deliveries) in the statement that writes the order. A foreign key checks each of those rows
-- on its own, one query inside PostgreSQL per row: with events, that was a quarter of the
-- database's work per create. The same rules are checked here once per statement, over all the
-- rows it inserted, and what the keys did on delete (the rows go with their order, deliveries
-- with their event) is done by statement triggers that inserts never fire.
--
-- Unlike a key, the check takes no lock on the order, and it does not look at updates: a row
-- whose order is deleted by hand while that row's transaction commits would stay behind, and
-- an UPDATE of order_id is not checked. The service deletes no order and updates no order_id.
ALTER TABLE order_items DROP CONSTRAINT order_items_order_id_fkey;
ALTER TABLE order_status_history DROP CONSTRAINT order_status_history_order_id_fkey;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_order_id_fkey;
ALTER TABLE order_events DROP CONSTRAINT order_events_order_id_fkey;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_event_id_fkey;

-- The rows a statement inserted (transition table `inserted`, with an order_id column) must
-- name existing orders. plpgsql plans the query once per session, maybe while `orders` is
-- nearly empty, when reading it whole looks cheapest; a plan that reads it whole would then
-- grow with the table. Only a nested loop of index lookups costs in proportion to the rows
-- inserted, so the function allows nothing else.
CREATE FUNCTION check_orders_exist() RETURNS trigger LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    missing bigint;
BEGIN
    SELECT i.order_id INTO missing FROM inserted i
    WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = i.order_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert into % refers to order %, which does not exist',
            TG_TABLE_NAME, missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER order_exists AFTER INSERT ON order_items
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION check_orders_exist();
CREATE TRIGGER order_exists AFTER INSERT ON order_status_history
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION check_orders_exist();
CREATE TRIGGER order_exists AFTER INSERT ON idempotency_keys
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION check_orders_exist();
CREATE TRIGGER order_exists AFTER INSERT ON order_events
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION check_orders_exist();

-- The same for deliveries and their events. (A separate function, not one taking the tables as
-- arguments: that would be dynamic SQL, planned again on every insert.)
CREATE FUNCTION check_events_exist() RETURNS trigger LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    missing bigint;
BEGIN
    SELECT i.event_id INTO missing FROM inserted i
    WHERE NOT EXISTS (SELECT 1 FROM order_events e WHERE e.id = i.event_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert into webhook_deliveries refers to event %, which does not exist',
            missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER event_exists AFTER INSERT ON webhook_deliveries
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION check_events_exist();

-- An order deleted takes all its rows along, as the keys' ON DELETE CASCADE did.
CREATE FUNCTION delete_rows_of_deleted_orders() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM order_items WHERE order_id IN (SELECT id FROM deleted);
    DELETE FROM order_status_history WHERE order_id IN (SELECT id FROM deleted);
    DELETE FROM idempotency_keys WHERE order_id IN (SELECT id FROM deleted);
    DELETE FROM order_events WHERE order_id IN (SELECT id FROM deleted);
    RETURN NULL;
END $$;
CREATE TRIGGER rows_go_with_their_order AFTER DELETE ON orders
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT
    EXECUTE FUNCTION delete_rows_of_deleted_orders();

-- And an event deleted (the retention purge) its deliveries.
CREATE FUNCTION delete_deliveries_of_deleted_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM webhook_deliveries WHERE event_id IN (SELECT id FROM deleted);
    RETURN NULL;
END $$;
CREATE TRIGGER deliveries_go_with_their_event AFTER DELETE ON order_events
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT
    EXECUTE FUNCTION delete_deliveries_of_deleted_events();

-- The retention purge deletes by age, and rows arrive in time order: a BRIN index finds the old
-- block ranges and costs an insert next to nothing, where a B-tree took one more index entry
-- per event.
DROP INDEX order_events_occurred_at_idx;
CREATE INDEX order_events_occurred_at_idx ON order_events USING brin (occurred_at);
