package relay

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/internal/testsignal"
)

// livenessSetup returns a heartbeater alone (no relay) and a pool of
// MinPoolConns connections on the same database.
func livenessSetup(t *testing.T) (*heartbeater, *pgxpool.Pool, *pgtest.DB) {
	t.Helper()
	db := pgtest.New(t)
	cfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	cfg.MaxConns = MinPoolConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	h := newHeartbeater(pool.Config().ConnConfig, newQueries(""), Config{SvixToken: "t"}.withDefaults(), newInstance(),
		func(...string) {}, func() []byte { return []byte("{}") }, &testsignal.Signal[error]{})
	t.Cleanup(h.close)
	return h, pool, db
}

// aliveInDatabase reports whether the relay's heartbeat row is committed
// and fresh.
func aliveInDatabase(t *testing.T, db *pgtest.DB, h *heartbeater) bool {
	t.Helper()
	var alive bool
	require.NoError(t, db.Pool.QueryRow(context.Background(),
		`SELECT EXISTS (SELECT 1 FROM outbox_relays WHERE instance = $1 AND alive_until > now())`, h.instance).Scan(&alive))
	return alive
}

// The heartbeat and the mourning of stale relays shared a transaction:
// mourning a row another transaction held (a stale relay heartbeating
// again, or mourning this one) waited, deadlocked or failed, rolled the
// heartbeat back, and the relay still counted itself alive from it. The
// heartbeat commits alone, and mourning skips rows it would wait for.
func TestHeartbeatCommitsWhatItCounts(t *testing.T) {
	t.Parallel()
	h, _, db := livenessSetup(t)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_relays (instance, name, alive_until)
		VALUES (gen_random_uuid(), 'stale', now() - interval '1 minute')`)
	require.NoError(t, err)
	other, err := db.Pool.Begin(ctx) // the stale relay, heartbeating again
	require.NoError(t, err)
	defer func() { _ = other.Rollback(ctx) }()
	_, err = other.Exec(ctx, `UPDATE outbox_relays SET alive_until = now() + interval '1 second' WHERE name = 'stale'`)
	require.NoError(t, err)

	beatCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, h.beat(beatCtx), "mourning waited for a row another transaction held")
	require.NotZero(t, h.lastBeat.Load())
	require.True(t, aliveInDatabase(t, db, h), "the heartbeat the relay counts is committed")
}

// The heartbeat has a connection of its own: a pool kept busy by the
// sweep, pruning and backlog queries (each up to 5 s) must not fence a
// healthy relay.
func TestHeartbeatDoesNotWaitForThePool(t *testing.T) {
	t.Parallel()
	h, pool, db := livenessSetup(t)
	ctx := context.Background()
	for range pool.Config().MaxConns {
		conn, err := pool.Acquire(ctx)
		require.NoError(t, err)
		defer conn.Release()
	}
	beatCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, h.beat(beatCtx))
	require.True(t, aliveInDatabase(t, db, h))
}

// The heartbeater alone on a fake clock: it beats once per interval of its
// clock, each beat keeps it fresh, and it goes stale (the relay fences
// itself) 3/4 of the liveness timeout after the last beat it sent.
func TestHeartbeaterBeatsOnItsClock(t *testing.T) {
	t.Parallel()
	h, _, db := livenessSetup(t)
	clock := clockwork.NewFakeClock()
	h.clock = clock
	h.beaten.Init()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.loop(ctx) }()
	require.NoError(t, clock.BlockUntilContext(ctx, 1), "the loop's ticker")
	require.False(t, h.fresh(), "no beat yet")

	for range 3 {
		clock.Advance(h.interval)
		require.NoError(t, h.beaten.Wait(t))
		require.Equal(t, clock.Now().UnixNano(), h.lastBeat.Load(), "a beat counts from when it was sent")
		require.True(t, h.fresh())
		require.True(t, aliveInDatabase(t, db, h))
	}
	cancel()
	<-done
	clock.Advance(h.timeout * 3 / 4)
	require.False(t, h.fresh(), "3/4 of the timeout after the last beat, the relay fences itself")
}

// A relay is fenced until a heartbeat of its own run gets through, even
// when it runs again: its row went when its last run stopped, and the
// first sweep no longer waits for the first heartbeat. (The fake clock
// never moves: without the reset, the last run's heartbeat would look
// fresh.)
func TestRelayRunAgainIsFencedUntilItsHeartbeat(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	// A first heartbeat that waits for the lock below, rather than time out.
	cfg := Config{SvixToken: "t", SvixServerURL: "http://127.0.0.1:1", PollOnly: true, LivenessTimeout: time.Minute}
	cfg.clock = clockwork.NewFakeClockAt(time.Now())
	r, err := New(db.Pool, cfg)
	require.NoError(t, err)
	r.testSignals.Beat.Init()
	run := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		return func() { cancel(); require.NoError(t, <-done) }
	}

	stop := run()
	require.NoError(t, r.testSignals.Beat.Wait(t))
	require.True(t, r.alive())
	stop()
	require.True(t, r.beats.fresh(), "the last run's heartbeat, on the frozen clock")

	ctx := context.Background()
	held, err := db.Pool.Begin(ctx) // the next heartbeat waits for this lock
	require.NoError(t, err)
	_, err = held.Exec(ctx, "LOCK TABLE outbox_relays IN EXCLUSIVE MODE")
	require.NoError(t, err)
	stop = run()
	defer func() {
		_ = held.Rollback(ctx) // first: the relay's leave waits for the lock
		stop()
	}()
	require.Eventually(t, r.heartbeating.Load, 10*time.Second, time.Millisecond)
	require.False(t, r.alive(), "fenced while its first heartbeat waits")
	require.NoError(t, held.Rollback(ctx))
	require.NoError(t, r.testSignals.Beat.Wait(t))
	require.True(t, r.alive(), "its heartbeat got through")
}
