ALTER TABLE outbox_dead_letters DROP COLUMN IF EXISTS traceparent, DROP COLUMN IF EXISTS tracestate;
ALTER TABLE outbox_events DROP COLUMN IF EXISTS traceparent, DROP COLUMN IF EXISTS tracestate;
