package relay

// laneSuspended is true of a lane l an operator paused
// (Admin.PauseOrganization) whose pause has not ended.
const laneSuspended = `(l.suspended_at IS NOT NULL AND (l.suspended_until IS NULL OR l.suspended_until > now()))`

// suspendedUntil is when a suspended lane l is next looked at: the pause's
// end, or, for a pause until resumed, an hour from now (a relay that is
// not told of the resume, a Temporal workflow, looks again then). NULL
// when l is not suspended.
const suspendedUntil = `CASE WHEN ` + laneSuspended + ` THEN coalesce(l.suspended_until, now() + interval '1 hour') END`

// sqlPause pauses an organization's lane, creating it if it has none. With
// an end, the lane is due then at the latest, so a sweep finds it when the
// pause ends (release keeps it so: sqlRelease). $1 org, $2 reason, $3 end
// (NULL: until resumed). Returns the pause, or no row when the end is not
// in the future.
const sqlPause = `
INSERT INTO {lanes} AS l (organization_id, suspended_at, suspended_until, suspend_reason, due_at, updated_at)
SELECT $1, now(), $3::timestamptz, $2, $3::timestamptz, now()
WHERE $3::timestamptz IS NULL OR $3::timestamptz > now()
ON CONFLICT (organization_id) DO UPDATE
SET suspended_at = now(), suspended_until = EXCLUDED.suspended_until, suspend_reason = EXCLUDED.suspend_reason,
    due_at = CASE WHEN EXCLUDED.suspended_until IS NULL THEN l.due_at
                  ELSE coalesce(least(l.due_at, EXCLUDED.suspended_until), EXCLUDED.suspended_until) END,
    updated_at = now()
RETURNING organization_id, suspend_reason, suspended_at, suspended_until`

// sqlResume lifts an organization's pause and makes its lane due now, so
// any relay's sweep takes it (a claim that finds no events clears it).
// $1 org. Returns whether a pause was in force.
const sqlResume = `
UPDATE {lanes} l
SET suspended_at = NULL, suspended_until = NULL, suspend_reason = NULL, due_at = now(), updated_at = now()
FROM (SELECT ` + laneSuspended + ` AS was FROM {lanes} l WHERE l.organization_id = $1) before
WHERE l.organization_id = $1 AND l.suspended_at IS NOT NULL
RETURNING before.was`

// sqlPauses lists the pauses in force, by organization.
const sqlPauses = `
SELECT l.organization_id, l.suspend_reason, l.suspended_at, l.suspended_until
FROM {lanes} l WHERE ` + laneSuspended + `
ORDER BY l.organization_id LIMIT $1`

// sqlLanes reads the lanes of the $1 organizations.
const sqlLanes = `
SELECT l.organization_id, l.holder, coalesce(l.leased_by, ''),
       CASE WHEN l.leased_until > now() THEN l.leased_until END,
       CASE WHEN l.paused_until > now() THEN l.paused_until END,
       l.due_at,
       ` + laneSuspended + `, l.suspend_reason, l.suspended_at, l.suspended_until
FROM {lanes} l WHERE l.organization_id = ANY($1::text[])`
