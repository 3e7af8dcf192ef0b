package relay

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/internal/testsignal"
)

// setupHistory returns a pruner alone (no relay) on a fresh schema whose
// legacy history partition is detached, on a fake clock at 2031-03-01
// 10:30 UTC.
func setupHistory(t *testing.T, retention time.Duration) (*pruner, *clockwork.FakeClock, *pgtest.DB) {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	var legacy string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'outbox_deliveries'::regclass AND c.relname LIKE 'outbox_deliveries_before_%'`).Scan(&legacy))
	_, err := db.Pool.Exec(ctx, "ALTER TABLE outbox_deliveries DETACH PARTITION "+legacy)
	require.NoError(t, err)
	clock := clockwork.NewFakeClockAt(time.Date(2031, 3, 1, 10, 30, 0, 0, time.UTC))
	cfg := Config{SvixToken: "t", DeliveredRetention: retention}.withDefaults()
	cfg.clock = clock
	return newPruner(db.Pool, newQueries(cfg.Schema), cfg, &testsignal.Signal[struct{}]{}), clock, db
}

// One replica prunes at a time: while another holds the schema's prune
// lock, a prune step deletes nothing.
func TestPruneSkipsWhileAnotherReplicaPrunes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, _, db := setupHistory(t, time.Hour)
	_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_deliveries (id, event_id, organization_id, event_type, outcome, attempts, created_at, settled_at)
		SELECT g, gen_random_uuid(), 'org-h', 'test.event', 'delivered', 1, now() - interval '2 days', now() - interval '2 days'
		FROM generate_series(1, 100) g`)
	require.NoError(t, err)

	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	var got bool
	require.NoError(t, tx.QueryRow(ctx, p.q.pruneLock, "").Scan(&got))
	require.True(t, got)

	n, err := p.pruneOnce(ctx, true)
	require.NoError(t, err)
	require.Zero(t, n, "pruned while another replica held the lock")
	require.NoError(t, tx.Rollback(ctx))
	n, err = p.pruneOnce(ctx, true)
	require.NoError(t, err)
	require.EqualValues(t, 100, n)
}

// partitions lists the history's partitions.
func partitions(t *testing.T, db *pgtest.DB) []string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'outbox_deliveries'::regclass ORDER BY 1`)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

// The history rolls over by the hour: partitions are made ahead, rows land
// in theirs, and a partition is dropped whole once it ends before the
// retention window; an event stays findable by its public id through the
// index on every partition.
func TestHistoryPartitionsRollOverAndDrop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, clock, db := setupHistory(t, 2*time.Hour)

	p.prune(ctx)
	require.Equal(t, []string{"outbox_deliveries_default", "outbox_deliveries_p2031030110",
		"outbox_deliveries_p2031030111", "outbox_deliveries_p2031030112"}, partitions(t, db), "this hour and two ahead")

	insert := func(id int, at time.Time) {
		_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_deliveries (id, event_id, organization_id, event_type, outcome, attempts, created_at, settled_at)
			VALUES ($1, gen_random_uuid(), 'org', 'x.y', 'delivered', 1, $2, $2)`, id, at)
		require.NoError(t, err)
	}
	insert(1, clock.Now().Add(-20*time.Minute)) // 10:10
	insert(2, clock.Now().Add(50*time.Minute))  // 11:20
	var where string
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT tableoid::regclass::text FROM outbox_deliveries WHERE id = 1").Scan(&where))
	require.Equal(t, "outbox_deliveries_p2031030110", where, "a row lands in its hour's partition")

	clock.Advance(2*time.Hour + 35*time.Minute) // 13:05, horizon 11:05
	p.prune(ctx)
	require.Equal(t, []string{"outbox_deliveries_default", "outbox_deliveries_p2031030111", "outbox_deliveries_p2031030112",
		"outbox_deliveries_p2031030113", "outbox_deliveries_p2031030114", "outbox_deliveries_p2031030115"}, partitions(t, db),
		"10:00-11:00 ended before the horizon and was dropped; 11:00-12:00 holds rows inside it")
	var left []int
	rows, err := db.Pool.Query(ctx, "SELECT id FROM outbox_deliveries ORDER BY id")
	require.NoError(t, err)
	left, err = pgx.CollectRows(rows, pgx.RowTo[int])
	require.NoError(t, err)
	require.Equal(t, []int{2}, left)

	// Found by public id through each partition's index, never a scan.
	var eventID string
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT event_id::text FROM outbox_deliveries WHERE id = 2").Scan(&eventID))
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, "SET LOCAL enable_seqscan = off")
	require.NoError(t, err)
	rows, err = tx.Query(ctx, "EXPLAIN SELECT * FROM outbox_deliveries WHERE event_id = $1", eventID)
	require.NoError(t, err)
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	for _, line := range plan {
		require.NotContains(t, line, "Seq Scan", "plan: %v", plan)
	}
	require.NoError(t, tx.Rollback(ctx)) // its locks would hold the drops below off

	// No history kept: every partition that ended is dropped, none made.
	p.retention = -1
	clock.Advance(2*time.Hour + 25*time.Minute) // 15:30
	p.prune(ctx)
	require.Equal(t, []string{"outbox_deliveries_default", "outbox_deliveries_p2031030115"}, partitions(t, db))
}

// The review measured settlements waiting 2.5 s for a prune: the partition
// DDL's ACCESS EXCLUSIVE lock on the history was held to the end of the
// prune's transaction, through the lane, relay and default-partition
// deletes. Here the prune is held in its lane delete (a lane row locked by
// another transaction) after making this hour's partition, and a
// settlement's history INSERT, through a pool that refuses to wait for any
// lock, must go through at once.
func TestPartitionChangesDoNotHoldSettlementsDuringThePrune(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, clock, db := setupHistory(t, 2*time.Hour)
	_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_lanes (organization_id, updated_at) VALUES ('org-idle', now() - interval '2 hours')`)
	require.NoError(t, err)
	blocker, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = blocker.Rollback(ctx) }()
	_, err = blocker.Exec(ctx, `SELECT 1 FROM outbox_lanes WHERE organization_id = 'org-idle' FOR UPDATE`)
	require.NoError(t, err)

	pruned := make(chan struct{})
	go func() { defer close(pruned); p.prune(ctx) }()
	// The prune waits for the blocker's row lock: its session, not any
	// session of another test deleting lanes at that moment.
	requireBlocking(t, db, blocker)
	require.Contains(t, partitions(t, db), "outbox_deliveries_p2031030110", "this hour's partition was made first")

	_, err = impatientPool(t, db.URL).Exec(ctx, `INSERT INTO outbox_deliveries (id, event_id, organization_id, event_type, outcome, attempts, created_at, settled_at)
		VALUES (1, gen_random_uuid(), 'org', 'x.y', 'delivered', 1, $1, $1)`, clock.Now())
	require.NoError(t, err, "a settlement waited for the prune")

	require.NoError(t, blocker.Rollback(ctx))
	<-pruned
}

// An operator's pause outlives the prune of idle lanes: the lane holds the
// pause even with nothing pending.
func TestPruneKeepsAPausedLane(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, _, db := setupHistory(t, time.Hour)
	_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_lanes (organization_id, updated_at, suspended_at, suspend_reason)
		VALUES ('org-idle', now() - interval '2 hours', NULL, NULL),
		       ('org-paused', now() - interval '2 hours', now() - interval '2 hours', 'hold')`)
	require.NoError(t, err)
	p.prune(ctx)
	rows, err := db.Pool.Query(ctx, "SELECT organization_id FROM outbox_lanes")
	require.NoError(t, err)
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"org-paused"}, left)
}
