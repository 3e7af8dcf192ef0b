package relay_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

// Many small organizations are claimed many per round trip: one claim
// statement for dozens of lanes, not a turn's round trips each.
func TestManyOrganizationsPerClaim(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var orgs []string
	for i := range 300 {
		orgs = append(orgs, fmt.Sprintf("org-many-%03d", i))
	}
	committed := b.appendCommitted(t, orgs, 1)
	r, _ := b.start(t)
	b.waitMessages(t, len(committed), 20*time.Second)
	b.waitSettled(t, 10*time.Second)
	b.requireExactlyOnce(t, committed)
	// A turn is counted after its settlement commits, which waitSettled saw.
	waitStats(t, func(st relay.Stats) bool { return st.Turns >= uint64(len(orgs)) }, r)
	st := r.Stats()
	require.EqualValues(t, len(orgs), st.Turns, "one turn per organization; stats %+v; logs:\n%s", st, b.logs.String())
	require.Less(t, st.Claims, uint64(len(orgs)/4), "claims carry many lanes each (%d claims for %d lanes)", st.Claims, st.Turns)
}

// A lane whose head waits for its retry costs no database work per
// signal until it is due.
func TestSignalsForAWaitingLaneCostNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.QuickRetries = -1
	b.cfg.RetryBaseDelay, b.cfg.RetryMaxDelay = time.Hour, time.Hour
	b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultStatus, Status: 503, Times: 1})
	b.appendCommitted(t, []string{"org-wait"}, 2)
	r, _ := b.start(t)
	waitStats(t, func(st relay.Stats) bool { return st.Retried == 1 }, r)
	require.Eventually(t, func() bool { return b.pending(t) == 2 }, 5*time.Second, 10*time.Millisecond)
	claims := r.Stats().Claims
	for range 200 {
		require.NoError(t, r.SignalRelay(b.ctx, "org-wait"))
	}
	b.appendCommitted(t, []string{"org-other"}, 1) // something real to do meanwhile
	b.waitMessages(t, 1, 10*time.Second)
	require.LessOrEqual(t, r.Stats().Claims-claims, uint64(2), "200 signals for a waiting lane claimed it %d times", r.Stats().Claims-claims)
	require.Empty(t, b.fake.MessagesFor("org-wait"))
}
