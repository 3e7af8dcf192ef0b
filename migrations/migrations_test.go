package migrations_test

import (
	"context"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var tables = []string{"outbox_events", "outbox_lanes", "outbox_dead_letters", "outbox_deliveries", "outbox_relays"}

type bundle struct {
	ctx  context.Context
	db   *pgtest.DB
	opts migrations.Options
}

func setup(t *testing.T) *bundle {
	t.Helper()
	db := pgtest.NewEmpty(t)
	return &bundle{ctx: context.Background(), db: db, opts: migrations.Options{Schema: db.Schema}}
}

func (b *bundle) tablesPresent(t *testing.T) []string {
	t.Helper()
	rows, err := b.db.Pool.Query(b.ctx, "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 AND table_name = ANY($2) ORDER BY 1", b.db.Schema, tables)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

func TestAllHasUpAndDown(t *testing.T) {
	t.Parallel()
	all := migrations.All()
	require.NotEmpty(t, all)
	for i, m := range all {
		require.Equal(t, i+1, m.Version, "versions are contiguous from 1")
		require.NotEmpty(t, m.Name)
		require.NotEmpty(t, strings.TrimSpace(m.Up))
		require.NotEmpty(t, strings.TrimSpace(m.Down))
	}
}

func TestUpDownUp(t *testing.T) {
	t.Parallel()
	b := setup(t)
	latest := migrations.All()[len(migrations.All())-1].Version

	applied, err := migrations.Up(b.ctx, b.db.Pool, b.opts)
	require.NoError(t, err)
	require.Len(t, applied, latest)
	require.ElementsMatch(t, tables, b.tablesPresent(t))

	applied, err = migrations.Up(b.ctx, b.db.Pool, b.opts)
	require.NoError(t, err)
	require.Empty(t, applied, "a current schema has nothing to apply")

	states, err := migrations.Status(b.ctx, b.db.Pool, b.opts)
	require.NoError(t, err)
	for _, s := range states {
		require.True(t, s.Applied, "version %d", s.Version)
		require.False(t, s.AppliedAt.IsZero())
	}

	reverted, err := migrations.Down(b.ctx, b.db.Pool, b.opts, 0)
	require.NoError(t, err)
	require.Len(t, reverted, latest)
	require.Empty(t, b.tablesPresent(t))
	states, err = migrations.Status(b.ctx, b.db.Pool, b.opts)
	require.NoError(t, err)
	for _, s := range states {
		require.False(t, s.Applied)
	}

	applied, err = migrations.Up(b.ctx, b.db.Pool, b.opts)
	require.NoError(t, err)
	require.Len(t, applied, latest)
	require.ElementsMatch(t, tables, b.tablesPresent(t))

	reverted, err = migrations.Down(b.ctx, b.db.Pool, b.opts, 1)
	require.NoError(t, err)
	require.Equal(t, []int{latest}, reverted)
	_, err = migrations.Down(b.ctx, b.db.Pool, b.opts, -1)
	require.Error(t, err)
}

func TestConcurrentUp(t *testing.T) {
	t.Parallel()
	b := setup(t)

	const callers = 8
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applied [][]int
		errs    []error
	)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := migrations.Up(b.ctx, b.db.Pool, b.opts)
			mu.Lock()
			defer mu.Unlock()
			applied = append(applied, got)
			errs = append(errs, err)
		}()
	}
	wg.Wait()
	total := 0
	for i := range callers {
		require.NoError(t, errs[i])
		total += len(applied[i])
	}
	require.Equal(t, len(migrations.All()), total, "each migration applied exactly once")
	require.ElementsMatch(t, tables, b.tablesPresent(t))
}

func TestPlainSQLFilesApplyInLexicalOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)

	// What `psql -f` of each .up.sql in order does, on a search_path pool.
	ups, err := fs.Glob(migrations.FS, "*.up.sql")
	require.NoError(t, err)
	sort.Strings(ups)
	for _, name := range ups {
		sql, err := fs.ReadFile(migrations.FS, name)
		require.NoError(t, err)
		_, err = b.db.Pool.Exec(b.ctx, string(sql))
		require.NoError(t, err, name)
	}
	require.ElementsMatch(t, tables, b.tablesPresent(t))

	downs, err := fs.Glob(migrations.FS, "*.down.sql")
	require.NoError(t, err)
	sort.Sort(sort.Reverse(sort.StringSlice(downs)))
	for _, name := range downs {
		sql, err := fs.ReadFile(migrations.FS, name)
		require.NoError(t, err)
		_, err = b.db.Pool.Exec(b.ctx, string(sql))
		require.NoError(t, err, name)
	}
	require.Empty(t, b.tablesPresent(t))
}

func TestStatusWritesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	missing := b.db.Schema + "_missing"

	states, err := migrations.Status(b.ctx, b.db.Pool, migrations.Options{Schema: missing})
	require.NoError(t, err)
	require.NotEmpty(t, states)
	for _, s := range states {
		require.False(t, s.Applied)
	}
	var exists bool
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", missing).Scan(&exists))
	require.False(t, exists, "Status created the schema")
}

func TestHostileSchemaNameIsQuoted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	hostile := b.db.Schema + `"; DROP SCHEMA public; --`
	t.Cleanup(func() {
		_, _ = b.db.Pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{hostile}.Sanitize()+" CASCADE")
	})

	_, err := migrations.Up(b.ctx, b.db.Pool, migrations.Options{Schema: hostile})
	require.NoError(t, err)
	var n int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx,
		"SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", hostile).Scan(&n))
	require.Equal(t, len(tables)+1, n, "tables plus the version table, in the literally named schema")

	_, err = migrations.Up(b.ctx, b.db.Pool, migrations.Options{Schema: strings.Repeat("s", 64)})
	require.ErrorIs(t, err, migrations.ErrInvalidSchema)
	require.ErrorContains(t, err, "Schema")
}

// Up with "" and with "public" name the same schema on a default
// connection, so they must take the same lock: concurrent calls must not
// both try to create the tables.
func TestConcurrentUpWithEmptyAndExplicitSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewDatabase(t) // a database of its own: this test migrates public
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opts := migrations.Options{}
			if i%2 == 1 {
				opts.Schema = "public"
			}
			_, err := migrations.Up(ctx, pool, opts)
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	var n int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM public.outbox_schema_migrations").Scan(&n))
	require.Equal(t, len(migrations.All()), n, "each migration applied once")
}
