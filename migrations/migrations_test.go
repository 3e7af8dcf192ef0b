package migrations_test

import (
	"context"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

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
		`SELECT count(*) FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
		 WHERE s.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition`, hostile).Scan(&n))
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

// Migration 0004 turns an installation that already holds history, lanes
// and pending events into the partitioned layout without losing a row: the
// old history becomes one partition, and lanes with events are due.
func TestMigratingAnInstallationWithData(t *testing.T) {
	t.Parallel()
	b := setup(t)
	all := migrations.All()
	for _, m := range all[:3] {
		_, err := b.db.Pool.Exec(b.ctx, m.Up)
		require.NoError(t, err, "%04d", m.Version)
	}
	_, err := b.db.Pool.Exec(b.ctx, `
		INSERT INTO outbox_events (event_id, organization_id, event_type, payload) VALUES (gen_random_uuid(), 'org-pending', 'x.y', '{}');
		INSERT INTO outbox_lanes (organization_id) VALUES ('org-pending'), ('org-idle');
		INSERT INTO outbox_deliveries (id, event_id, organization_id, event_type, outcome, svix_message_id, attempts, created_at, settled_at)
		SELECT g, gen_random_uuid(), 'org-old', 'x.y', 'delivered', 'msg_' || g, 1, now() - interval '3 days', now() - interval '3 days' + g * interval '1 second'
		FROM generate_series(1, 500) g`)
	require.NoError(t, err)

	require.Equal(t, 4, all[3].Version)
	_, err = b.db.Pool.Exec(b.ctx, all[3].Up)
	require.NoError(t, err)

	var n int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_deliveries WHERE organization_id = 'org-old'").Scan(&n))
	require.Equal(t, 500, n, "every history row survives")
	var part string
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT DISTINCT tableoid::regclass::text FROM outbox_deliveries").Scan(&part))
	require.Regexp(t, `^outbox_deliveries_before_\d{10}$`, part, "the old history is one partition")
	var pendingDue, idleDue *time.Time
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT due_at FROM outbox_lanes WHERE organization_id = 'org-pending'").Scan(&pendingDue))
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT due_at FROM outbox_lanes WHERE organization_id = 'org-idle'").Scan(&idleDue))
	require.NotNil(t, pendingDue, "a lane with events is due, so a sweep finds it")
	require.Nil(t, idleDue)
	_, err = b.db.Pool.Exec(b.ctx, `INSERT INTO outbox_deliveries (id, event_id, organization_id, event_type, outcome, attempts, created_at)
		VALUES (9999, gen_random_uuid(), 'org-new', 'x.y', 'delivered', 1, now())`)
	require.NoError(t, err, "a new settlement has a partition to go to")

	// And back down, keeping the rows.
	_, err = b.db.Pool.Exec(b.ctx, all[3].Down)
	require.NoError(t, err)
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_deliveries").Scan(&n))
	require.Equal(t, 501, n)
}
