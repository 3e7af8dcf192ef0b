package relay

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/pgtest"
)

// One replica prunes at a time: while another holds the schema's prune
// lock, a prune step deletes nothing.
func TestPruneSkipsWhileAnotherReplicaPrunes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_deliveries (id, event_id, organization_id, event_type, outcome, attempts, created_at, settled_at)
		SELECT g, gen_random_uuid(), 'org-h', 'test.event', 'delivered', 1, now() - interval '2 days', now() - interval '2 days'
		FROM generate_series(1, 100) g`)
	require.NoError(t, err)
	r, err := New(db.Pool, Config{SvixToken: "t", DeliveredRetention: time.Hour})
	require.NoError(t, err)

	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	var got bool
	require.NoError(t, tx.QueryRow(ctx, r.q.pruneLock, "").Scan(&got))
	require.True(t, got)

	n, err := r.pruneOnce(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "pruned while another replica held the lock")
	require.NoError(t, tx.Rollback(ctx))
	n, err = r.pruneOnce(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 100, n)
}
