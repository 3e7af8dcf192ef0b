package relay

// The settlement statements of many lanes' turns, sent together. Each row
// names its lane and lease token, and is settled only while that token
// still holds the lane: a holder whose lease was taken over settles
// nothing. {fence} is that check (holds) for lanes, and pageHolds for a
// page, whose own transaction holds its organizations (sql_pages.go).
//
// FOR SHARE makes the check wait for, and then see, a takeover committing
// meanwhile: without it the subquery is evaluated once on the statement's
// snapshot, and a holder whose lease was just taken over could still
// settle rows the new holder has claimed.
const holds = `e.organization_id = u.org AND EXISTS (
    SELECT 1 FROM {lanes} l WHERE l.organization_id = u.org AND l.lease_token = u.token FOR SHARE)`

// sqlDeliver moves delivered (or skipped) events out of the hot table into
// the history, counting the attempt that delivered them. $1 ids, $2 orgs,
// $3 tokens, $4 Svix message ids (” = skipped).
const sqlDeliver = `
WITH done AS (
    DELETE FROM {events} e
    USING unnest($1::bigint[], $2::text[], $3::uuid[], $4::text[]) AS u(id, org, token, msg)
    WHERE e.id = u.id AND {fence}
    RETURNING e.id, e.event_id, e.organization_id, e.event_type, e.attempts + 1 AS attempts, e.created_at, u.msg
)
INSERT INTO {deliveries} (id, event_id, organization_id, event_type, outcome, svix_message_id, attempts, created_at)
SELECT id, event_id, organization_id, event_type,
       CASE WHEN msg = '' THEN 'skipped' ELSE 'delivered' END, NULLIF(msg, ''), attempts, created_at
FROM done`

// sqlDeliverNoHistory deletes delivered events when no history is kept.
// $1 ids, $2 orgs, $3 tokens.
const sqlDeliverNoHistory = `
DELETE FROM {events} e
USING unnest($1::bigint[], $2::text[], $3::uuid[]) AS u(id, org, token)
WHERE e.id = u.id AND {fence}`

// sqlRetry records a failed attempt and schedules the next. $1 ids,
// $2 orgs, $3 tokens, $4 delays in ms, $5 errors.
const sqlRetry = `
UPDATE {events} e
SET attempts = e.attempts + 1, last_attempt_at = now(),
    next_attempt_at = now() + u.delay * interval '1 millisecond', last_error = u.err
FROM unnest($1::bigint[], $2::text[], $3::uuid[], $4::bigint[], $5::text[]) AS u(id, org, token, delay, err)
WHERE e.id = u.id AND {fence}`

// sqlDeadLetter moves events Svix rejected for good, or out of attempts, to
// the dead letters, counting the attempt that ended them. $1 ids, $2 orgs, $3 tokens, $4 errors, $5 statuses
// (0 = none), $6 response bodies.
const sqlDeadLetter = `
WITH dead AS (
    DELETE FROM {events} e
    USING unnest($1::bigint[], $2::text[], $3::uuid[], $4::text[], $5::int[], $6::text[])
          AS u(id, org, token, err, status, body)
    WHERE e.id = u.id AND {fence}
    RETURNING e.id, e.event_id, e.organization_id, e.event_type, e.payload, e.created_at, e.attempts + 1 AS attempts,
              u.err, u.status, u.body, e.traceparent, e.tracestate, e.channels, e.tags
)
INSERT INTO {dead_letters} (id, event_id, organization_id, event_type, payload, created_at, attempts,
                    last_error, status_code, response_body, traceparent, tracestate, channels, tags)
SELECT id, event_id, organization_id, event_type, payload, created_at, attempts,
       err, NULLIF(status, 0), NULLIF(body, ''), traceparent, tracestate, channels, tags
FROM dead
ON CONFLICT (id) DO UPDATE SET
    payload = EXCLUDED.payload, attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error,
    status_code = EXCLUDED.status_code, response_body = EXCLUDED.response_body, dead_at = now(),
    traceparent = EXCLUDED.traceparent, tracestate = EXCLUDED.tracestate,
    channels = EXCLUDED.channels, tags = EXCLUDED.tags`
