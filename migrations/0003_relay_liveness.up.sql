-- outbox: relay liveness, so a dead replica's lanes are taken over in about
-- a second instead of when their lease runs out.
--
-- Every running relay heartbeats its row in outbox_relays (alive_until a
-- moment ahead). A lane records the instance that holds it; another relay
-- may take a lane whose lease is still running once its holder's row is
-- stale, because a relay that cannot heartbeat stops starting Svix calls
-- before its row goes stale (it fences itself). A lane taken by a relay that
-- does not heartbeat (DrainOrganization alone) has no holder and waits for
-- its lease, as before.
CREATE TABLE outbox_relays (
    instance    uuid        PRIMARY KEY,
    name        text        NOT NULL,
    alive_until timestamptz NOT NULL,
    -- mourned: a live relay has found this one dead and queued its lanes.
    mourned     boolean     NOT NULL DEFAULT false,
    started_at  timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 50);

ALTER TABLE outbox_lanes ADD COLUMN holder uuid;
