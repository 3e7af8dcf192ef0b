package relay_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

func TestDrainDuringAuthPauseReturnsAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.AuthPause = time.Minute
	b.fake.SetToken("rotated-elsewhere")
	b.appendCommitted(t, []string{"org-auth"}, 3)
	r := b.newRelay(t)

	res, err := r.DrainOrganization(b.ctx, "org-auth", 5*time.Second)
	require.NoError(t, err)
	require.True(t, res.AuthFailed)
	turns := r.Stats().Turns

	// A budget of a minute against a bound of 15 s: a drain that spun
	// until its budget ended is told from one that returned at once on
	// however loaded a machine.
	start := time.Now()
	res, err = r.DrainOrganization(b.ctx, "org-auth", time.Minute)
	require.NoError(t, err)
	require.True(t, res.AuthFailed, "the pause is reported")
	require.False(t, res.Busy)
	require.Less(t, time.Since(start), 15*time.Second, "a drain during the pause must not spin until its budget ends")
	require.Equal(t, turns, r.Stats().Turns, "no lane is claimed while the token is refused")
	require.Equal(t, 3, res.Remaining)
	var attempts int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT max(attempts) FROM outbox_events").Scan(&attempts))
	require.Zero(t, attempts)
}

func TestDrainOrganization(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.BatchSize = 10
	b.cfg.QuickRetries = -1 // the 503 below must wait for its scheduled retry
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
	require.ErrorIs(t, err, relay.ErrInvalidBudget)
	_ = committed
}

func TestDrainReportsWhenTheNextTurnCanDeliver(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.QuickRetries = -1
	b.appendCommitted(t, []string{"org-next"}, 1)
	r := b.newRelay(t)

	b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultStatus, Status: 503, Times: 1})
	res, err := r.DrainOrganization(b.ctx, "org-next", 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, 1, res.Retried)
	// The retry's delay is jittered (it may be a millisecond): in the
	// database, the head's retry is an hour away.
	var retryAt time.Time
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, `UPDATE outbox_events SET next_attempt_at = now() + interval '1 hour'
		WHERE next_attempt_at IS NOT NULL RETURNING next_attempt_at`).Scan(&retryAt))
	_, err = b.db.Pool.Exec(b.ctx, `UPDATE outbox_lanes SET due_at = $1`, retryAt)
	require.NoError(t, err)
	b.appendCommitted(t, []string{"org-next"}, 1) // due now, but behind the head

	res, err = r.DrainOrganization(b.ctx, "org-next", 5*time.Second)
	require.NoError(t, err)
	require.Zero(t, res.Delivered, "the head's retry is not due yet")
	require.Equal(t, 2, res.Remaining)
	require.True(t, res.NextAttemptAt.Equal(retryAt), "the head waits for its retry: %s, want %s", res.NextAttemptAt, retryAt)
	require.True(t, res.NextTurnAt.Equal(retryAt), "and the lane with it, the new event behind it too: NextTurnAt %s", res.NextTurnAt)

	// Time passes in the database: the head's retry and the lane come due.
	_, err = b.db.Pool.Exec(b.ctx, `UPDATE outbox_events SET next_attempt_at = now() WHERE next_attempt_at > now()`)
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(b.ctx, `UPDATE outbox_lanes SET due_at = now()`)
	require.NoError(t, err)
	res, err = r.DrainOrganization(b.ctx, "org-next", 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, 2, res.Delivered)
	require.True(t, res.NextTurnAt.IsZero(), "nothing remains")
}

func TestDrainAfterRateLimitWaitsForThePause(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.appendCommitted(t, []string{"org-429"}, 2)
	r := b.newRelay(t)

	b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultRateLimit, RetryAfter: 3 * time.Second, Times: 1})
	// The pause starts on the database's clock while the drain settles,
	// somewhere between these two readings of it, however slow the machine.
	before := b.dbNow(t)
	res, err := r.DrainOrganization(b.ctx, "org-429", 5*time.Second)
	require.NoError(t, err)
	after := b.dbNow(t)
	require.True(t, res.RateLimited)
	require.Equal(t, 2, res.Remaining)
	pausedUntil := res.NextTurnAt
	require.False(t, pausedUntil.Before(before.Add(3*time.Second)), "the pause Svix asked for: until %s, drain began %s", pausedUntil, before)
	require.False(t, pausedUntil.After(after.Add(3*time.Second)), "the pause Svix asked for: until %s, drain ended %s", pausedUntil, after)

	res, err = r.DrainOrganization(b.ctx, "org-429", 5*time.Second)
	require.NoError(t, err)
	require.True(t, res.Busy, "the lane is paused")
	require.True(t, res.NextTurnAt.Equal(pausedUntil), "still the same pause: %s, want %s", res.NextTurnAt, pausedUntil)
}
