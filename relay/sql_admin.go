package relay

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
// $1 org, $2 event type, $3 since, $4 ids, $5 status code, $6 before;
// empty/NULL/0 matches all.
const deadFilter = `
    ($1 = '' OR organization_id = $1)
AND ($2 = '' OR event_type = $2)
AND ($3::timestamptz IS NULL OR dead_at >= $3)
AND (cardinality($4::bigint[]) = 0 OR id = ANY($4))
AND ($5::int = 0 OR coalesce(status_code, 0) = greatest($5, 0))
AND ($6::timestamptz IS NULL OR dead_at < $6)`

// sqlListDeadLetters lists matching dead letters in id order. $7 limit.
const sqlListDeadLetters = `
SELECT id, event_id, organization_id, event_type, payload, created_at, attempts,
       last_error, coalesce(status_code, 0), coalesce(response_body, ''), dead_at
FROM {dead_letters} WHERE ` + deadFilter + `
ORDER BY id LIMIT $7`

// sqlCountDeadLetters counts matching dead letters.
const sqlCountDeadLetters = `SELECT count(*) FROM {dead_letters} WHERE ` + deadFilter

// sqlRequeueDeadLetters moves dead letters back into the hot table with their
// original id and event id (so Svix still sees the same eventId) and a
// fresh attempt count. One whose event id is pending again (a producer
// appended it anew) stays a dead letter: the pending row is that event.
const sqlRequeueDeadLetters = `
WITH back AS (
    DELETE FROM {dead_letters} d WHERE ` + deadFilter + `
      AND NOT EXISTS (SELECT 1 FROM {events} e WHERE e.event_id = d.event_id)
    RETURNING id, event_id, organization_id, event_type, payload, created_at, traceparent, tracestate, channels, tags
), queued AS (
    INSERT INTO {events} (id, event_id, organization_id, event_type, payload, created_at, traceparent, tracestate, channels, tags)
    OVERRIDING SYSTEM VALUE
    SELECT id, event_id, organization_id, event_type, payload, created_at, traceparent, tracestate, channels, tags FROM back
    RETURNING organization_id
), due AS (
    -- The lanes are due now, so any relay's sweep finds them (a requeue
    -- from a tool that runs no relay signals nobody).
    -- In organization order, as a claim inserts lanes: two writers of
    -- several lanes in different orders could each wait for the other.
    INSERT INTO {lanes} AS l (organization_id, due_at)
    SELECT DISTINCT organization_id, now() FROM queued ORDER BY organization_id
    ON CONFLICT (organization_id) DO UPDATE SET due_at = least(coalesce(l.due_at, now()), now())
)
SELECT organization_id FROM queued`

// sqlPurgeDeadLetters deletes matching dead letters.
const sqlPurgeDeadLetters = `DELETE FROM {dead_letters} WHERE ` + deadFilter
