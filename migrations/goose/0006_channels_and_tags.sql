-- Code generated from ../0006_channels_and_tags.{up,down}.sql by `go generate ./migrations`. DO NOT EDIT.
-- Edit those files and re-run go generate: migrations/goose_test.go checks this file is current.

-- +goose Up
-- outbox: Svix routing fields, sent with each message; dead letters by event id.
--
-- channels (which endpoints can filter by) and tags (which messages can be
-- listed by) as text arrays; NULL when the event has none, which is every
-- row appended before this migration. Nullable without a default, so adding
-- them rewrites nothing. Dead letters keep them, and a requeue carries them
-- back.
ALTER TABLE outbox_events ADD COLUMN channels text[], ADD COLUMN tags text[];
ALTER TABLE outbox_dead_letters ADD COLUMN channels text[], ADD COLUMN tags text[];

-- Finding a dead letter by its public event id (relay.Admin.FindEvent,
-- `outbox events show`) without reading the whole table.
CREATE INDEX outbox_dead_letters_event_id_idx ON outbox_dead_letters (event_id);

-- +goose Down
DROP INDEX IF EXISTS outbox_dead_letters_event_id_idx;
ALTER TABLE outbox_dead_letters DROP COLUMN IF EXISTS channels, DROP COLUMN IF EXISTS tags;
ALTER TABLE outbox_events DROP COLUMN IF EXISTS channels, DROP COLUMN IF EXISTS tags;
