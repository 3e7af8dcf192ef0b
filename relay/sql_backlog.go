package relay

// sqlBacklog reports the pending events and the age of the oldest, for each
// of the $1 organizations whose oldest pending event is oldest, and for all
// the others together (organization NULL). One pass over the hot table,
// which holds pending events only; the history tables are not read.
const sqlBacklog = `
WITH per_org AS (
    SELECT organization_id, count(*) AS n, min(created_at) AS oldest
    FROM {events} GROUP BY organization_id
), ranked AS (
    SELECT organization_id, n, oldest, row_number() OVER (ORDER BY oldest, organization_id) AS rank
    FROM per_org
)
SELECT CASE WHEN rank <= $1 THEN organization_id END AS org,
       sum(n)::bigint, extract(epoch FROM now() - min(oldest))::float8
FROM ranked GROUP BY 1`
