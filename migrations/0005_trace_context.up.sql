-- outbox: the producer's W3C trace context, so the relay's delivery span
-- continues the trace of the request that appended the event.
--
-- traceparent and tracestate are the two W3C headers, as text; NULL when the
-- producer had no active span. Nullable without a default, so adding them
-- rewrites nothing. Dead letters keep them, and a requeue carries them back.
ALTER TABLE outbox_events ADD COLUMN traceparent text, ADD COLUMN tracestate text;
ALTER TABLE outbox_dead_letters ADD COLUMN traceparent text, ADD COLUMN tracestate text;
