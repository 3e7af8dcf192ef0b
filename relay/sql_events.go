package relay

import "github.com/outboxrelay/outbox/internal/sqlname"

// eventQueries are Admin.FindEvent's and Admin.ListEvents's statements.
type eventQueries struct {
	find, list string
}

func newEventQueries(s sqlname.Schema) eventQueries {
	return eventQueries{find: s.Expand(sqlFindEvent), list: s.Expand(sqlListEvents)}
}

// An event is in one of three places: pending in the hot table, dead in
// the dead letters, settled in the delivery history. Each branch below
// reads one of them into the same columns (those of eventColumns, after a
// rank and a time to order by); a column a place does not have is NULL.
//
// An event id can be in more than one place only after a producer appended
// it again (AppendParams.EventID) once it had settled or died: the pending
// row, when there is one, is the event's state (rank 0); otherwise the
// latest settlement or death is.

// eventColumns are what the statements return, in scanEvent's order.
const eventColumns = `state, id, event_id, organization_id, event_type, created_at, attempts,
       next_attempt_at, last_attempt_at, last_error, paused_until, held_by,
       settled_at, svix_message_id, dead_at, status_code, response_body`

// pendingEventSelect selects pending events e with their lane l: paused until
// (only while it is), held by (the relay working it, while its lease holds).
const pendingEventSelect = `
SELECT 0 AS rank, NULL::timestamptz AS at, 'pending' AS state, e.id, e.event_id, e.organization_id, e.event_type,
       e.created_at, e.attempts, e.next_attempt_at, e.last_attempt_at, e.last_error,
       CASE WHEN l.paused_until > now() THEN l.paused_until END AS paused_until,
       CASE WHEN l.lease_token IS NOT NULL AND NOT ` + laneFree + ` THEN coalesce(l.leased_by, '') END AS held_by,
       NULL::timestamptz AS settled_at, NULL::text AS svix_message_id,
       NULL::timestamptz AS dead_at, NULL::int AS status_code, NULL::text AS response_body
FROM {events} e LEFT JOIN {lanes} l ON l.organization_id = e.organization_id`

// deadEventSelect selects dead letters d.
const deadEventSelect = `
SELECT 1, d.dead_at, 'dead_lettered', d.id, d.event_id, d.organization_id, d.event_type,
       d.created_at, d.attempts, NULL, NULL, d.last_error, NULL, NULL,
       NULL, NULL, d.dead_at, d.status_code, d.response_body
FROM {dead_letters} d`

// settledEventSelect selects the delivery history h.
const settledEventSelect = `
SELECT 1, h.settled_at, h.outcome, h.id, h.event_id, h.organization_id, h.event_type,
       h.created_at, h.attempts, NULL, NULL, NULL, NULL, NULL,
       h.settled_at, h.svix_message_id, NULL, NULL, NULL
FROM {deliveries} h`

// sqlFindEvent finds one event by its public id, in one round trip: the
// hot table's unique index on event_id, the history's index on event_id
// (one probe per partition), and the dead letters' index on event_id
// (migration 0006). $1 event id.
const sqlFindEvent = `
SELECT ` + eventColumns + ` FROM (` +
	pendingEventSelect + ` WHERE e.event_id = $1
    UNION ALL` +
	deadEventSelect + ` WHERE d.event_id = $1
    UNION ALL` +
	settledEventSelect + ` WHERE h.event_id = $1
) s ORDER BY rank, at DESC LIMIT 1`

// listSince is sqlListEvents' lower bound on created_at.
const listSince = `coalesce($2::timestamptz, now() - make_interval(secs => $5::float8))`

// sqlListEvents lists one organization's events created since a time,
// newest (highest id) first, each place's at most $4 by its own key:
//
//   - pending and dead: the (organization_id, id) index, walked backwards
//     (the range "from org to org" keeps the planner on it, see
//     headOfClaimed), filtering on created_at;
//   - history: no index leads with organization_id, so the scan is bounded
//     by settled_at instead (an event settles after it is created), which
//     prunes the hourly partitions that end before $2 and reads the others.
//
// A branch whose state $3 excludes is not run. $1 org, $2 created since
// (NULL: $5 seconds before the database's now(), the clock created_at was
// read from), $3 state (empty: any), $4 limit.
const sqlListEvents = `
SELECT ` + eventColumns + ` FROM ((` +
	pendingEventSelect + `
    WHERE $3 IN ('', 'pending')
      AND e.organization_id >= $1 AND e.organization_id <= $1 AND e.created_at >= ` + listSince + `
    ORDER BY e.organization_id DESC, e.id DESC LIMIT $4
) UNION ALL (` +
	deadEventSelect + `
    WHERE $3 IN ('', 'dead_lettered')
      AND d.organization_id >= $1 AND d.organization_id <= $1 AND d.created_at >= ` + listSince + `
    ORDER BY d.organization_id DESC, d.id DESC LIMIT $4
) UNION ALL (` +
	settledEventSelect + `
    WHERE $3 IN ('', 'delivered', 'skipped') AND ($3 = '' OR h.outcome = $3)
      AND h.organization_id = $1 AND h.settled_at >= ` + listSince + ` AND h.created_at >= ` + listSince + `
    ORDER BY h.id DESC LIMIT $4
)) s ORDER BY id DESC, rank, at DESC LIMIT $4`
