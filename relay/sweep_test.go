package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

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
			n, err := r.Admin().RequeueDeadLetters(b.ctx, relay.DeadLetterSelection{All: true})
			require.NoError(t, err)
			require.Equal(t, 1, n)
			b.waitMessages(t, len(committed), 10*time.Second)
			b.waitSettled(t, 10*time.Second)
			b.requireExactlyOnce(t, committed)
			require.Len(t, b.deliveries(t), len(committed))
		})
	}
}
