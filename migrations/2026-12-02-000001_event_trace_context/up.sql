-- The W3C `traceparent` of the request that made the change, when that request's trace was
-- sampled, so that the event's webhook deliveries continue its trace. NULL otherwise: without
-- traces, or for a request that was not sampled.
ALTER TABLE order_events ADD COLUMN traceparent TEXT;
