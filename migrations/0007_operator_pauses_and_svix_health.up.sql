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
