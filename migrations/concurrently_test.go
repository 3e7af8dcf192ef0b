package migrations_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/migrations"
)

// indexMigration builds an index on outbox_events concurrently, outside a
// transaction.
func indexMigration(stmt string) []migrations.Migration {
	up := migrations.NoTransactionDirective + "\n" + stmt + "\n"
	return []migrations.Migration{{Version: 9001, Name: "events_index", Up: up, Down: "DROP INDEX events_type_idx;", NoTransaction: true}}
}

// indexValid reports whether the index exists, and whether it is valid.
func indexValid(t *testing.T, db *pgtest.DB, name string) (exists, valid bool) {
	t.Helper()
	err := db.Pool.QueryRow(context.Background(), `SELECT count(*) > 0, coalesce(bool_and(i.indisvalid), false) FROM pg_index i
		JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = $1::regnamespace AND c.relname = $2`, db.Schema, name).Scan(&exists, &valid)
	require.NoError(t, err)
	return exists, valid
}

// A migration marked no-transaction runs CREATE INDEX CONCURRENTLY (which a
// transaction refuses), is recorded, and is not run twice.
func TestConcurrentIndexMigrationRunsOutsideATransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	ms := indexMigration("CREATE INDEX CONCURRENTLY IF NOT EXISTS events_type_idx ON outbox_events (event_type);")
	opts := migrations.Options{Schema: db.Schema}
	applied, err := migrations.UpThese(ctx, db.Pool, opts, ms)
	require.NoError(t, err)
	require.Equal(t, []int{9001}, applied)
	exists, valid := indexValid(t, db, "events_type_idx")
	require.True(t, exists && valid)
	applied, err = migrations.UpThese(ctx, db.Pool, opts, ms)
	require.NoError(t, err)
	require.Empty(t, applied, "recorded: not run again")

	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = migrations.UpThese(ctx, tx, migrations.Options{Schema: db.Schema}, []migrations.Migration{{Version: 9002, Name: "in_tx", Up: ms[0].Up, NoTransaction: true}})
	require.ErrorContains(t, err, "runs outside a transaction: migrate with a pool or a connection")
}

// A concurrent build that failed (here a unique index over duplicates, as
// an interrupted build would) leaves an invalid index, which IF NOT EXISTS
// would keep forever: the migration drops it and builds it again.
func TestInterruptedConcurrentIndexIsRebuilt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	for range 2 {
		_, err := db.Pool.Exec(ctx, "INSERT INTO outbox_events (event_id, organization_id, event_type, payload) VALUES (gen_random_uuid(), 'org', 'same.type', '{}')")
		require.NoError(t, err)
	}
	stmt := "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS events_type_idx ON outbox_events (event_type);"
	_, err := db.Pool.Exec(ctx, stmt)
	require.Error(t, err, "the duplicates fail the build")
	exists, valid := indexValid(t, db, "events_type_idx")
	require.True(t, exists, "the failed build left its index")
	require.False(t, valid, "invalid")

	_, err = db.Pool.Exec(ctx, "DELETE FROM outbox_events WHERE id = (SELECT max(id) FROM outbox_events)")
	require.NoError(t, err)
	_, err = migrations.UpThese(ctx, db.Pool, migrations.Options{Schema: db.Schema}, indexMigration(stmt))
	require.NoError(t, err)
	exists, valid = indexValid(t, db, "events_type_idx")
	require.True(t, exists && valid, "rebuilt, valid")
}
