-- outbox: work found by index, history dropped by the hour.
--
-- 1. outbox_lanes.due_at says when a lane next needs a turn: now while a
--    relay works it (so a dead holder's lane is found), the head event's
--    retry time (or now) when a turn ends with events left, the end of a 429
--    pause, NULL when the organization has nothing left. The relay's sweep
--    reads the partial index below, never the pending events themselves: its
--    cost no longer grows with the backlog.
ALTER TABLE outbox_lanes ADD COLUMN due_at timestamptz;
CREATE INDEX outbox_lanes_due_at_idx ON outbox_lanes (due_at) WHERE due_at IS NOT NULL;
UPDATE outbox_lanes l SET due_at = now()
WHERE EXISTS (SELECT 1 FROM outbox_events e WHERE e.organization_id = l.organization_id);

-- 2. outbox_deliveries becomes a table partitioned by the hour it was
--    settled in (partitions named outbox_deliveries_pYYYYMMDDHH, UTC). The
--    relay creates the next hours' partitions ahead and drops those past its
--    retention whole: pruning a day of history costs a DROP, not a day of
--    DELETEs. A default partition catches a row no hourly partition covers
--    (a relay that has not run yet), so a settlement never fails for it.
--    An event is found by its public id through the index on event_id (one
--    probe per partition).
ALTER TABLE outbox_deliveries RENAME TO outbox_deliveries_legacy;
ALTER INDEX outbox_deliveries_settled_at_idx RENAME TO outbox_deliveries_legacy_settled_at_idx;
CREATE TABLE outbox_deliveries (
    id              bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    organization_id text        NOT NULL,
    event_type      text        NOT NULL,
    outcome         text        NOT NULL,
    svix_message_id text,
    attempts        integer     NOT NULL,
    created_at      timestamptz NOT NULL,
    settled_at      timestamptz NOT NULL DEFAULT now(),
    -- Named as the old table's, which becomes a partition and must carry it.
    CONSTRAINT outbox_deliveries_outcome_check CHECK (outcome IN ('delivered', 'skipped'))
) PARTITION BY RANGE (settled_at);
CREATE INDEX outbox_deliveries_event_id_idx ON outbox_deliveries (event_id);
CREATE TABLE outbox_deliveries_default PARTITION OF outbox_deliveries DEFAULT;

-- The existing history becomes the partition of everything before the hour
-- after this migration (named outbox_deliveries_before_YYYYMMDDHH), dropped
-- whole once that hour is past the retention.
DO $$
DECLARE
    bound timestamptz := date_trunc('hour', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '1 hour';
BEGIN
    EXECUTE format('ALTER TABLE outbox_deliveries ATTACH PARTITION outbox_deliveries_legacy FOR VALUES FROM (MINVALUE) TO (%L)', bound);
    EXECUTE format('ALTER TABLE outbox_deliveries_legacy RENAME TO %I',
                   'outbox_deliveries_before_' || to_char(bound AT TIME ZONE 'UTC', 'YYYYMMDDHH24'));
END
$$;
