ALTER TABLE outbox_relays DROP COLUMN IF EXISTS svix_health;
ALTER TABLE outbox_lanes
    DROP COLUMN IF EXISTS suspended_at,
    DROP COLUMN IF EXISTS suspended_until,
    DROP COLUMN IF EXISTS suspend_reason;
