DROP TABLE webhook_deliveries;
DROP TABLE order_events;
