package relay_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/relay"
)

// startWithSignals runs a relay with its test signals armed, after its
// first sweep. It runs on the real clock: a lane with several events takes
// several turns, and the relay waits a poll interval between some of them.
func (b *bundle) startWithSignals(t *testing.T) (*relay.Relay, *relay.TestSignals) {
	t.Helper()
	r := b.newRelay(t)
	signals := relay.InitTestSignals(r)
	b.run(t, r)
	signals.Swept.Wait(t)
	return r, signals
}

// sweeps waits for the relay's next n sweeps.
func sweeps(t *testing.T, signals *relay.TestSignals, n int) {
	t.Helper()
	signals.Swept.Drain()
	for range n {
		signals.Swept.Wait(t)
	}
}

// A paused organization gets nothing while others are delivered; resumed,
// it gets every event, once, in order.
func TestPausedOrganizationWaitsAndResumesInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, signals := b.startWithSignals(t)
	admin := r.Admin()

	p, err := admin.PauseOrganization(b.ctx, relay.PauseParams{OrganizationID: "org-paused", Reason: "tenant flooding"})
	require.NoError(t, err)
	require.Equal(t, "org-paused", p.OrganizationID)
	require.Equal(t, "tenant flooding", p.Reason)
	require.Nil(t, p.Until, "paused until resumed")

	paused := b.appendCommitted(t, []string{"org-paused"}, 3)
	other := b.appendCommitted(t, []string{"org-other"}, 3)
	require.NoError(t, r.SignalRelay(b.ctx, "org-paused"))
	require.NoError(t, r.SignalRelay(b.ctx, "org-other"))
	b.waitMessages(t, 3, 10*time.Second)
	waitStats(t, func(s relay.Stats) bool { return s.Delivered >= 3 }, r)
	sweeps(t, signals, 3) // three sweeps see the paused lane due, and leave it
	require.Empty(t, b.fake.MessagesFor("org-paused"), "a paused organization was delivered")
	b.requireExactlyOnce(t, other)
	require.Equal(t, 3, b.pending(t), "the paused organization's events stay pending")

	pauses, err := admin.Pauses(b.ctx)
	require.NoError(t, err)
	require.Len(t, pauses, 1)
	require.Equal(t, "tenant flooding", pauses[0].Reason)
	lanes, err := admin.Lanes(b.ctx, []string{"org-paused", "org-other", "org-none"})
	require.NoError(t, err)
	require.NotNil(t, lanes["org-paused"].Pause)
	require.Equal(t, "tenant flooding", lanes["org-paused"].Pause.Reason)
	require.NotContains(t, lanes, "org-none")
	if l, ok := lanes["org-other"]; ok {
		require.Nil(t, l.Pause)
	}

	was, err := admin.ResumeOrganization(b.ctx, "org-paused")
	require.NoError(t, err)
	require.True(t, was)
	b.waitMessages(t, 6, 10*time.Second)
	b.waitSettled(t, 10*time.Second)
	b.requireExactlyOnce(t, append(paused, other...))
	b.requireInOrder(t, paused)

	pauses, err = admin.Pauses(b.ctx)
	require.NoError(t, err)
	require.Empty(t, pauses)
	was, err = admin.ResumeOrganization(b.ctx, "org-paused")
	require.NoError(t, err)
	require.False(t, was, "resuming an organization not paused")
}

// Another relay, not told of the pause, honours it at its next sweep; a
// resume reaches it at its next sweep too.
func TestPauseIsHonouredByAnotherRelay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, signals := b.startWithSignals(t)
	admin, err := relay.NewAdmin(b.db.Pool, relay.AdminConfig{}) // a console, not the relay's own
	require.NoError(t, err)

	_, err = admin.PauseOrganization(b.ctx, relay.PauseParams{OrganizationID: "org-p", Reason: "customer asked to hold"})
	require.NoError(t, err)
	committed := b.appendCommitted(t, []string{"org-p"}, 2) // committed, never signalled: the sweep finds it
	sweeps(t, signals, 3)
	require.Zero(t, b.fake.MessageCount())

	was, err := admin.ResumeOrganization(b.ctx, "org-p")
	require.NoError(t, err)
	require.True(t, was)
	sweeps(t, signals, 1)
	b.waitMessages(t, 2, 10*time.Second)
	b.requireExactlyOnce(t, committed)
	b.requireInOrder(t, committed)
	require.Zero(t, r.Stats().DeadLettered)
}

// A pause with an end lifts itself: the lane is due at the end, and the
// events are created in Svix after it, in order.
func TestTimedPauseEndsByItself(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, _ := b.start(t) // the real clock: the pause ends on the database's
	until := b.dbNow(t).Add(300 * time.Millisecond)
	_, err := r.Admin().PauseOrganization(b.ctx, relay.PauseParams{OrganizationID: "org-t", Reason: "maintenance", Until: until})
	require.NoError(t, err)
	committed := b.appendCommitted(t, []string{"org-t"}, 3)
	require.NoError(t, r.SignalRelay(b.ctx, "org-t"))

	b.waitMessages(t, 3, 10*time.Second)
	for _, m := range b.fake.MessagesFor("org-t") {
		require.False(t, m.Timestamp.Before(until), "created at %s, before the pause's end %s", m.Timestamp, until)
	}
	b.requireExactlyOnce(t, committed)
	b.requireInOrder(t, committed)
}

func TestPauseRefusesBadParams(t *testing.T) {
	t.Parallel()
	b := setup(t)
	admin, err := relay.NewAdmin(b.db.Pool, relay.AdminConfig{})
	require.NoError(t, err)
	past := b.dbNow(t).Add(-time.Minute)

	for _, tc := range []struct {
		name  string
		p     relay.PauseParams
		field string
	}{
		{"no organization", relay.PauseParams{Reason: "r"}, "OrganizationID"},
		{"no reason", relay.PauseParams{OrganizationID: "org-v"}, "Reason"},
		{"blank reason", relay.PauseParams{OrganizationID: "org-v", Reason: " \t"}, "Reason"},
		{"long reason", relay.PauseParams{OrganizationID: "org-v", Reason: strings.Repeat("é", relay.MaxPauseReason+1)}, "Reason"},
		{"end in the past", relay.PauseParams{OrganizationID: "org-v", Reason: "r", Until: past}, "Until"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := admin.PauseOrganization(b.ctx, tc.p)
			require.ErrorIs(t, err, relay.ErrInvalidPause)
			require.Contains(t, err.Error(), tc.field)
		})
	}
	var lanes int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_lanes").Scan(&lanes))
	require.Zero(t, lanes, "a refused pause wrote a lane")

	_, err = admin.PauseOrganization(b.ctx, relay.PauseParams{OrganizationID: "org-v", Reason: strings.Repeat("é", relay.MaxPauseReason)})
	require.NoError(t, err, "a reason of exactly the limit")
}
