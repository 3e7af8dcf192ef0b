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
//   - enable_seqscan off and plan_cache_mode force_generic_plan (see
//     sqlReadSettings).
const sqlWriteSettings = `SELECT set_config('synchronous_commit', 'off', true), ` + readSettings

// sqlReadSettings sets, for the rest of a transaction:
//
//   - enable_seqscan off. The relay reads outbox's tables by key only (a
//     lane, an organization's head, an id range), and their statistics lag
//     their size by design: the lanes and the hot table can grow from
//     nothing to tens of thousands of rows, or a million, between two
//     autoanalyze runs, and a plan made while they looked tiny would scan
//     them whole on every claim.
//   - plan_cache_mode force_generic_plan. pgx prepares every statement
//     once per connection, but PostgreSQL plans a prepared statement anew
//     on each execution while it thinks a plan made for the parameters
//     could be cheaper, and for the claim it always does: measured at 200
//     events/s, planning took 0.57 ms of the claim's 0.70 ms, and 1 ms per
//     event over the statements of a claim and a settlement. Each
//     statement's plan is the same whatever its parameters (lookups by key,
//     walks of one index), so the plan made once per connection is kept.
const sqlReadSettings = `SELECT ` + readSettings

const readSettings = `set_config('enable_seqscan', 'off', true), set_config('plan_cache_mode', 'force_generic_plan', true)`

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
	headOfPaged    = `e.organization_id >= u.org AND e.organization_id <= u.org ORDER BY e.organization_id, e.id`
)

// nextDue is when an organization is next due, as a release records it:
// its head event's retry time, or now when the head is due; NULL when it
// has no event. headOf selects its events (headOfReleased, headOfPaged).
func nextDue(headOf string) string {
	return `(SELECT greatest(coalesce(e.next_attempt_at, now()), now()) FROM {events} e WHERE ` + headOf + ` LIMIT 1)`
}

// headRow is what the claim's walk of a head reads of an event e: its id,
// whether it is due (no retry time, or it has come), its payload as text
// when due (what is sent, and what BatchMaxBytes measures; NULL when not
// due, so a payload is converted only when it may be claimed), that text's
// length, and the columns the turn needs. The walk carries them, so each
// claimed payload is converted to text once and no event is read twice.
// It selects from a subquery s of the event with a LIMIT, which PostgreSQL
// does not flatten: the text is made once, in s, and len only measures it.
const headRow = `s.*, coalesce(octet_length(s.txt), 0)::bigint AS len FROM (
               SELECT e.id, (e.next_attempt_at IS NULL OR e.next_attempt_at <= now()) AS due,
               CASE WHEN e.next_attempt_at IS NULL OR e.next_attempt_at <= now() THEN e.payload::text END AS txt,
               e.event_id, e.event_type, e.attempts + 1 AS attempt, e.created_at,
               coalesce(e.traceparent, '') AS traceparent, coalesce(e.tracestate, '') AS tracestate,
               e.channels, e.tags, coalesce(e.last_error, '') AS last_error
               FROM {events} e`

// headCols are headRow's columns after the text, for the walk's rows: of
// the event f each term of the walk reads.
const headCols = `f.event_id, f.event_type, f.attempt, f.created_at, f.traceparent, f.tracestate, f.channels, f.tags, f.last_error`

// laneFree is true of a lane l nobody may be working: never leased,
// released, lease expired, or held by a relay whose heartbeat is stale
// (such a relay has stopped starting calls: it fences itself first).
const laneFree = `(l.leased_until IS NULL OR l.leased_until < now()
     OR (l.holder IS NOT NULL AND NOT EXISTS (
         SELECT 1 FROM {relays} r WHERE r.instance = l.holder AND r.alive_until > now())))`

// sqlCreateLanes adds the lanes a claim asks for that do not exist yet, for
// the organizations that have events (a NOTIFY for any name writes
// nothing) and whose page lock it takes (sql_pages.go: last, after the
// other checks, MATERIALIZED; an organization a page holds is skipped),
// already taken by the claim: with its lease token, so that
// sqlHeads, later in the same transaction, walks them with the lanes
// sqlLease leases (one new row version per new lane, not an insert and
// then a lease). It runs as a statement of its own, before the claim takes
// any row lock: ON CONFLICT DO NOTHING waits, in organization order, for
// another transaction writing the same lane (one that takes no page lock:
// an operator's pause, the dead-letter requeue's upsert; another claim or a
// page holds the organization's page lock, and is skipped), and while it
// waits this transaction holds nothing but its own new rows and the page
// locks of the organizations it inserts (which only make other claims and
// pages skip them meanwhile: a page lock is never waited for). So no lock
// cycle can form with another writer of several lanes that goes in the
// same order (every one of the relay's does: claims, and the dead-letter
// requeue's upsert). Inside sqlLease, the wait could come after its locks of
// existing lanes, which such a writer may be waiting for.
// $1 organizations, $2 token, $3 lease in ms, $4 holder's name, $5 holder's
// instance (as sqlLease).
var sqlCreateLanes = `
WITH missing AS MATERIALIZED (
    SELECT w.org
    FROM (SELECT DISTINCT org FROM unnest($1::text[]) AS u(org)) AS w
    CROSS JOIN LATERAL (
        -- LATERAL + LIMIT, not EXISTS: a probe of the organization's index
        -- whatever the planner thinks of the table (an EXISTS it once ran
        -- as a filter over a million rows of another organization).
        SELECT 1 FROM {events} e WHERE e.organization_id = w.org LIMIT 1) pending
    WHERE NOT EXISTS (SELECT 1 FROM {lanes} l WHERE l.organization_id = w.org)
)
INSERT INTO {lanes} (organization_id, lease_token, leased_until, leased_by, holder, due_at, updated_at)
SELECT m.org, $2, now() + $3 * interval '1 millisecond', $4, $5, now(), now()
FROM missing m
WHERE ` + pageLockOf("m.org") + `
ORDER BY m.org
ON CONFLICT (organization_id) DO NOTHING`

// sqlLease takes the leases of many organizations' lanes at once, in one
// statement. A lane is taken when it is free (laneFree), not paused, its
// organization has events, no page holds it (its page lock, sql_pages.go,
// taken last) and no other transaction has it locked: a lane
// another relay is claiming or settling right now is skipped (SKIP
// LOCKED), never waited for, so claims never queue behind settlements or
// other claims for an existing lane (two inserting one new lane do wait:
// sqlCreateLanes), and no lock cycle can form between replicas (an INSERT ...
// ON CONFLICT DO UPDATE would lock every lane it names, held ones too). A
// new organization's lane was inserted already taken, by sqlCreateLanes
// just before. Every lane taken in one claim shares its lease token.
//
// A lane asked for that is free and due but has no events left (they were
// deleted by hand) loses its due time, so the sweep stops returning it.
//
// $1 organizations, $2 token, $3 lease in ms, $4 holder's name, $5 holder's
// instance (NULL for a relay that does not heartbeat: its lanes wait for
// their lease).
var sqlLease = `
WITH free AS (
    SELECT l.organization_id AS org, pending.has AS has_events
    FROM {lanes} l
    LEFT JOIN LATERAL (
        SELECT true AS has FROM {events} e WHERE e.organization_id = l.organization_id LIMIT 1) pending ON true
    WHERE l.organization_id = ANY($1::text[])
      -- A CASE, so that the page lock is taken last, and only of a lane
      -- about to be leased; a row lock's recheck evaluates it all again.
      AND CASE WHEN ` + laneFree + `
                    AND (l.paused_until IS NULL OR l.paused_until <= now()) AND NOT ` + laneSuspended + `
                    AND (coalesce(pending.has, false) OR l.due_at IS NOT NULL)
               THEN CASE WHEN pending.has THEN ` + pageLockOf("l.organization_id") + ` ELSE true END
               ELSE false END
    FOR NO KEY UPDATE OF l SKIP LOCKED
), forgotten AS (
    UPDATE {lanes} l SET due_at = NULL, updated_at = now()
    FROM free WHERE l.organization_id = free.org AND free.has_events IS NULL
)
UPDATE {lanes} l
SET lease_token = $2, leased_until = now() + $3 * interval '1 millisecond',
    leased_by = $4, holder = $5, due_at = now(), updated_at = now()
FROM free WHERE l.organization_id = free.org AND free.has_events`

// sqlHeads reads the due head events of the lanes this claim's token
// holds (leased by sqlLease, inserted by sqlCreateLanes, or both: a new
// lane is free again to its own claim once this relay's row has gone stale,
// and leased a second time with the same token), each once, each with the
// number of the attempt about to be made. It runs after them, as a
// statement of its own in their transaction, so its snapshot comes after
// the leases (READ COMMITTED: a snapshot per statement): each event is
// read as it is now (another relay that settled
// one of these lanes in the instant before the lease has deleted its
// events, or recorded their retries, and this statement sees it), with no
// lock on the events. It writes nothing: an attempt is recorded with its
// outcome, by the settlement (sqlDeliver, sqlRetry, sqlDeadLetter), so a
// call that is never made (a 429 pause, a refused token, a shutdown) costs
// no write to the hot table. (It used to be part of the leasing statement,
// locking each event FOR KEY SHARE to read it as it is now: 55 bytes of WAL
// per event, a seventh of the relay's at 100 organizations.)
//
// Per lane it claims the head events in id order up to the first that is
// not due (a retry waiting for its time keeps the events behind it waiting
// too: that is what id order means), at most $3 of them and $4 bytes of
// payload (as text, what is sent), the first always: one larger than the
// bound must still be sent. Only the events it walks are measured, the
// claimed ones and the one that stops the walk: a claim's cost follows what
// it returns, never BatchSize times the payload size. Each walked payload
// is converted to text once, and the walk carries it with the event's other
// columns to the result, so no event is read twice.
//
// $1 organizations, $2 token, $3 batch size, $4 byte bound. Returns the
// claimed events (attempts: the attempt about to be made; claimed true)
// and, for a lane whose claim the byte bound cut, the due event it cut at
// (claimed false, no payload).
const sqlHeads = `
WITH taken AS (
    SELECT l.organization_id FROM {lanes} l WHERE l.organization_id = ANY($1::text[]) AND l.lease_token = $2
), walk AS (
    -- Each taken lane's head, walked one event at a time in id order
    -- while the events are due and fit: the walk stops at the first event
    -- not due, at $3 events, or at the first whose payload passes the
    -- byte bound (kept as the last row, without its text, to tell that the
    -- bound cut the claim; after a first event over the bound alone, the
    -- next due event is that row). Only the payloads walked are measured.
    SELECT t.organization_id AS org, h.*
    FROM taken t CROSS JOIN LATERAL (
        WITH RECURSIVE w AS (
            (SELECT 1 AS n, f.len AS running, f.id, f.due, f.txt, ` + headCols + `
             FROM (SELECT ` + headRow + `
                   WHERE ` + headOfClaimed + `
                   LIMIT 1) s) f)
            UNION ALL
            SELECT w.n + 1, w.running + f.len, f.id, f.due,
                   CASE WHEN w.running + f.len <= $4 THEN f.txt END, ` + headCols + `
            FROM w CROSS JOIN LATERAL (
                SELECT ` + headRow + `
                WHERE e.id > w.id AND ` + headOfClaimed + `
                LIMIT 1) s) f
            WHERE w.due AND (w.running <= $4 OR w.n = 1) AND w.n < $3
        )
        SELECT * FROM w
    ) h
)
-- The due events walked: those claimed (the first always: one larger than
-- the bound must still be sent), and the one the bound cut the claim at,
-- if any, which the walk carried without its text.
SELECT org, id, event_id, event_type, txt, attempt, created_at,
       running <= $4 OR n = 1 AS claimed, traceparent, tracestate, channels, tags, last_error
FROM walk WHERE due`

// sqlLaneStates reports the lanes of the organizations a claim asked for,
// read after it in the same transaction: taken (the claim's token), or
// why not — held until, paused until, due at, and whether the organization
// has events (a free lane with events that was not taken was locked by
// another relay's claim or settlement). An organization with no lane row
// is reported too, with whether it has events: none, and it has nothing to
// deliver; some, and its lane was deleted (by a release, or the pruner),
// or its first event committed, after sqlCreateLanes read the table (so it
// inserted none), and the claim must be made again. Each organization's
// lane is probed by key (LATERAL + LIMIT: never a join the planner could
// run over the whole table while its statistics say it is tiny). Last, for
// an organization with events whose lane was not taken, whether another
// transaction holds its page lock (a page, or another relay's claim): it
// is then waiting, not "events and no lane" (a claim again at once would
// spin for as long as the page lasts). $1 organizations, $2 the claim's
// token.
var sqlLaneStates = `
SELECT s.*, CASE WHEN s.has_events AND NOT s.taken THEN NOT ` + pageLockOf("s.org") + ` ELSE false END
FROM (
    SELECT u.org, coalesce(l.lease_token = $2, false) AS taken, l.leased_until,
           greatest(l.paused_until, ` + suspendedUntil + `), l.due_at,
           EXISTS (SELECT 1 FROM {events} e WHERE e.organization_id = u.org) AS has_events,
           l.organization_id IS NOT NULL
    FROM (SELECT DISTINCT org FROM unnest($1::text[]) AS u(org)) AS u
    LEFT JOIN LATERAL (SELECT * FROM {lanes} l WHERE l.organization_id = u.org LIMIT 1) l ON true
    OFFSET 0
) s`

// sqlRelease gives many lanes' leases back (or pauses them, after a 429)
// and records when each is next due: its head event's retry time, now when
// events are due. A lane left with nothing (no event, no 429 pause, no
// operator's suspension) is deleted instead: a lane row exists only while
// its organization has something to deliver, and an organization with a
// single pending event, the common case when many send a little, then
// pays for an insert and a delete of its lane, not an insert, an update
// that releases it and, an hour later, the pruner's delete (measured at
// 20,000 such organizations, 2026-12-06: 799-800 bytes of WAL per event
// against 928-930, 771-772 against 904-906 when they had sent before).
// The next event's claim inserts a lane again (sqlCreateLanes), which
// costs no more than leasing an idle one.
//
// It runs after the turn's other settlement statements, in their
// transaction, so it sees what they left. held reads each lane row the
// settlement still holds as it is now, and locks it FOR SHARE (the
// settlement's earlier statements have locked every lane with an outcome
// so already, which costs nothing more; a lane with none, a 429 or a turn
// that sent nothing, is locked here): an operator's pause committed
// meanwhile is seen, and kept, and no writer can change the lane row
// between that read and the delete or update that acts on it. The events
// are read as of the statement's start, as before: a dead letter requeued
// in the instant before is not seen, and waits for the sweep, as it did
// when the release set due_at to NULL.
// $1 organizations, $2 tokens, $3 pauses in ms (0: none). Returns each
// released lane and its due time (NULL: nothing left).
var sqlRelease = `
WITH held AS (
    SELECT h.*, h.pause = 0 AND h.next IS NULL AND NOT h.suspended
                AND (h.paused_until IS NULL OR h.paused_until <= now()) AS idle
    FROM (
        SELECT l.organization_id AS org, u.pause, l.paused_until, l.suspended_until, ` + laneSuspended + ` AS suspended,
               ` + nextDue(headOfReleased) + ` AS next
        FROM {lanes} l JOIN unnest($1::text[], $2::uuid[], $3::bigint[]) AS u(org, token, pause)
          ON l.organization_id = u.org AND l.lease_token = u.token
        FOR SHARE OF l
    ) h
), deleted AS (
    DELETE FROM {lanes} l USING held h
    WHERE l.organization_id = h.org AND h.idle
    RETURNING l.organization_id, NULL::timestamptz AS due_at
), released AS (
    UPDATE {lanes} l
    SET lease_token = NULL, leased_until = NULL, holder = NULL, updated_at = now(),
        paused_until = CASE WHEN h.pause > 0 THEN now() + h.pause * interval '1 millisecond' ELSE l.paused_until END,
        due_at = CASE WHEN h.pause > 0 THEN now() + h.pause * interval '1 millisecond'
                      -- An operator's timed pause: due when it ends at the latest,
                      -- even with nothing left now (events may come meanwhile).
                      WHEN h.suspended_until > now() THEN coalesce(least(h.next, h.suspended_until), h.suspended_until)
                      ELSE h.next END
    FROM held h
    WHERE l.organization_id = h.org AND NOT h.idle
    RETURNING l.organization_id, l.due_at
)
SELECT organization_id, due_at FROM deleted
UNION ALL
SELECT organization_id, due_at FROM released`
