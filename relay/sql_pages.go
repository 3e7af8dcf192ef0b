package relay

import (
	"strings"

	"github.com/outboxrelay/outbox/internal/sqlname"
)

// A page is a transaction that holds, for as long as their events are sent
// and settled, the page locks of organizations with a single pending event
// never attempted, and no lane leased, paused or suspended (Config.DisablePages,
// docs/page-path.md). Such an organization's event is then sent and settled
// without a lane row: no insert, no lease, no release.
//
// The page lock of an organization is a transaction-level advisory lock,
// keyed by two integers: the oid of the installation's lanes table and a
// hash of the organization. Lane claims take it too (sqlCreateLanes, sqlLease), by
// pg_try_advisory_xact_lock, never waiting: a lane claim and a page cannot
// both take one organization's head, and whichever comes second skips it.
// A page takes each lock last, after its other checks, and reads the
// events again after taking them (sqlPageRead), with a snapshot that sees
// any lane claim that committed before. The server frees the locks when
// the page's transaction ends: a relay that dies mid-page has its page
// rolled back, and its organizations are free at once, with nothing of the
// page written.
//
// Two organizations can share a hash: a lane claim then skips the other
// one while the page lasts, and the sweep finds it after. Never a loss.

// pageLockOf is the page lock of the organization org (an SQL expression),
// taken if free: true when this transaction holds it.
func pageLockOf(org string) string {
	return `pg_try_advisory_xact_lock({lockspace}, hashtext(` + org + `))`
}

// withPageLocks names the lock space of the schema's page locks in sql: the
// oid of its lanes table (a constant the planner folds), so that relays of
// one installation agree on it, and no two installations on one database
// share one, even when the pool's search_path names their schema.
func withPageLocks(s sqlname.Schema, sql string) string {
	lanes := "'" + strings.ReplaceAll(s.Table(sqlname.Lanes), "'", "''") + "'::regclass::oid::int"
	return strings.ReplaceAll(sql, "{lockspace}", lanes)
}

// pageEligible is true of an organization (the SQL expression org) whose
// events a page may take: exactly one pending event, never attempted and
// not waiting for a retry time, and no lane row, or a lane released (no
// lease token: no holder, stale or not, can be sending its head), not
// paused after a 429 and not suspended by an operator. Both probes are
// scalar subqueries, by key: the planner can never run them as joins over
// a whole table.
func pageEligible(org string) string {
	return `coalesce((SELECT count(*) = 1 AND bool_and(h.attempts = 0 AND h.next_attempt_at IS NULL)
         FROM (SELECT e.attempts, e.next_attempt_at FROM {events} e
               WHERE e.organization_id = ` + org + ` LIMIT 2) h), false)
    AND NOT coalesce((SELECT l.lease_token IS NOT NULL OR l.paused_until > now() OR ` + laneSuspended + `
         FROM {lanes} l WHERE l.organization_id = ` + org + `), false)`
}

// sqlPageLock takes the page locks of the organizations asked for that are
// eligible (pageEligible), each lock last, after the checks (MATERIALIZED:
// the checks run first, for every organization, and only then the locks,
// on those that passed), skipping any lock held elsewhere. It runs in the
// page's transaction, after BEGIN. $1 organizations. Returns those locked.
var sqlPageLock = `
WITH eligible AS MATERIALIZED (
    SELECT u.org FROM (SELECT DISTINCT org FROM unnest($1::text[]) AS u(org)) AS u
    WHERE ` + pageEligible("u.org") + `
)
SELECT c.org FROM eligible c WHERE ` + pageLockOf("c.org")

// sqlPageRead reads the events of the organizations the page locked, as a
// statement of its own after sqlPageLock: its snapshot comes after the
// locks, so a lane claim that committed before this page took a lock is
// seen, and its organization left out (eligible no more). An organization
// left out keeps its lock until the page ends, unsent (its lane's next turn
// waits for the page). It reads what sqlHeads reads of a head, the payload
// as text. $1 the organizations locked.
var sqlPageRead = `
SELECT u.org, h.id, h.event_id, h.event_type, h.txt, h.attempt, h.created_at,
       h.traceparent, h.tracestate, h.channels, h.tags, h.last_error
FROM (SELECT DISTINCT org FROM unnest($1::text[]) AS u(org)) AS u
CROSS JOIN LATERAL (
    SELECT e.id, e.event_id, e.event_type, e.payload::text AS txt, e.attempts + 1 AS attempt, e.created_at,
           coalesce(e.traceparent, '') AS traceparent, coalesce(e.tracestate, '') AS tracestate,
           e.channels, e.tags, coalesce(e.last_error, '') AS last_error
    FROM {events} e WHERE e.organization_id = u.org LIMIT 1) h
WHERE ` + pageEligible("u.org")

// pageHolds is the settlement's check of a page's rows (sql_settle.go): the
// page's transaction holds their organizations' locks, and it read them
// after taking them, so no other relay can have sent or settled them.
const pageHolds = `e.organization_id = u.org`

// sqlPageRelease ends a page's settlement, in its transaction, after the
// other statements: it makes a lane due for each of the page's
// organizations that has something left (a retry, an event not sent, an
// event appended meanwhile), or paused after a 429, so the sweep and the
// lane path take it from there; an organization left with nothing gets no
// lane row, and loses the idle one it had (as sqlRelease deletes a lane
// left with nothing). A lane another relay leased (an organization the
// page left out: a lane claim committed before the page's lock) is not
// touched, nor locked: its holder's release sets its due time. $1
// organizations, $2 tokens (unused: NULL), $3 pauses in ms (0: none).
// Returns each organization and when it is next due (NULL: nothing left).
var sqlPageRelease = `
WITH s AS (
    SELECT u.org, u.pause, l.organization_id IS NOT NULL AS has_lane,
           coalesce(l.lease_token IS NOT NULL, false) AS leased,
           ` + nextDue(headOfPaged) + ` AS next
    FROM unnest($1::text[], $2::uuid[], $3::bigint[]) AS u(org, token, pause)
    LEFT JOIN LATERAL (SELECT * FROM {lanes} l WHERE l.organization_id = u.org LIMIT 1) l ON true
), made AS (
    INSERT INTO {lanes} AS l (organization_id, paused_until, due_at, updated_at)
    SELECT s.org, CASE WHEN s.pause > 0 THEN now() + s.pause * interval '1 millisecond' END,
           CASE WHEN s.pause > 0 THEN now() + s.pause * interval '1 millisecond' ELSE s.next END, now()
    FROM s WHERE (s.pause > 0 OR s.next IS NOT NULL) AND NOT s.leased
    ORDER BY s.org
    ON CONFLICT (organization_id) DO UPDATE
    SET paused_until = greatest(l.paused_until, EXCLUDED.paused_until),
        due_at = CASE WHEN EXCLUDED.paused_until IS NOT NULL THEN EXCLUDED.due_at
                      ELSE least(l.due_at, EXCLUDED.due_at) END,
        updated_at = now()
    WHERE l.lease_token IS NULL
    RETURNING l.organization_id, l.due_at
), idle AS (
    -- The lane's own conditions are on l, so that a pause or suspension
    -- committed meanwhile is seen (the row's newest version is checked
    -- again before it is deleted) and kept.
    DELETE FROM {lanes} l USING s
    WHERE l.organization_id = s.org AND s.has_lane AND s.pause = 0 AND s.next IS NULL
      AND l.lease_token IS NULL AND (l.paused_until IS NULL OR l.paused_until <= now())
      AND NOT ` + laneSuspended + `
)
SELECT s.org, coalesce(m.due_at, s.next) FROM s LEFT JOIN made m ON m.organization_id = s.org`
