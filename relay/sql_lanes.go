package relay

// sqlWriteSettings sets, for the rest of a claim's or a settlement's
// transaction:
//
//   - synchronous_commit off: the transaction commits without waiting for
//     its WAL to reach the disk. Every write the relay makes is idempotent
//     by construction: a claim or a settlement lost in a PostgreSQL crash
//     (at most the last few hundred milliseconds of them) leaves events
//     pending, which are sent again with the same eventId and
//     Idempotency-Key and deduplicated by Svix.
//   - enable_seqscan off (see sqlReadSettings).
const sqlWriteSettings = `SELECT set_config('synchronous_commit', 'off', true), set_config('enable_seqscan', 'off', true)`

// sqlReadSettings turns sequential scans off for the rest of a
// transaction. The relay reads outbox's tables by key only (a lane, an
// organization's head, an id range), and their statistics lag their size
// by design: the lanes and the hot table can grow from nothing to tens of
// thousands of rows, or a million, between two autoanalyze runs, and a plan
// made while they looked tiny would scan them whole on every claim.
const sqlReadSettings = `SELECT set_config('enable_seqscan', 'off', true)`

// headOfClaimed and headOfReleased select an organization's events (e) in
// id order, for a LIMIT: the claimed lane t's, the released lane l's.
//
// They walk the (organization_id, id) index, and only that one: the range
// "from org to org" keeps the planner from reducing the ORDER BY to id (as
// it does for an equality) and from scanning the primary key in id order
// while filtering on the organization, a plan it likes when one
// organization holds most pending rows (a deep backlog) and that reads past
// every one of them to find a small organization's head.
const (
	headOfClaimed  = `e.organization_id >= t.organization_id AND e.organization_id <= t.organization_id ORDER BY e.organization_id, e.id`
	headOfReleased = `e.organization_id >= l.organization_id AND e.organization_id <= l.organization_id ORDER BY e.organization_id, e.id`
)

// laneFree is true of a lane l nobody may be working: never leased,
// released, lease expired, or held by a relay whose heartbeat is stale
// (such a relay has stopped starting calls: it fences itself first).
const laneFree = `(l.leased_until IS NULL OR l.leased_until < now()
     OR (l.holder IS NOT NULL AND NOT EXISTS (
         SELECT 1 FROM {relays} r WHERE r.instance = l.holder AND r.alive_until > now())))`

// sqlClaim takes the leases of many organizations' lanes at once, in one
// statement, and claims each taken lane's due head events, counting an
// attempt on each. A lane is taken when it is free (laneFree) and not
// paused, and only if its organization has events: a NOTIFY from anyone,
// for any name, writes nothing. Per lane it claims the head events in id
// order up to the first that is not due (a retry waiting for its time keeps
// the events behind it waiting too: that is what id order means), at most
// $6 of them and $7 bytes of payload (the first always: one larger than the
// bound must still be sent). Every lane taken in one statement shares its
// lease token.
//
// $1 organizations, $2 token, $3 lease in ms, $4 holder's name, $5 holder's
// instance (NULL for a relay that does not heartbeat: its lanes wait for
// their lease), $6 batch size, $7 byte bound. Returns the claimed events
// and, per row, how many of the lane's head events were due (more than
// were claimed: the byte bound cut the claim).
const sqlClaim = `
WITH want AS (
    SELECT DISTINCT w.org FROM unnest($1::text[]) AS w(org)
), taken AS (
    INSERT INTO {lanes} AS l (organization_id, lease_token, leased_until, leased_by, holder, due_at, updated_at)
    SELECT want.org, $2, now() + $3 * interval '1 millisecond', $4, $5, now(), now()
    FROM want CROSS JOIN LATERAL (
        -- LATERAL + LIMIT, not EXISTS: a probe of the organization's index
        -- whatever the planner thinks of the table (an EXISTS it once ran
        -- as a filter over a million rows of another organization).
        SELECT 1 FROM {events} e WHERE e.organization_id = want.org LIMIT 1) pending
    ON CONFLICT (organization_id) DO UPDATE
    SET lease_token = EXCLUDED.lease_token, leased_until = EXCLUDED.leased_until,
        leased_by = EXCLUDED.leased_by, holder = EXCLUDED.holder, due_at = now(), updated_at = now()
    WHERE ` + laneFree + `
      AND (l.paused_until IS NULL OR l.paused_until <= now())
    RETURNING l.organization_id
), head AS (
    SELECT h.id, h.org, h.due,
           sum(h.size) OVER (PARTITION BY h.org ORDER BY h.id) AS running,
           row_number() OVER (PARTITION BY h.org ORDER BY h.id) AS n
    FROM taken t CROSS JOIN LATERAL (
        SELECT e.id, e.organization_id AS org,
               (e.next_attempt_at IS NULL OR e.next_attempt_at <= now()) AS due,
               octet_length(e.payload::text) AS size
        FROM {events} e
        WHERE ` + headOfClaimed + `
        LIMIT $6
    ) h
), waiting AS (
    SELECT org, min(id) AS id FROM head WHERE NOT due GROUP BY org
), prefix AS (
    SELECT h.id, h.org, h.running, h.n
    FROM head h LEFT JOIN waiting w ON w.org = h.org
    WHERE w.id IS NULL OR h.id < w.id
), due AS (
    SELECT org, count(*) AS n FROM prefix GROUP BY org
), take AS (
    SELECT p.id, d.n AS due FROM prefix p JOIN due d ON d.org = p.org
    WHERE p.running <= $7 OR p.n = 1
)
UPDATE {events} e
SET attempts = e.attempts + 1, last_attempt_at = now()
FROM take
WHERE e.id = take.id
RETURNING e.organization_id, e.id, e.event_id, e.event_type, e.payload, e.attempts, e.created_at, take.due,
          coalesce(e.traceparent, ''), coalesce(e.tracestate, ''), e.channels, e.tags`

// sqlLaneStates reports the lanes of the organizations a claim asked for,
// read after it in the same transaction: taken (the claim's token), or
// why not — held until, paused until, due at. An organization with no lane
// row has no events. $1 organizations, $2 the claim's token.
const sqlLaneStates = `
SELECT organization_id, lease_token IS NOT DISTINCT FROM $2, leased_until, paused_until, due_at
FROM {lanes} WHERE organization_id = ANY($1)`

// sqlRelease gives many lanes' leases back (or pauses them, after a 429)
// and records when each is next due: its head event's retry time, now when
// events are due, NULL when nothing is left. It runs after the turn's other
// settlement statements, in their transaction, so it sees what they left.
// $1 organizations, $2 tokens, $3 pauses in ms (0: none). Returns each
// released lane and its due time.
const sqlRelease = `
UPDATE {lanes} l
SET lease_token = NULL, leased_until = NULL, holder = NULL, updated_at = now(),
    paused_until = CASE WHEN u.pause > 0 THEN now() + u.pause * interval '1 millisecond' ELSE l.paused_until END,
    due_at = CASE WHEN u.pause > 0 THEN now() + u.pause * interval '1 millisecond' ELSE (
        SELECT greatest(coalesce(e.next_attempt_at, now()), now())
        FROM {events} e WHERE ` + headOfReleased + ` LIMIT 1) END
FROM unnest($1::text[], $2::uuid[], $3::bigint[]) AS u(org, token, pause)
WHERE l.organization_id = u.org AND l.lease_token = u.token
RETURNING l.organization_id, l.due_at`
