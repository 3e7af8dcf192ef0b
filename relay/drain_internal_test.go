package relay

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/pgtest"
)

// drainSetup returns a relay and a schema holding one pending event of
// org-d.
func drainSetup(t *testing.T, cfg Config) *Relay {
	t.Helper()
	db := pgtest.New(t)
	_, err := db.Pool.Exec(context.Background(), `INSERT INTO outbox_events (event_id, organization_id, event_type, payload)
		VALUES (gen_random_uuid(), 'org-d', 'x.y', '{}')`)
	require.NoError(t, err)
	cfg.SvixToken = "t"
	cfg.SvixServerURL = "http://127.0.0.1:1" // never reached: these drains send nothing
	r, err := New(db.Pool, cfg)
	require.NoError(t, err)
	return r
}

// A fenced relay (Run is heartbeating, but the last heartbeat that got
// through is too old) may start no call. Its drain made 272 claim-and-settle
// round trips in 500 ms, each refused to send; it must stop at once, say
// why, and come back after the next heartbeat.
func TestFencedDrainStopsAtOnce(t *testing.T) {
	t.Parallel()
	r := drainSetup(t, Config{})
	r.heartbeating.Store(true)
	r.beats.lastBeat.Store(time.Now().Add(-r.cfg.LivenessTimeout).UnixNano())

	res, err := r.DrainOrganization(context.Background(), "org-d", time.Minute)
	require.NoError(t, err)
	require.True(t, res.Fenced)
	require.Zero(t, r.stats.claims.Load(), "a fenced drain claims nothing")
	require.Equal(t, 1, res.Remaining)
	require.False(t, res.NextTurnAt.IsZero(), "it says when to come back")
}

// At most Concurrency drains work at once: one beyond them waits for a slot
// and claims nothing while it waits, so a Temporal worker running a
// thousand activities holds no more leases than Run would.
func TestDrainsBeyondConcurrencyWaitForASlot(t *testing.T) {
	t.Parallel()
	r := drainSetup(t, Config{Concurrency: 1})
	r.drainSlots <- struct{}{} // another drain holds the only slot

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := r.DrainOrganization(ctx, "org-d", time.Minute)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Zero(t, r.stats.claims.Load(), "no claim without a slot")
	<-r.drainSlots
}

// The drain's closing count is bounded: a backlog of any size costs one
// bounded walk of the organization's index.
func TestDrainCountsRemainingUpToTheBound(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_events (event_id, organization_id, event_type, payload, next_attempt_at)
		SELECT gen_random_uuid(), 'org-deep', 'x.y', '{}', now() + interval '1 hour' FROM generate_series(1, $1)`, MaxCountedRemaining+5)
	require.NoError(t, err)
	r, err := New(db.Pool, Config{SvixToken: "t", SvixServerURL: "http://127.0.0.1:1"})
	require.NoError(t, err)
	res, err := r.DrainOrganization(ctx, "org-deep", time.Minute)
	require.NoError(t, err)
	require.Equal(t, MaxCountedRemaining, res.Remaining)
	require.True(t, res.NextAttemptAt.After(time.Now()), "the head waits for its retry")
}
