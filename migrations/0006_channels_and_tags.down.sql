DROP INDEX IF EXISTS outbox_dead_letters_event_id_idx;
ALTER TABLE outbox_dead_letters DROP COLUMN IF EXISTS channels, DROP COLUMN IF EXISTS tags;
ALTER TABLE outbox_events DROP COLUMN IF EXISTS channels, DROP COLUMN IF EXISTS tags;
