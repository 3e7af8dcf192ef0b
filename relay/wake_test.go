package relay_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

// appendWithSignal commits one event and signals after the commit.
func (b *bundle) appendWithSignal(t *testing.T, s outbox.Signaler, org string) outbox.AppendResult {
	t.Helper()
	var res outbox.AppendResult
	err := outbox.WithTx(b.ctx, b.db.Pool, s, func(tx *outbox.Tx) error {
		var err error
		res, err = outbox.Append(b.ctx, tx, outbox.AppendParams{OrganizationID: org, EventType: "test.event", Payload: map[string]any{}})
		return err
	})
	require.NoError(t, err)
	return res
}

func TestNotifySignalWakesDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.PollInterval = time.Hour // only the signal can deliver
	r, _ := b.start(t)
	require.Eventually(t, r.Ready, 10*time.Second, 5*time.Millisecond, "LISTEN connection up")

	sig, err := outbox.NewNotifySignaler(b.db.Pool, b.cfg.Channel)
	require.NoError(t, err)
	var committed []outbox.AppendResult
	for i := range 5 {
		committed = append(committed, b.appendWithSignal(t, sig, fmt.Sprintf("org-%d", i)))
	}
	b.waitMessages(t, len(committed), 10*time.Second)
	b.requireExactlyOnce(t, committed)
}

func TestInProcessSignalWakesDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.PollInterval = time.Hour
	b.cfg.PollOnly = true // no LISTEN, no NOTIFY: the relay is the signaler
	r, _ := b.start(t)

	committed := []outbox.AppendResult{b.appendWithSignal(t, r, "org-in-process")}
	b.waitMessages(t, 1, 10*time.Second)
	b.requireExactlyOnce(t, committed)
}

func TestSweepFindsUnsignalledEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.PollOnly = true
	b.cfg.PollInterval = 50 * time.Millisecond
	r, _ := b.start(t)
	require.Eventually(t, r.Ready, 10*time.Second, 5*time.Millisecond)

	committed := b.appendCommitted(t, []string{"org-s1", "org-s2"}, 3) // no signal at all
	b.waitMessages(t, len(committed), 10*time.Second)
	b.requireExactlyOnce(t, committed)
}

func TestBurstOfSignalsIsCoalesced(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.PollInterval = time.Hour
	b.cfg.PollOnly = true
	b.fake.SetLatency(20 * time.Millisecond)
	r, _ := b.start(t)

	committed := b.appendCommitted(t, []string{"org-burst"}, 10)
	for range 1000 {
		require.NoError(t, r.SignalRelay(b.ctx, "org-burst"))
	}
	b.waitMessages(t, len(committed), 10*time.Second)
	b.waitSettled(t, 10*time.Second)
	// 1000 signals for one lane: a turn or a few, not a thousand.
	require.Less(t, r.Stats().Turns, uint64(10))
}

func TestGracefulShutdownLosesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.SetLatency(5 * time.Millisecond)
	b.cfg.Concurrency = 4
	committed := b.appendCommitted(t, []string{"org-g1", "org-g2", "org-g3", "org-g4"}, 50)

	_, stop := b.start(t)
	b.waitMessages(t, 20, 10*time.Second)
	stop() // mid-backlog
	delivered := b.fake.MessageCount()
	require.Less(t, delivered, len(committed), "stopped before the end, as the test intends")
	var held int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_lanes WHERE lease_token IS NOT NULL").Scan(&held))
	require.Zero(t, held, "leases are released on shutdown")
	var history int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_deliveries").Scan(&history))
	require.Equal(t, delivered, history, "everything Svix created was settled before Run returned")
	require.Equal(t, len(committed)-delivered, b.pending(t))

	b.start(t)
	b.waitMessages(t, len(committed), 20*time.Second)
	b.waitSettled(t, 10*time.Second)
	b.requireExactlyOnce(t, committed)
}

func TestShutdownInterruptsHangingCalls(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.SendTimeout = 2 * time.Second
	b.cfg.LeaseDuration = 10 * time.Second
	b.cfg.ShutdownTimeout = 100 * time.Millisecond
	b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultHang})
	b.appendCommitted(t, []string{"org-h"}, 1)

	_, stop := b.start(t)
	require.Eventually(t, func() bool { return b.fake.CreateAttempts() == 1 }, 10*time.Second, 5*time.Millisecond)
	stopped := time.Now()
	stop()
	require.Less(t, time.Since(stopped), 1500*time.Millisecond, "Run waited for the call instead of ShutdownTimeout")
	var attempts, held int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT attempts FROM outbox_events").Scan(&attempts))
	require.Zero(t, attempts, "an interrupted call is taken back, not counted")
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_lanes WHERE lease_token IS NOT NULL").Scan(&held))
	require.Zero(t, held)
}

func TestDrainOrganization(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.BatchSize = 10
	committed := b.appendCommitted(t, []string{"org-d", "org-other"}, 25)
	r := b.newRelay(t)

	res, err := r.DrainOrganization(b.ctx, "org-d", 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, 25, res.Delivered)
	require.Zero(t, res.Remaining)
	require.True(t, res.NextAttemptAt.IsZero())
	require.Len(t, b.fake.MessagesFor("org-d"), 25)
	require.Empty(t, b.fake.MessagesFor("org-other"), "a drain works one organization only")

	b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultStatus, Status: 503, Times: 1})
	res, err = r.DrainOrganization(b.ctx, "org-other", 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, 1, res.Retried)
	require.Equal(t, 25, res.Remaining, "the lane waits for its head event's retry")
	require.False(t, res.NextAttemptAt.IsZero())

	_, err = r.DrainOrganization(b.ctx, "org-other", 0)
	require.ErrorIs(t, err, relay.ErrInvalidConfig)
	_ = committed
}

func TestExplicitSchemaWithoutSearchPath(t *testing.T) {
	t.Parallel()
	b := setup(t)
	plain, err := pgxpool.New(b.ctx, pgtest.ServerURL(t))
	require.NoError(t, err)
	t.Cleanup(plain.Close)
	b.cfg.Schema = b.db.Schema
	committed := b.appendCommitted(t, []string{"org-schema"}, 3)

	r, err := relay.New(plain, b.cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(b.ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = r.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	b.waitMessages(t, len(committed), 10*time.Second)
	b.requireExactlyOnce(t, committed)
}

func TestRunTwiceIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, _ := b.start(t)
	require.Eventually(t, r.Ready, 10*time.Second, 5*time.Millisecond)
	require.ErrorIs(t, r.Run(b.ctx), relay.ErrAlreadyRunning)
}

func TestBusyOrganizationCannotStarveOthers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.Concurrency = 1 // one lane at a time: turns are all there is
	b.cfg.BatchSize = 10
	b.fake.SetLatency(time.Millisecond)
	busy := b.appendCommitted(t, []string{"org-busy"}, 300)
	quiet := b.appendCommitted(t, []string{"org-q1", "org-q2", "org-q3"}, 1)

	b.start(t)
	b.waitMessages(t, len(busy)+len(quiet), 30*time.Second)
	position := map[string]int{}
	for i, m := range b.fake.Messages() {
		position[m.EventID] = i
	}
	for _, q := range quiet {
		// Each organization waits at most a few turns of the busy one.
		require.Less(t, position[q.EventID.String()], 60, "org %s starved behind org-busy", q.OrganizationID)
	}
}

func TestDeliveryHistoryIsPruned(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.DeliveredRetention = 300 * time.Millisecond
	b.appendCommitted(t, []string{"org-h"}, 3)

	b.start(t)
	b.waitMessages(t, 3, 10*time.Second)
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_deliveries").Scan(&n))
		return n == 0
	}, 10*time.Second, 20*time.Millisecond, "history past its retention is pruned")
}

func TestNoHistoryWhenRetentionNegative(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.DeliveredRetention = -1
	committed := b.appendCommitted(t, []string{"org-nh"}, 3)

	b.start(t)
	b.waitMessages(t, 3, 10*time.Second)
	b.waitSettled(t, 10*time.Second)
	b.requireExactlyOnce(t, committed)
	require.Empty(t, b.deliveries(t))
}

// Behind PgBouncer in transaction pooling mode the relay runs poll-only on
// a pool without server-side prepared statements.
func TestPollOnlyWithoutPreparedStatements(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"exec", "simple_protocol"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			pool, err := pgxpool.New(b.ctx, b.db.URL+"&default_query_exec_mode="+mode)
			require.NoError(t, err)
			t.Cleanup(pool.Close)
			b.cfg.PollOnly = true
			b.cfg.PollInterval = 50 * time.Millisecond
			committed := b.appendCommitted(t, []string{"org-p1", "org-p2"}, 5)
			b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultStatus, Status: 422, Times: 1})

			r, err := relay.New(pool, b.cfg)
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(b.ctx)
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			defer func() { cancel(); require.NoError(t, <-done) }()

			b.waitMessages(t, len(committed)-1, 10*time.Second)
			b.waitSettled(t, 10*time.Second)
			waitStats(t, func(st relay.Stats) bool {
				return st.Delivered == uint64(len(committed)-1) && st.DeadLettered == 1
			}, r)
			n, err := r.DeadLetters().Requeue(b.ctx, relay.DeadLetterFilter{All: true})
			require.NoError(t, err)
			require.Equal(t, 1, n)
			b.waitMessages(t, len(committed), 10*time.Second)
			b.waitSettled(t, 10*time.Second)
			b.requireExactlyOnce(t, committed)
			require.Len(t, b.deliveries(t), len(committed))
		})
	}
}
