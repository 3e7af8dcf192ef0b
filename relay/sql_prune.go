package relay

// sqlPruneLock takes the prune lock of the tables' schema for the
// transaction, or answers false when another replica has it. $1 the
// configured schema ("" = the connection's).
const sqlPruneLock = `SELECT pg_try_advisory_xact_lock(hashtext('outbox.prune.' || COALESCE(NULLIF($1, ''), current_schema(), '')))`

// sqlPruneLanes deletes lanes with no events, free, unpaused and not paused
// by an operator, untouched for $1 ms, $2 at a time: a lane exists only
// while its organization has something to deliver, whatever NOTIFYs
// arrive. The release deletes most such lanes at once (sqlRelease); these
// are the others: an operator's pause that ended or was resumed with
// nothing pending (sqlLease forgets its due time), a pause set on an
// organization with no events, events deleted by hand, and lanes released
// by relays of earlier releases, which kept them.
const sqlPruneLanes = `
DELETE FROM {lanes} WHERE ctid = ANY (ARRAY(
    SELECT l.ctid FROM {lanes} l
    WHERE (l.leased_until IS NULL OR l.leased_until < now())
      AND (l.paused_until IS NULL OR l.paused_until < now()) AND NOT ` + laneSuspended + `
      AND l.due_at IS NULL
      AND l.updated_at < now() - $1 * interval '1 millisecond'
      AND NOT EXISTS (SELECT 1 FROM {events} e WHERE e.organization_id = l.organization_id)
    LIMIT $2))`
