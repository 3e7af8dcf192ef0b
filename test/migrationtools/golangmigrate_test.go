package migrationtools_test

import (
	"net/url"
	"path/filepath"
	"testing"

	"github.com/golang-migrate/migrate/v4"
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5" // pgx5:// URLs
	_ "github.com/golang-migrate/migrate/v4/database/postgres"
	_ "github.com/golang-migrate/migrate/v4/source/file"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/migrations"
)

// TestGolangMigrate applies the migrations with golang-migrate's library, up
// then down, in a schema picked by search_path in the URL. golang-migrate
// reads the schema once, with SELECT current_schema(), and keeps its version
// table there (schema_migrations, or x-migrations-table).
func TestGolangMigrate(t *testing.T) {
	t.Parallel()
	dir, err := filepath.Abs(filepath.Join("..", "..", "migrations"))
	require.NoError(t, err)
	fromEmbedded := func(dbURL string) (*migrate.Migrate, error) {
		src, err := iofs.New(migrations.FS, ".")
		if err != nil {
			return nil, err
		}
		return migrate.NewWithSourceInstance("iofs", src, dbURL)
	}
	// The CLI's `-path migrations`: the directory also holds goose/ and Go
	// files, which golang-migrate must skip.
	fromDir := func(dbURL string) (*migrate.Migrate, error) {
		return migrate.New("file://"+filepath.ToSlash(dir), dbURL)
	}

	for _, tc := range []struct {
		name         string
		scheme       string // pgx5: the pgx/v5 driver; postgres: the lib/pq driver
		params       url.Values
		open         func(dbURL string) (*migrate.Migrate, error)
		versionTable string
	}{
		{name: "pgx5 iofs", scheme: "pgx5", open: fromEmbedded, versionTable: "schema_migrations"},
		{name: "pgx5 file x-migrations-table", scheme: "pgx5", open: fromDir, versionTable: "outbox_migrate_version",
			params: url.Values{"x-migrations-table": {"outbox_migrate_version"}}},
		{name: "postgres file", scheme: "postgres", open: fromDir, versionTable: "schema_migrations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.NewEmpty(t)
			u, err := url.Parse(db.URL) // has search_path=<schema>
			require.NoError(t, err)
			u.Scheme = tc.scheme
			q := u.Query()
			for k, v := range tc.params {
				q[k] = v
			}
			u.RawQuery = q.Encode()

			m, err := tc.open(u.String())
			require.NoError(t, err)
			t.Cleanup(func() {
				srcErr, dbErr := m.Close()
				require.NoError(t, srcErr)
				require.NoError(t, dbErr)
			})

			require.NoError(t, m.Up())
			version, dirty, err := m.Version()
			require.NoError(t, err)
			require.False(t, dirty)
			require.Equal(t, uint(latestVersion()), version)
			requireApplied(t, db)
			require.Contains(t, tablesIn(t, db), tc.versionTable, "golang-migrate's version table is in the search_path schema")

			require.NoError(t, m.Down())
			_, _, err = m.Version()
			require.ErrorIs(t, err, migrate.ErrNilVersion)
			requireReverted(t, db, tc.versionTable)
		})
	}
}
