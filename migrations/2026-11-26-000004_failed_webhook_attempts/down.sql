CREATE OR REPLACE FUNCTION delete_deliveries_of_deleted_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM webhook_deliveries WHERE event_id IN (SELECT id FROM deleted);
    RETURN NULL;
END $$;

ALTER TABLE webhook_deliveries ADD COLUMN last_error TEXT;
UPDATE webhook_deliveries AS d SET last_error = f.error
FROM (SELECT DISTINCT ON (event_id, url) event_id, url, error FROM webhook_failed_attempts
      ORDER BY event_id, url, attempt DESC) AS f
WHERE d.event_id = f.event_id AND d.url = f.url AND d.state <> 'delivered';
DROP TABLE webhook_failed_attempts;
