package relay

import "github.com/outboxrelay/outbox/internal/sqlname"

// queries holds the relay's SQL with table names qualified by the schema.
type queries struct {
	claimLane, claimEvents, releaseLane, pauseLane                string
	deliver, deliverNoHistory, retry, unsend, deadLetter          string
	dueLanes, remaining, pruneDeliveries, pruneLock, pruneLanes   string
	heartbeat, mourn, orphanedLanes, leave, pruneRelays           string
	status, listDeadLetters, requeueDeadLetters, purgeDeadLetters string
}

func newQueries(schema string) queries {
	s := sqlname.Schema(schema)
	return queries{
		claimLane:          s.Expand(sqlClaimLane),
		claimEvents:        s.Expand(sqlClaimEvents),
		releaseLane:        s.Expand(sqlReleaseLane),
		pauseLane:          s.Expand(sqlPauseLane),
		deliver:            s.Expand(sqlDeliver),
		deliverNoHistory:   s.Expand(sqlDeliverNoHistory),
		retry:              s.Expand(sqlRetry),
		unsend:             s.Expand(sqlUnsend),
		deadLetter:         s.Expand(sqlDeadLetter),
		dueLanes:           s.Expand(sqlDueLanes),
		remaining:          s.Expand(sqlRemaining),
		pruneDeliveries:    s.Expand(sqlPruneDeliveries),
		pruneLock:          s.Expand(sqlPruneLock),
		pruneLanes:         s.Expand(sqlPruneLanes),
		heartbeat:          s.Expand(sqlHeartbeat),
		mourn:              s.Expand(sqlMourn),
		orphanedLanes:      s.Expand(sqlOrphanedLanes),
		leave:              s.Expand(sqlLeave),
		pruneRelays:        s.Expand(sqlPruneRelays),
		status:             s.Expand(sqlStatus),
		listDeadLetters:    s.Expand(sqlListDeadLetters),
		requeueDeadLetters: s.Expand(sqlRequeueDeadLetters),
		purgeDeadLetters:   s.Expand(sqlPurgeDeadLetters),
	}
}

// sqlClaimLane takes an organization's lease when it is free (never taken,
// released, expired, or held by a relay whose heartbeat went stale) and the
// lane is not paused, and says whether the organization has events at all.
// A lane row is only made for an organization with events: a NOTIFY from
// anyone, for any name, writes nothing. $1 org, $2 token, $3 lease in
// milliseconds, $4 holder's name, $5 holder's instance (NULL: a relay that
// does not heartbeat, whose lane waits for its lease).
const sqlClaimLane = `
WITH pending AS (
    SELECT EXISTS (SELECT 1 FROM {events} WHERE organization_id = $1) AS has_events
), taken AS (
    INSERT INTO {lanes} AS l (organization_id, lease_token, leased_until, leased_by, holder, updated_at)
    SELECT $1, $2, now() + $3 * interval '1 millisecond', $4, $5, now()
    FROM pending WHERE pending.has_events
    ON CONFLICT (organization_id) DO UPDATE
    SET lease_token = EXCLUDED.lease_token, leased_until = EXCLUDED.leased_until,
        leased_by = EXCLUDED.leased_by, holder = EXCLUDED.holder, updated_at = now()
    WHERE ` + laneFree + `
      AND (l.paused_until IS NULL OR l.paused_until <= now())
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM taken), (SELECT has_events FROM pending)`

// sqlClaimEvents counts an attempt on the lane's head events that are due,
// up to the first that is not (a retry waiting for its time keeps the events
// behind it waiting too: that is what id order means), and up to $4 bytes of
// payload (the first event always: one larger than the bound must still be
// sent). It claims nothing unless the caller holds the lease. $1 org,
// $2 limit, $3 token, $4 byte bound.
const sqlClaimEvents = `
WITH head AS (
    SELECT id, due, sum(size) OVER (ORDER BY id) AS running, row_number() OVER (ORDER BY id) AS n
    FROM (
        SELECT id, (next_attempt_at IS NULL OR next_attempt_at <= now()) AS due,
               octet_length(payload::text) AS size
        FROM {events}
        WHERE organization_id = $1
        ORDER BY id
        LIMIT $2
    ) h
), prefix AS (
    SELECT id, running, n FROM head
    WHERE id < COALESCE((SELECT min(id) FROM head WHERE NOT due), 9223372036854775807)
), take AS (
    SELECT id FROM prefix WHERE running <= $4 OR n = 1
)
UPDATE {events} e
SET attempts = e.attempts + 1, last_attempt_at = now()
FROM take
WHERE e.id = take.id
  AND EXISTS (SELECT 1 FROM {lanes} l WHERE l.organization_id = $1 AND l.lease_token = $3)
RETURNING e.id, e.event_id, e.event_type, e.payload, e.attempts, e.created_at,
          (SELECT count(*) FROM prefix) > (SELECT count(*) FROM take) AS cut_by_bytes`

// holds is the lease check every settlement statement carries: $2 org,
// $3 token. A holder whose lease was taken over settles nothing.
//
// FOR SHARE makes the check wait for, and then see, a takeover committing
// meanwhile: without it the subquery is evaluated once on the statement's
// snapshot, and a holder whose lease was just taken over could still
// settle rows the new holder has claimed.
const holds = `EXISTS (SELECT 1 FROM {lanes} l WHERE l.organization_id = $2 AND l.lease_token = $3 FOR SHARE)`

// laneFree is true of a lane l nobody may be working: never leased,
// released, lease expired, or held by a relay whose heartbeat is stale
// (such a relay has stopped starting calls: it fences itself first).
const laneFree = `(l.leased_until IS NULL OR l.leased_until < now()
     OR (l.holder IS NOT NULL AND NOT EXISTS (
         SELECT 1 FROM {relays} r WHERE r.instance = l.holder AND r.alive_until > now())))`

// sqlReleaseLane gives the lease back. $1 org, $2 token.
const sqlReleaseLane = `
UPDATE {lanes} SET lease_token = NULL, leased_until = NULL, holder = NULL, updated_at = now()
WHERE organization_id = $1 AND lease_token = $2`

// sqlPauseLane gives the lease back and holds the lane until $3 ms from now.
const sqlPauseLane = `
UPDATE {lanes} SET lease_token = NULL, leased_until = NULL, holder = NULL,
    paused_until = now() + $3 * interval '1 millisecond', updated_at = now()
WHERE organization_id = $1 AND lease_token = $2`

// sqlHeartbeat proves this relay alive until $3 ms from now. $1 instance,
// $2 name.
const sqlHeartbeat = `
INSERT INTO {relays} AS r (instance, name, alive_until) VALUES ($1, $2, now() + $3 * interval '1 millisecond')
ON CONFLICT (instance) DO UPDATE SET alive_until = EXCLUDED.alive_until, mourned = false`

// sqlMourn marks every other relay whose heartbeat went stale as mourned,
// once, and returns them: the relay that mourns one queues its lanes. $1
// this relay's instance.
const sqlMourn = `
UPDATE {relays} SET mourned = true
WHERE alive_until < now() AND NOT mourned AND instance <> $1
RETURNING instance`

// sqlOrphanedLanes lists the lanes the given dead instances held. $1
// instances. (A scan of the lanes, run only when a relay was found dead.)
const sqlOrphanedLanes = `SELECT organization_id FROM {lanes} WHERE holder = ANY($1) AND lease_token IS NOT NULL`

// sqlLeave removes this relay's heartbeat row on a clean stop. $1 instance.
const sqlLeave = `DELETE FROM {relays} WHERE instance = $1`

// sqlPruneRelays deletes relay rows stale for an hour.
const sqlPruneRelays = `DELETE FROM {relays} WHERE alive_until < now() - interval '1 hour'`

// sqlDeliver moves delivered (or skipped) events out of the hot table into
// the history. $1 ids, $2 org, $3 token, $4 Svix message ids (” = skipped).
const sqlDeliver = `
WITH done AS (
    DELETE FROM {events} e
    WHERE e.id = ANY($1) AND ` + holds + `
    RETURNING e.id, e.event_id, e.organization_id, e.event_type, e.attempts, e.created_at
)
INSERT INTO {deliveries} (id, event_id, organization_id, event_type, outcome, svix_message_id, attempts, created_at)
SELECT d.id, d.event_id, d.organization_id, d.event_type,
       CASE WHEN m.msg = '' THEN 'skipped' ELSE 'delivered' END, NULLIF(m.msg, ''), d.attempts, d.created_at
FROM done d JOIN unnest($1::bigint[], $4::text[]) AS m(id, msg) ON m.id = d.id`

// sqlDeliverNoHistory deletes delivered events when no history is kept.
// $1 ids, $2 org, $3 token.
const sqlDeliverNoHistory = `
DELETE FROM {events} e WHERE e.id = ANY($1) AND ` + holds

// sqlRetry schedules events for another attempt. $1 ids, $2 org, $3 token,
// $4 delays in ms, $5 errors.
const sqlRetry = `
UPDATE {events} e
SET next_attempt_at = now() + u.delay * interval '1 millisecond', last_error = u.err
FROM unnest($1::bigint[], $4::bigint[], $5::text[]) AS u(id, delay, err)
WHERE e.id = u.id AND ` + holds

// sqlUnsend takes back the attempt counted for events claimed but not sent
// (the turn ended early, Svix rate-limited or refused the token, or the
// relay is shutting down). $1 ids, $2 org, $3 token.
const sqlUnsend = `
UPDATE {events} e SET attempts = greatest(e.attempts - 1, 0)
WHERE e.id = ANY($1) AND ` + holds

// sqlDeadLetter moves events Svix rejected for good, or out of attempts, to the
// dead letters. $1 ids, $2 org, $3 token, $4 errors, $5 statuses (0 = none),
// $6 response bodies.
const sqlDeadLetter = `
WITH dead AS (
    DELETE FROM {events} e
    WHERE e.id = ANY($1) AND ` + holds + `
    RETURNING e.id, e.event_id, e.organization_id, e.event_type, e.payload, e.created_at, e.attempts
)
INSERT INTO {dead_letters} (id, event_id, organization_id, event_type, payload, created_at, attempts,
                    last_error, status_code, response_body)
SELECT d.id, d.event_id, d.organization_id, d.event_type, d.payload, d.created_at, d.attempts,
       u.err, NULLIF(u.status, 0), NULLIF(u.body, '')
FROM dead d JOIN unnest($1::bigint[], $4::text[], $5::int[], $6::text[]) AS u(id, err, status, body) ON u.id = d.id
ON CONFLICT (id) DO UPDATE SET
    payload = EXCLUDED.payload, attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error,
    status_code = EXCLUDED.status_code, response_body = EXCLUDED.response_body, dead_at = now()`

// sqlDueLanes lists organizations whose head event is due and whose lane is
// free, oldest head first. It reads only pending rows: O(pending events).
// $1 limit.
const sqlDueLanes = `
SELECT h.organization_id
FROM (
    SELECT DISTINCT ON (organization_id) organization_id, id, next_attempt_at
    FROM {events}
    ORDER BY organization_id, id
) h
LEFT JOIN {lanes} l ON l.organization_id = h.organization_id
WHERE (h.next_attempt_at IS NULL OR h.next_attempt_at <= now())
  AND (l.organization_id IS NULL
       OR (` + laneFree + `
           AND (l.paused_until IS NULL OR l.paused_until <= now())))
ORDER BY h.id
LIMIT $1`

// sqlRemaining reports an organization's pending events and when the next
// one is due. $1 org.
const sqlRemaining = `
SELECT count(*), min(coalesce(next_attempt_at, created_at))
FROM {events} WHERE organization_id = $1`

// sqlPruneLock takes the prune lock of the tables' schema for the
// transaction, or answers false when another replica has it. $1 the
// configured schema ("" = the connection's).
const sqlPruneLock = `SELECT pg_try_advisory_xact_lock(hashtext('outbox.prune.' || COALESCE(NULLIF($1, ''), current_schema(), '')))`

// sqlPruneLanes deletes lanes with no events, free and unpaused, untouched
// for $1 ms, $2 at a time: a lane exists only while its organization has
// something to deliver, whatever NOTIFYs arrive.
const sqlPruneLanes = `
DELETE FROM {lanes} WHERE ctid = ANY (ARRAY(
    SELECT l.ctid FROM {lanes} l
    WHERE (l.leased_until IS NULL OR l.leased_until < now())
      AND (l.paused_until IS NULL OR l.paused_until < now())
      AND l.updated_at < now() - $1 * interval '1 millisecond'
      AND NOT EXISTS (SELECT 1 FROM {events} e WHERE e.organization_id = l.organization_id)
    LIMIT $2))`

// sqlPruneDeliveries deletes history older than $1 ms, $2 rows at a time.
const sqlPruneDeliveries = `
DELETE FROM {deliveries} WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM {deliveries}
    WHERE settled_at < now() - $1 * interval '1 millisecond'
    LIMIT $2))`

// sqlStatus reports, per organization, pending events, the age of the
// oldest, those waiting for a retry, and dead letters.
const sqlStatus = `
SELECT organization_id, sum(pending)::int, max(oldest_age)::float8, sum(retrying)::int, sum(dead)::int FROM (
    SELECT organization_id, count(*) AS pending,
           extract(epoch FROM now() - min(created_at)) AS oldest_age,
           count(*) FILTER (WHERE next_attempt_at > now()) AS retrying, 0 AS dead
    FROM {events} GROUP BY organization_id
    UNION ALL
    SELECT organization_id, 0, 0, 0, count(*) FROM {dead_letters} GROUP BY organization_id
) s GROUP BY organization_id ORDER BY sum(pending) DESC, organization_id`

// deadFilter is the WHERE clause shared by the dead-letter statements.
// $1 org, $2 event type, $3 since, $4 ids; empty/NULL matches all.
const deadFilter = `
    ($1 = '' OR organization_id = $1)
AND ($2 = '' OR event_type = $2)
AND ($3::timestamptz IS NULL OR dead_at >= $3)
AND (cardinality($4::bigint[]) = 0 OR id = ANY($4))`

// sqlListDeadLetters lists matching dead letters in id order. $5 limit.
const sqlListDeadLetters = `
SELECT id, event_id, organization_id, event_type, payload, created_at, attempts,
       last_error, coalesce(status_code, 0), coalesce(response_body, ''), dead_at
FROM {dead_letters} WHERE ` + deadFilter + `
ORDER BY id LIMIT $5`

// sqlRequeueDeadLetters moves dead letters back into the hot table with their
// original id and event id (so Svix still sees the same eventId) and a
// fresh attempt count. One whose event id is pending again (a producer
// appended it anew) stays a dead letter: the pending row is that event.
const sqlRequeueDeadLetters = `
WITH back AS (
    DELETE FROM {dead_letters} d WHERE ` + deadFilter + `
      AND NOT EXISTS (SELECT 1 FROM {events} e WHERE e.event_id = d.event_id)
    RETURNING id, event_id, organization_id, event_type, payload, created_at
)
INSERT INTO {events} (id, event_id, organization_id, event_type, payload, created_at)
OVERRIDING SYSTEM VALUE
SELECT id, event_id, organization_id, event_type, payload, created_at FROM back
RETURNING organization_id`

// sqlPurgeDeadLetters deletes matching dead letters.
const sqlPurgeDeadLetters = `DELETE FROM {dead_letters} WHERE ` + deadFilter
