package outbox_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
)

// PgBouncer in transaction pooling mode needs a query mode without
// server-side prepared statements; Append and AppendBatch work in each.
func TestAppendInEveryQueryExecMode(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, mode := range []string{"cache_statement", "cache_describe", "describe_exec", "exec", "simple_protocol"} {
		t.Run(mode, func(t *testing.T) {
			pool, err := pgxpool.New(b.ctx, b.db.URL+"&default_query_exec_mode="+mode)
			require.NoError(t, err)
			defer pool.Close()
			org := "org_" + mode
			_, err = outbox.Append(b.ctx, pool, params(org, map[string]any{"mode": mode, "n": 1}))
			require.NoError(t, err)
			_, err = outbox.AppendBatch(b.ctx, pool, []outbox.AppendParams{params(org, map[string]any{"n": 2})})
			require.NoError(t, err)
			var n int
			require.NoError(t, b.pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_events WHERE organization_id = $1 AND payload ? 'n'", org).Scan(&n))
			require.Equal(t, 2, n)
		})
	}
}
