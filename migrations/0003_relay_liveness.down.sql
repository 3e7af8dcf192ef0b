ALTER TABLE outbox_lanes DROP COLUMN IF EXISTS holder;
DROP TABLE IF EXISTS outbox_relays;
