-- Code generated from ../0005_trace_context.{up,down}.sql by `go generate ./migrations`. DO NOT EDIT.
-- Edit those files and re-run go generate: migrations/goose_test.go checks this file is current.

-- +goose Up
-- outbox: the producer's W3C trace context, so the relay's delivery span
-- continues the trace of the request that appended the event.
--
-- traceparent and tracestate are the two W3C headers, as text; NULL when the
-- producer had no active span. Nullable without a default, so adding them
-- rewrites nothing. Dead letters keep them, and a requeue carries them back.
ALTER TABLE outbox_events ADD COLUMN traceparent text, ADD COLUMN tracestate text;
ALTER TABLE outbox_dead_letters ADD COLUMN traceparent text, ADD COLUMN tracestate text;

-- +goose Down
ALTER TABLE outbox_dead_letters DROP COLUMN IF EXISTS traceparent, DROP COLUMN IF EXISTS tracestate;
ALTER TABLE outbox_events DROP COLUMN IF EXISTS traceparent, DROP COLUMN IF EXISTS tracestate;
