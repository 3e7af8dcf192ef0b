package migrations

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxrelay/outbox/internal/sqlname"
)

// versionTable records the applied migrations in the target schema.
const versionTable = sqlname.Migrations

// Beginner starts transactions: *pgxpool.Pool, *pgx.Conn and pgx.Tx (as a
// savepoint) satisfy it.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Options selects where the migrations apply and how they wait for locks.
type Options struct {
	// Schema is the PostgreSQL schema that holds outbox's tables. It is created
	// if missing. Defaults to "", which means the first schema of the
	// connection's search_path (usually "public").
	Schema string
	// LockTimeout bounds how long a migration's statement waits for a table
	// lock (PostgreSQL's lock_timeout). A lock request that waits queues
	// every later request for the table behind it, producers' INSERTs
	// included, so a migration that does not get its locks in time is
	// rolled back and tried again after LockRetryDelay, until ctx ends: a
	// long transaction holding the table delays the upgrade, not the
	// producers. Defaults to 100 ms (DefaultLockTimeout); negative: no
	// limit (wait as long as it takes, as plain psql does).
	LockTimeout time.Duration
	// LockRetryDelay is the wait before a migration that did not get its
	// locks is tried again, doubling after each try up to
	// MaxLockRetryDelay. Defaults to 500 ms (DefaultLockRetryDelay).
	LockRetryDelay time.Duration
	// StatementTimeout bounds each statement of a migration run in a
	// transaction (PostgreSQL's statement_timeout): a statement that holds
	// its locks longer is cancelled and its migration rolled back, and Up
	// returns the error (it is not retried: it would run as long again).
	// Defaults to 0: no limit, as a migration that moves data may need;
	// set it to what the locks it takes can be held for on your
	// installation.
	StatementTimeout time.Duration
}

const (
	// DefaultLockTimeout is Options.LockTimeout's default.
	DefaultLockTimeout = 100 * time.Millisecond
	// DefaultLockRetryDelay is Options.LockRetryDelay's default.
	DefaultLockRetryDelay = 500 * time.Millisecond
	// MaxLockRetryDelay caps the doubling of LockRetryDelay.
	MaxLockRetryDelay = 10 * time.Second
)

// withDefaults returns o with its zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.LockTimeout == 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.LockRetryDelay <= 0 {
		o.LockRetryDelay = DefaultLockRetryDelay
	}
	return o
}

// State is one migration and whether it is applied.
type State struct {
	Version   int
	Name      string
	Applied   bool
	AppliedAt time.Time // zero when not applied
}

// Up applies every migration not yet applied, in version order, each in a
// transaction of its own (so each migration's locks are released at its
// commit, not the last one's), and returns the versions it applied (none
// when the schema is current). A migration whose statement waits longer
// than Options.LockTimeout for a lock is rolled back and tried again (see
// Options); Up returns ctx's error if ctx ends meanwhile, with the
// versions applied so far.
func Up(ctx context.Context, db Beginner, opts Options) ([]int, error) {
	return up(ctx, db, opts.withDefaults(), All())
}

// up applies ms as Up does.
func up(ctx context.Context, db Beginner, opts Options, ms []Migration) ([]int, error) {
	var applied []int
	delay := opts.LockRetryDelay
	for {
		v, err := upNext(ctx, db, opts, ms)
		var outside *outsideError
		if errors.As(err, &outside) {
			v, err = upOutside(ctx, db, opts, outside.m)
		}
		switch {
		case errors.Is(err, errLockNotAvailable):
			select {
			case <-ctx.Done():
				return applied, fmt.Errorf("migrations: waiting to retry %w: %w", err, ctx.Err())
			case <-time.After(delay):
			}
			delay = min(2*delay, MaxLockRetryDelay)
			continue
		case err != nil:
			return applied, err
		case v == 0:
			return applied, nil
		case v < 0:
			continue // another applier applied it
		}
		applied = append(applied, v)
		delay = opts.LockRetryDelay
	}
}

// outsideError is upNext's answer when the next migration runs outside a
// transaction.
type outsideError struct{ m Migration }

func (e *outsideError) Error() string {
	return fmt.Sprintf("migration %04d_%s runs outside a transaction", e.m.Version, e.m.Name)
}

// connAcquirer is a pool: *pgxpool.Pool.
type connAcquirer interface {
	Acquire(ctx context.Context) (*pgxpool.Conn, error)
}

// createConcurrently finds the index a no-transaction migration builds.
var createConcurrently = regexp.MustCompile(`(?i)CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?((?:"[^"]+"|[a-z0-9_$]+)(?:\.(?:"[^"]+"|[a-z0-9_$]+))?)\s+ON\s`)

// indexRelname is the pg_class name of an index named in SQL (possibly
// schema-qualified): quoted as written, unquoted folded to lower case.
func indexRelname(name string) string {
	last, quoted := 0, false
	for i, c := range name {
		switch {
		case c == '"':
			quoted = !quoted
		case c == '.' && !quoted:
			last = i + 1
		}
	}
	name = name[last:]
	if strings.HasPrefix(name, `"`) {
		return strings.Trim(name, `"`)
	}
	return strings.ToLower(name)
}

// upOutside applies a no-transaction migration on a connection of its own
// (db must be a pool or a *pgx.Conn), holding the schema's advisory lock
// for the session: it drops an invalid index that an interrupted run left
// (CREATE INDEX CONCURRENTLY IF NOT EXISTS would keep it), runs the
// statement, and records the version. It returns -1 when another applier
// did it meanwhile, and the version it applied otherwise.
func upOutside(ctx context.Context, db Beginner, opts Options, m Migration) (int, error) {
	var conn *pgx.Conn
	switch d := db.(type) {
	case *pgx.Conn:
		conn = d
	case connAcquirer:
		c, err := d.Acquire(ctx)
		if err != nil {
			return 0, fmt.Errorf("migration %04d_%s: acquire a connection: %w", m.Version, m.Name, err)
		}
		defer c.Release()
		conn = c.Conn()
	default:
		return 0, fmt.Errorf("migration %04d_%s runs outside a transaction: migrate with a pool or a connection, not a %T", m.Version, m.Name, db)
	}
	fail := func(what string, err error) (int, error) {
		return 0, fmt.Errorf("migration %04d_%s: %s: %w", m.Version, m.Name, what, err)
	}
	key := migrationLockKey
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock("+key+")", opts.Schema); err != nil {
		return fail("take migration lock", err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock("+key+")", opts.Schema)
	}()
	if opts.Schema != "" {
		var was string
		if err := conn.QueryRow(ctx, "SELECT current_setting('search_path')").Scan(&was); err != nil {
			return fail("read search_path", err)
		}
		if _, err := conn.Exec(ctx, "SELECT set_config('search_path', $1, false)", sqlname.Quote(opts.Schema)); err != nil {
			return fail("set search_path", err)
		}
		defer func() {
			_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT set_config('search_path', $1, false)", was)
		}()
	}
	done, err := appliedVersions(ctx, conn, true)
	if err != nil {
		return 0, err
	}
	if _, ok := done[m.Version]; ok {
		return -1, nil // another applier did it: go on with the next
	}
	if name := createConcurrently.FindStringSubmatch(m.Up); name != nil {
		var invalid bool
		err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
			WHERE NOT i.indisvalid AND c.relnamespace = current_schema()::regnamespace AND c.relname = $1)`,
			indexRelname(name[1])).Scan(&invalid)
		if err != nil {
			return fail("look for an invalid index left behind", err)
		}
		if invalid {
			if _, err := conn.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+name[1]); err != nil {
				return fail("drop the invalid index left behind", err)
			}
		}
	}
	if _, err := conn.Exec(ctx, m.Up); err != nil {
		return fail("apply", err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO "+versionTable+" (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
		return fail("record", err)
	}
	return m.Version, nil
}

// errLockNotAvailable is wrapped by upNext's error when a statement waited
// for a lock longer than the lock timeout (SQLSTATE 55P03).
var errLockNotAvailable = errors.New("lock not available")

// upNext applies the first of ms not yet applied, in a transaction of its
// own, and returns its version (0: none left).
func upNext(ctx context.Context, db Beginner, opts Options, ms []Migration) (int, error) {
	var version int
	err := withLockedSchema(ctx, db, opts, true, func(tx pgx.Tx, done map[int]time.Time) error {
		for _, m := range ms {
			if _, ok := done[m.Version]; ok {
				continue
			}
			if m.NoTransaction {
				return &outsideError{m}
			}
			// After the advisory lock: lock_timeout would bound that wait
			// too. Restored after the migration: in a caller's pgx.Tx each
			// migration is a savepoint, whose release keeps a setting.
			restore, err := setTimeouts(ctx, tx, opts)
			if err != nil {
				return err
			}
			defer func() {
				if restore != nil {
					_ = restore()
				}
			}()
			if _, err := tx.Exec(ctx, m.Up); err != nil {
				var pgErr *pgconn.PgError
				if errors.As(err, &pgErr) && pgErr.Code == "55P03" {
					return fmt.Errorf("migration %04d_%s: %w (%w)", m.Version, m.Name, errLockNotAvailable, err)
				}
				return fmt.Errorf("apply migration %04d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO "+versionTable+" (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
				return fmt.Errorf("record migration %04d: %w", m.Version, err)
			}
			version = m.Version
			r := restore
			restore = nil
			return r()
		}
		return nil
	})
	return version, err
}

// setTimeouts sets lock_timeout and statement_timeout for the rest of tx
// from opts (a negative LockTimeout is no limit, whatever the role's or
// the database's setting; a zero StatementTimeout leaves the session's),
// and returns a function that sets them back.
func setTimeouts(ctx context.Context, tx pgx.Tx, opts Options) (restore func() error, err error) {
	var lockWas, stmtWas string
	if err := tx.QueryRow(ctx, "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')").Scan(&lockWas, &stmtWas); err != nil {
		return nil, fmt.Errorf("read the timeouts: %w", err)
	}
	lock, stmt := "0", stmtWas
	if opts.LockTimeout > 0 {
		lock = pgMillis(opts.LockTimeout)
	}
	if opts.StatementTimeout > 0 {
		stmt = pgMillis(opts.StatementTimeout)
	}
	set := func(lock, stmt string) error {
		_, err := tx.Exec(ctx, "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)", lock, stmt)
		if err != nil {
			return fmt.Errorf("set the timeouts: %w", err)
		}
		return nil
	}
	if err := set(lock, stmt); err != nil {
		return nil, err
	}
	return func() error { return set(lockWas, stmtWas) }, nil
}

// pgMillis formats d for a PostgreSQL duration setting, in whole
// milliseconds, at least 1 (0 would mean no limit).
func pgMillis(d time.Duration) string {
	return strconv.FormatInt(max(1, d.Milliseconds()), 10) + "ms"
}

// Down reverts the latest steps applied migrations (all of them when steps
// is 0 or more than are applied), in one transaction, and returns the
// versions it reverted.
func Down(ctx context.Context, db Beginner, opts Options, steps int) ([]int, error) {
	if steps < 0 {
		return nil, fmt.Errorf("steps must be 0 (all) or positive, got %d", steps)
	}
	var reverted []int
	err := withLockedSchema(ctx, db, opts, true, func(tx pgx.Tx, done map[int]time.Time) error {
		all := All()
		for i := len(all) - 1; i >= 0; i-- {
			m := all[i]
			if _, ok := done[m.Version]; !ok {
				continue
			}
			if steps > 0 && len(reverted) == steps {
				break
			}
			if _, err := tx.Exec(ctx, m.Down); err != nil {
				return fmt.Errorf("revert migration %04d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, "DELETE FROM "+versionTable+" WHERE version = $1", m.Version); err != nil {
				return fmt.Errorf("unrecord migration %04d: %w", m.Version, err)
			}
			reverted = append(reverted, m.Version)
		}
		return nil
	})
	return reverted, err
}

// Status reports every embedded migration and whether it is applied. It
// writes nothing: a missing schema reads as nothing applied.
func Status(ctx context.Context, db Beginner, opts Options) ([]State, error) {
	var states []State
	err := withLockedSchema(ctx, db, opts, false, func(_ pgx.Tx, done map[int]time.Time) error {
		for _, m := range All() {
			at, ok := done[m.Version]
			states = append(states, State{Version: m.Version, Name: m.Name, Applied: ok, AppliedAt: at})
		}
		return nil
	})
	return states, err
}

// withLockedSchema runs fn in a transaction that holds the schema's advisory
// lock, has search_path set to the schema, and has read the applied versions.
// With write false it creates nothing and fn must not write.
func withLockedSchema(ctx context.Context, db Beginner, opts Options, write bool, fn func(pgx.Tx, map[int]time.Time) error) error {
	if err := sqlname.ValidateSchema(opts.Schema); err != nil {
		return fmt.Errorf("migrations: Options.Schema: %w", err)
	}
	tx, err := lockedTx(ctx, db, opts)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if opts.Schema != "" {
		quoted := sqlname.Quote(opts.Schema)
		if write {
			if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+quoted); err != nil {
				return fmt.Errorf("create schema %s: %w", quoted, err)
			}
		}
		if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+quoted); err != nil {
			return fmt.Errorf("set search_path to %s: %w", quoted, err)
		}
	}
	done, err := appliedVersions(ctx, tx, write)
	if err != nil {
		return err
	}
	if err := fn(tx, done); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit migration transaction: %w", err)
	}
	return nil
}

// querier is what appliedVersions reads with: a pgx.Tx or a *pgx.Conn.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// migrationLockKey is the schema's advisory lock, whatever the caller
// called it: "" is the first schema of search_path, so Up with "" and Up
// with "public" on a default connection take the same lock. $1 is the
// schema.
const migrationLockKey = "hashtext('outbox.migrate.' || COALESCE(NULLIF($1, ''), current_schema(), ''))"

// lockedTx begins a transaction holding the schema's advisory lock. It
// waits for the lock outside any transaction (try, roll back, wait, try
// again): a transaction waiting for it would be one that a no-transaction
// migration's CREATE INDEX CONCURRENTLY, run under the same lock, waits for
// in turn, a deadlock.
func lockedTx(ctx context.Context, db Beginner, opts Options) (pgx.Tx, error) {
	delay := 20 * time.Millisecond
	for {
		tx, err := db.Begin(ctx)
		if err != nil {
			return nil, fmt.Errorf("begin migration transaction: %w", err)
		}
		var got bool
		if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock("+migrationLockKey+")", opts.Schema).Scan(&got); err != nil {
			_ = tx.Rollback(ctx)
			return nil, fmt.Errorf("take migration lock: %w", err)
		}
		if got {
			return tx, nil
		}
		_ = tx.Rollback(ctx)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("take migration lock: %w", ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

func appliedVersions(ctx context.Context, tx querier, create bool) (map[int]time.Time, error) {
	done := map[int]time.Time{}
	if !create {
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", versionTable).Scan(&exists); err != nil {
			return nil, fmt.Errorf("look up %s: %w", versionTable, err)
		}
		if !exists {
			return done, nil
		}
	}
	if create {
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+versionTable+` (
			version    integer     PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`)
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", versionTable, err)
		}
	}
	rows, err := tx.Query(ctx, "SELECT version, applied_at FROM "+versionTable)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", versionTable, err)
	}
	var (
		version int
		at      time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&version, &at}, func() error {
		done[version] = at
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", versionTable, err)
	}
	return done, nil
}
