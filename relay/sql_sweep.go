package relay

// sqlDueLanes lists the free, unpaused lanes whose due time has come (a
// retry, the end of a pause, a turn's leftovers, a dead holder's lane:
// claiming sets due_at to now), oldest first. It reads the partial index on
// due_at: its cost is the number of lanes it returns, whatever the backlog
// behind them. $1 limit.
const sqlDueLanes = `
SELECT l.organization_id
FROM {lanes} l
WHERE l.due_at <= now() AND ` + laneFree + `
  AND (l.paused_until IS NULL OR l.paused_until <= now()) AND NOT ` + laneSuspended + `
ORDER BY l.due_at
LIMIT $1`

// undiscovered keeps the organizations (o.org) whose events no lane knows
// of: no lane row, or an idle one (due_at NULL: nothing was pending when it
// was last released). A lane with a due time is found by sqlDueLanes when
// that time comes; its new events wait behind its head anyway.
const undiscovered = `
LEFT JOIN {lanes} l ON l.organization_id = o.org
WHERE l.organization_id IS NULL OR (l.due_at IS NULL AND ` + laneFree + `)`

// sqlNewEvents lists the undiscovered organizations among the first $2
// events of id above $1. It reads the primary key from $1 on, a page at a
// time: what was appended since the last sweeps, however much, never the
// backlog. Returns the organizations (NULL in the last row), each with the
// page's highest id and how many events it read.
const sqlNewEvents = `
WITH fresh AS (
    SELECT organization_id, id FROM {events} WHERE id > $1 ORDER BY id LIMIT $2
), o AS (
    SELECT DISTINCT organization_id AS org FROM fresh
), page AS (
    SELECT coalesce(max(id), $1) AS high, count(*) AS n FROM fresh
)
SELECT o.org, page.high, page.n FROM page, o ` + undiscovered + `
UNION ALL
SELECT NULL, page.high, page.n FROM page`

// sqlMaxEventID is the highest pending id (0 when none), where the
// incremental sweep starts.
const sqlMaxEventID = `SELECT coalesce(max(id), 0) FROM {events}`

// sqlUndiscovered lists every undiscovered organization with pending
// events, a page at a time, in organization order. $1 limit, $2 the
// organization to start after (empty: from the first). Returns the
// organizations and, with each, the last one the page visited (where the
// next page starts).
//
// It reads the first $1 entries of the (organization_id, id) index after
// $2 (probe), and their organizations are the page when they hold 16
// entries or fewer each on average (dense): a backlog of organizations
// with a few events each costs a plain index scan, about 1.3 µs per
// organization (13 ms for 10,000 with one event each). Otherwise (a deep
// backlog, where the probe may hold a single organization) it skips
// through the index one organization at a time, as it did always: its cost
// is then the number of organizations pending, never the number of events
// (a million in one organization is one step), at about 5.5 µs per
// organization (55 ms for those 10,000). The skip is only run when the
// probe is not dense (a gating one-time filter), so a deep backlog pays
// for both, a probe of at most $1 entries more (about 3 ms), once a page.
//
// Either way the page ends at an organization the index holds, and the
// next starts after it: an organization whose entries the probe cut is in
// this page already.
const sqlUndiscovered = `
WITH RECURSIVE probe AS MATERIALIZED (
    SELECT organization_id AS org, count(*) AS n
    FROM (SELECT organization_id FROM {events} WHERE organization_id > $2
          ORDER BY organization_id LIMIT $1) s
    GROUP BY organization_id
), verdict AS MATERIALIZED (
    SELECT count(*) * 16 >= coalesce(sum(n), 0) AS dense FROM probe
), orgs(org) AS (
    (SELECT organization_id FROM {events} WHERE organization_id > $2 ORDER BY organization_id LIMIT 1)
    UNION ALL
    SELECT (SELECT e.organization_id FROM {events} e WHERE e.organization_id > orgs.org
            ORDER BY e.organization_id LIMIT 1)
    FROM orgs WHERE orgs.org IS NOT NULL
), page AS (
    SELECT org FROM probe WHERE (SELECT dense FROM verdict)
    UNION ALL
    (SELECT org FROM orgs WHERE org IS NOT NULL AND NOT (SELECT dense FROM verdict) LIMIT $1)
), o AS (
    SELECT org FROM page
)
SELECT o.org, (SELECT max(org) FROM page) FROM o ` + undiscovered + `
UNION ALL
SELECT NULL, (SELECT max(org) FROM page)`
