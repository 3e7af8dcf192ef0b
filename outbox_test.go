package outbox_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type testBundle struct {
	ctx  context.Context
	db   *pgtest.DB
	pool *pgxpool.Pool
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	db := pgtest.New(t)
	return &testBundle{ctx: context.Background(), db: db, pool: db.Pool}
}

// countEvents counts committed rows, optionally for one organization.
func (b *testBundle) countEvents(t *testing.T, org string) int {
	t.Helper()
	var n int
	q := "SELECT count(*) FROM outbox_events WHERE $1 = '' OR organization_id = $1"
	require.NoError(t, b.pool.QueryRow(b.ctx, q, org).Scan(&n))
	return n
}

func params(org string, payload any) outbox.AppendParams {
	return outbox.AppendParams{OrganizationID: org, EventType: outbox.EventTypeAuditLogCreated, Payload: payload}
}

type unmarshalable struct{ C chan int }
