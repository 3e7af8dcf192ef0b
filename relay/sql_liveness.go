package relay

// sqlHeartbeat proves this relay alive until $3 ms from now, and records
// what Svix answered it lately. $1 instance, $2 name, $4 svix_health.
const sqlHeartbeat = `
INSERT INTO {relays} AS r (instance, name, alive_until, svix_health) VALUES ($1, $2, now() + $3 * interval '1 millisecond', $4::jsonb)
ON CONFLICT (instance) DO UPDATE SET alive_until = EXCLUDED.alive_until, svix_health = EXCLUDED.svix_health, mourned = false`

// sqlMourn marks every other relay whose heartbeat went stale as mourned,
// once, and returns them: the relay that mourns one queues its lanes. $1
// this relay's instance. It runs after this relay's heartbeat committed,
// and skips the rows other transactions have locked (a stale relay
// heartbeating again right now, another relay mourning it): two relays
// mourning each other can never deadlock.
const sqlMourn = `
UPDATE {relays} r SET mourned = true
FROM (SELECT instance FROM {relays}
      WHERE alive_until < now() AND NOT mourned AND instance <> $1
      FOR NO KEY UPDATE SKIP LOCKED) stale
WHERE r.instance = stale.instance
RETURNING r.instance`

// sqlOrphanedLanes lists the lanes the given dead instances held. $1
// instances. (A scan of the lanes, run only when a relay was found dead.)
const sqlOrphanedLanes = `SELECT organization_id FROM {lanes} WHERE holder = ANY($1) AND lease_token IS NOT NULL`

// sqlLeave removes this relay's heartbeat row on a clean stop. $1 instance.
const sqlLeave = `DELETE FROM {relays} WHERE instance = $1`

// sqlPruneRelays deletes relay rows stale for an hour.
const sqlPruneRelays = `DELETE FROM {relays} WHERE alive_until < now() - interval '1 hour'`
