package migrationtools_test

import (
	"context"
	"database/sql"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/migrations"
)

// TestGoose applies migrations.GooseFS with goose's library, up then down to
// version 0, in a schema picked by search_path in the URL. goose's settings
// are package globals: this is the only test that sets them.
func TestGoose(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	goose.SetBaseFS(migrations.GooseFS)
	require.NoError(t, goose.SetDialect("postgres"))

	found, err := goose.CollectMigrations("goose", 0, goose.MaxVersion)
	require.NoError(t, err)
	var versions, want []int64
	for _, m := range found {
		versions = append(versions, m.Version)
	}
	for _, m := range migrations.All() {
		want = append(want, int64(m.Version))
	}
	require.Equal(t, want, versions, "one goose migration per version")

	db := pgtest.NewEmpty(t)
	sqlDB, err := sql.Open("pgx", db.URL) // has search_path=<schema>
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sqlDB.Close()) })

	require.NoError(t, goose.UpContext(ctx, sqlDB, "goose"))
	version, err := goose.GetDBVersionContext(ctx, sqlDB)
	require.NoError(t, err)
	require.Equal(t, int64(latestVersion()), version)
	requireApplied(t, db)
	require.Contains(t, tablesIn(t, db), "goose_db_version", "goose's version table is in the search_path schema")

	require.NoError(t, goose.DownToContext(ctx, sqlDB, "goose", 0))
	version, err = goose.GetDBVersionContext(ctx, sqlDB)
	require.NoError(t, err)
	require.Zero(t, version)
	requireReverted(t, db, "goose_db_version")
}
