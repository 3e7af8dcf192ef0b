package migrations

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxrelay/outbox/internal/sqlname"
)

// versionTable records the applied migrations in the target schema.
const versionTable = sqlname.Migrations

// Beginner starts transactions: *pgxpool.Pool, *pgx.Conn and pgx.Tx (as a
// savepoint) satisfy it.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Options selects where the migrations apply.
type Options struct {
	// Schema is the PostgreSQL schema that holds outbox's tables. It is created
	// if missing. Defaults to "", which means the first schema of the
	// connection's search_path (usually "public").
	Schema string
}

// State is one migration and whether it is applied.
type State struct {
	Version   int
	Name      string
	Applied   bool
	AppliedAt time.Time // zero when not applied
}

// Up applies every migration not yet applied, in version order, in one
// transaction, and returns the versions it applied (none when the schema is
// current).
func Up(ctx context.Context, db Beginner, opts Options) ([]int, error) {
	var applied []int
	err := withLockedSchema(ctx, db, opts, true, func(tx pgx.Tx, done map[int]time.Time) error {
		for _, m := range All() {
			if _, ok := done[m.Version]; ok {
				continue
			}
			if _, err := tx.Exec(ctx, m.Up); err != nil {
				return fmt.Errorf("apply migration %04d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO "+versionTable+" (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
				return fmt.Errorf("record migration %04d: %w", m.Version, err)
			}
			applied = append(applied, m.Version)
		}
		return nil
	})
	return applied, err
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
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin migration transaction: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()

	// The lock is the schema's, whatever the caller called it: "" is the
	// first schema of search_path, so Up with "" and Up with "public" on a
	// default connection take the same lock.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('outbox.migrate.' || COALESCE(NULLIF($1, ''), current_schema(), '')))", opts.Schema); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
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

func appliedVersions(ctx context.Context, tx pgx.Tx, create bool) (map[int]time.Time, error) {
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
