package relay

// sqlPartitions lists the partitions of the delivery history. $1 the
// history table's name, qualified as the relay writes it.
const sqlPartitions = `
SELECT c.relname
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = $1::regclass`

// sqlPruneDefaultPartition deletes history older than $1 ms from the
// default partition (rows no hourly partition covered), $2 rows at a time.
const sqlPruneDefaultPartition = `
DELETE FROM {deliveries_default} WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM {deliveries_default}
    WHERE settled_at < now() - $1 * interval '1 millisecond'
    LIMIT $2))`
