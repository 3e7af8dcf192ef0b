-- Code generated from ../0002_unique_event_id.{up,down}.sql by `go generate ./migrations`. DO NOT EDIT.
-- Edit those files and re-run go generate: migrations/goose_test.go checks this file is current.

-- +goose Up
-- outbox: one pending row per event id.
--
-- A producer may pass its own event id (outbox.AppendParams.EventID) so that
-- a retry after an ambiguous commit (the COMMIT's reply lost) cannot append
-- the same event twice: the second insert fails with a unique violation,
-- which the producer reports as outbox.ErrDuplicateEventID. Ids are UUIDv7,
-- time-ordered, so the index grows at its right edge like the primary key.
CREATE UNIQUE INDEX outbox_events_event_id_key ON outbox_events (event_id);

-- +goose Down
DROP INDEX IF EXISTS outbox_events_event_id_key;
