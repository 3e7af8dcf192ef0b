package relay

// sqlHeartbeat proves this relay alive until $3 ms from now, and records
// what Svix answered it lately. $1 instance, $2 name, $4 svix_health.
const sqlHeartbeat = `
INSERT INTO {relays} AS r (instance, name, alive_until, svix_health) VALUES ($1, $2, now() + $3 * interval '1 millisecond', $4::jsonb)
ON CONFLICT (instance) DO UPDATE SET alive_until = EXCLUDED.alive_until, svix_health = EXCLUDED.svix_health, mourned = false`

// sqlMourn marks every other relay whose heartbeat went stale as mourned,
// once, marks the lanes they held due now, and returns them with their
// lanes (one row per lane; a relay that held none comes with a NULL
// organization): the relay that mourns them queues their lanes. $1 this
// relay's instance.
//
// It runs after this relay's heartbeat committed. It skips the relay rows
// other transactions have locked (a stale relay heartbeating again right
// now, another relay mourning it), and the lanes too: mourning never waits
// for a lock, so two relays mourning each other can never deadlock, nor
// can mourning and any other writer of lanes.
//
// The mark matters because a lane leased by a relay that heartbeats keeps
// its due time unchanged (leaseDueAt): it is what lets any relay's sweep
// find the lane, should the relay that mourned its holder fail before it
// has claimed it. A skipped lane (locked: a claim is taking it over, or a
// settlement of the dead relay's, committing or failing, still holds it)
// is returned all the same, but not marked. One statement, so the relays
// are mourned only with their lanes marked. (The lanes are found by a scan,
// run only when a relay was found dead.)
const sqlMourn = `
WITH dead AS (
    UPDATE {relays} r SET mourned = true
    FROM (SELECT instance FROM {relays}
          WHERE alive_until < now() AND NOT mourned AND instance <> $1
          FOR NO KEY UPDATE SKIP LOCKED) stale
    WHERE r.instance = stale.instance
    RETURNING r.instance
), orphaned AS (
    -- EXISTS first: without a dead relay (every heartbeat but a few) the
    -- lanes are not scanned at all.
    SELECT l.organization_id, l.holder FROM {lanes} l
    WHERE EXISTS (SELECT 1 FROM dead) AND l.holder IN (SELECT instance FROM dead) AND l.lease_token IS NOT NULL
), marked AS (
    UPDATE {lanes} l SET due_at = least(coalesce(l.due_at, now()), now()), updated_at = now()
    FROM (SELECT organization_id FROM {lanes}
          WHERE EXISTS (SELECT 1 FROM dead) AND holder IN (SELECT instance FROM dead) AND lease_token IS NOT NULL
          FOR NO KEY UPDATE SKIP LOCKED) o
    WHERE l.organization_id = o.organization_id
)
SELECT dead.instance, orphaned.organization_id
FROM dead LEFT JOIN orphaned ON orphaned.holder = dead.instance`

// sqlLeave removes this relay's heartbeat row on a clean stop. $1 instance.
const sqlLeave = `DELETE FROM {relays} WHERE instance = $1`

// sqlPruneRelays deletes relay rows stale for an hour.
const sqlPruneRelays = `DELETE FROM {relays} WHERE alive_until < now() - interval '1 hour'`
