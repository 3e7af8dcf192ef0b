-- Code generated from ../0007_operator_pauses_and_svix_health.{up,down}.sql by `go generate ./migrations`. DO NOT EDIT.
-- Edit those files and re-run go generate: migrations/goose_test.go checks this file is current.

-- +goose Up
-- outbox: organizations an operator pauses; what Svix answered each relay.
--
-- 1. An operator may pause an organization (a tenant flooding the queue, a
--    customer asking to hold): suspended_at says since when, suspend_reason
--    why, suspended_until until when (NULL: until resumed). No relay claims a
--    suspended lane; its events stay pending, in order, until the pause ends.
--    This is apart from paused_until, the relay's own pause after a 429.
ALTER TABLE outbox_lanes
    ADD COLUMN suspended_at timestamptz,
    ADD COLUMN suspended_until timestamptz,
    ADD COLUMN suspend_reason text;

-- 2. Each relay reports, with its heartbeat, what Svix answered it over the
--    last minutes (calls, errors, 429s, refused tokens; no bodies, no
--    secrets), so an operator's console reads Svix's health as the relays
--    saw it from the database alone.
ALTER TABLE outbox_relays ADD COLUMN svix_health jsonb;

-- +goose Down
ALTER TABLE outbox_relays DROP COLUMN IF EXISTS svix_health;
ALTER TABLE outbox_lanes
    DROP COLUMN IF EXISTS suspended_at,
    DROP COLUMN IF EXISTS suspended_until,
    DROP COLUMN IF EXISTS suspend_reason;
