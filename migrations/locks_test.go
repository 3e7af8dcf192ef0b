package migrations_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/migrations"
)

// lockedUpgrade is a live installation mid-upgrade: a producer's
// transaction holds outbox_events (it appended an event and is still
// working) while a migration that alters the table runs.
type lockedUpgrade struct {
	ctx     context.Context
	db      *pgtest.DB
	slowPID int        // the slow transaction's backend
	done    chan error // the migration's result
	end     func()     // ends the slow transaction (commits it)
}

func startLockedUpgrade(t *testing.T, lockTimeout time.Duration) *lockedUpgrade {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	slow, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = slow.Rollback(ctx) })
	_, err = slow.Exec(ctx, "INSERT INTO outbox_events (event_id, organization_id, event_type, payload) VALUES (gen_random_uuid(), 'org-slow', 't', '{}')")
	require.NoError(t, err)

	u := &lockedUpgrade{ctx: ctx, db: db, done: make(chan error, 1), end: func() { require.NoError(t, slow.Commit(ctx)) }}
	require.NoError(t, slow.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&u.slowPID))
	ms := []migrations.Migration{{Version: 9001, Name: "alter_events", Up: "ALTER TABLE outbox_events ADD COLUMN upgraded boolean"}}
	opts := migrations.Options{Schema: db.Schema, LockTimeout: lockTimeout, LockRetryDelay: 50 * time.Millisecond}
	go func() { _, err := migrations.UpThese(ctx, db.Pool, opts, ms); u.done <- err }()
	// The ALTER asks for its lock: it waits behind the slow transaction
	// (this test's: the tests run in parallel, each on a schema of its own).
	require.Eventually(t, func() bool {
		var waiting bool
		err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE $1 = ANY(pg_blocking_pids(pid)) AND query LIKE 'ALTER TABLE outbox_events%')`, u.slowPID).Scan(&waiting)
		return err == nil && waiting
	}, 10*time.Second, time.Millisecond, "the migration waits for its lock")
	return u
}

// producerLockTimeout is the longest appendOne waits for a lock before it
// fails: ten times the migration's lock timeout in the test below. It
// bounds the lock wait, not the append's time, which a loaded machine
// stretches whatever the migration does.
const producerLockTimeout = "1s"

// appendOne appends an event in a transaction of its own, waiting at most
// producerLockTimeout for a lock, and returns how long it took.
func (u *lockedUpgrade) appendOne(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	err := pgx.BeginFunc(u.ctx, u.db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(u.ctx, "SELECT set_config('lock_timeout', $1, true)", producerLockTimeout); err != nil {
			return err
		}
		_, err := tx.Exec(u.ctx, "INSERT INTO outbox_events (event_id, organization_id, event_type, payload) VALUES (gen_random_uuid(), 'org-live', 't', '{}')")
		return err
	})
	require.NoError(t, err, "an append waited %s for a lock", producerLockTimeout)
	return time.Since(start)
}

// A migration waiting for a lock gives it up after LockTimeout and tries
// again, so producers never queue behind it for longer (none waits
// producerLockTimeout for its lock); it is applied once the slow
// transaction ends.
func TestMigrationWaitingForALockDoesNotStopProducers(t *testing.T) {
	t.Parallel()
	u := startLockedUpgrade(t, 100*time.Millisecond)
	var worst time.Duration
	for range 20 { // about 1 s of producing while the upgrade waits
		worst = max(worst, u.appendOne(t))
		time.Sleep(50 * time.Millisecond) // pacing: one producer at 20 events/s
	}
	select {
	case err := <-u.done:
		t.Fatalf("the migration finished while the slow transaction held its table: %v", err)
	default:
	}
	u.end()
	require.NoError(t, <-u.done, "applied once the slow transaction ended")
	var exists bool
	require.NoError(t, u.db.Pool.QueryRow(u.ctx, "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'outbox_events' AND column_name = 'upgraded')", u.db.Schema).Scan(&exists))
	require.True(t, exists)
	// Reported, not asserted: each append above waited less than
	// producerLockTimeout for its lock, or failed.
	t.Logf("longest producer wait during the upgrade: %s", worst)
}

// Without a lock timeout (plain psql's behaviour) the waiting ALTER holds
// its place in the lock queue, and a producer's INSERT waits behind it
// until the slow transaction ends: what LockTimeout prevents.
func TestMigrationWithoutLockTimeoutQueuesProducers(t *testing.T) {
	t.Parallel()
	u := startLockedUpgrade(t, -1)
	appended := make(chan struct{})
	go func() {
		_, err := u.db.Pool.Exec(u.ctx, "INSERT INTO outbox_events (event_id, organization_id, event_type, payload) VALUES (gen_random_uuid(), 'org-live', 't', '{}')")
		if err == nil {
			close(appended)
		}
	}()
	// The INSERT waits for the ALTER (ahead of it in the lock queue), which
	// waits for this test's slow transaction.
	require.Eventually(t, func() bool {
		var waiting bool
		err := u.db.Pool.QueryRow(u.ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity a, pg_stat_activity m
			WHERE $1 = ANY(pg_blocking_pids(m.pid)) AND m.query LIKE 'ALTER TABLE outbox_events%'
			  AND m.pid = ANY(pg_blocking_pids(a.pid)) AND a.query LIKE 'INSERT INTO outbox_events%org-live%')`, u.slowPID).Scan(&waiting)
		return err == nil && waiting
	}, 10*time.Second, time.Millisecond, "the producer queues behind the waiting ALTER")
	u.end()
	require.NoError(t, <-u.done)
	<-appended
}

// A statement that runs longer than StatementTimeout is cancelled, its
// migration rolled back and reported, not retried.
func TestMigrationStatementTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	ms := []migrations.Migration{{Version: 9001, Name: "slow", Up: "CREATE TABLE slow_marker (x int); SELECT pg_sleep(5)"}}
	applied, err := migrations.UpThese(ctx, db.Pool, migrations.Options{Schema: db.Schema, StatementTimeout: 50 * time.Millisecond}, ms)
	require.ErrorContains(t, err, "statement timeout")
	require.Empty(t, applied)
	var exists bool
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT to_regclass('slow_marker') IS NOT NULL").Scan(&exists))
	require.False(t, exists, "rolled back")
}

// In a caller's transaction each migration is a savepoint, whose release
// would keep the migration's timeouts: they are set back, and the caller's
// statements after Up run under the caller's settings.
func TestUpInACallersTransactionKeepsItsTimeouts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, "SET LOCAL lock_timeout = '7s'")
	require.NoError(t, err)
	ms := []migrations.Migration{{Version: 9001, Name: "alter_events", Up: "ALTER TABLE outbox_events ADD COLUMN upgraded boolean"}}
	applied, err := migrations.UpThese(ctx, tx, migrations.Options{Schema: db.Schema, StatementTimeout: time.Minute}, ms)
	require.NoError(t, err)
	require.Equal(t, []int{9001}, applied)
	var lock, stmt string
	require.NoError(t, tx.QueryRow(ctx, "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')").Scan(&lock, &stmt))
	require.Equal(t, "7s", lock)
	require.Equal(t, "0", stmt)
}
