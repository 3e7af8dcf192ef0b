package relay_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

// requireInOrder checks each organization's messages were created in the
// order of its events.
func (b *bundle) requireInOrder(t *testing.T, committed []outbox.AppendResult) {
	t.Helper()
	want := map[string][]string{}
	for _, c := range committed {
		want[c.OrganizationID] = append(want[c.OrganizationID], c.EventID.String())
	}
	for org, ids := range want {
		var got []string
		for _, m := range b.fake.MessagesFor(org) {
			got = append(got, m.EventID)
		}
		require.Equal(t, ids, got, "creation order of %s", org)
	}
}

// Isolated 503s are retried within the turn, in order, instead of each
// holding its lane for a backoff.
func TestIsolatedFailuresAreRetriedQuicklyInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.RetryBaseDelay = time.Minute // a scheduled retry would stall the test
	b.cfg.RetryMaxDelay = time.Minute
	committed := b.appendCommitted(t, []string{"org-q1", "org-q2", "org-q3"}, 30)
	// Every tenth event's first create answers 503: isolated failures.
	flaky := map[string]bool{}
	for i, c := range committed {
		if i%10 == 3 {
			flaky[c.EventID.String()] = true
		}
	}
	var mu sync.Mutex
	b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultStatus, Status: 503, Match: func(r *svixtest.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if r.Method != http.MethodPost || !flaky[r.EventID] {
			return false
		}
		delete(flaky, r.EventID) // once
		return true
	}})

	r, _ := b.start(t)
	b.waitMessages(t, len(committed), 20*time.Second)
	b.waitSettled(t, 10*time.Second)
	b.requireExactlyOnce(t, committed)
	b.requireInOrder(t, committed)
	st := r.Stats()
	require.EqualValues(t, len(committed)/10, st.QuickRetries, "each 503 was retried in the turn")
	require.Zero(t, st.Retried, "no event waited for its backoff")
}

// countCreates counts the message creations the fake received.
func countCreates(fake *svixtest.Server) int {
	n := 0
	for _, r := range fake.Requests() {
		if r.Method == http.MethodPost && r.App != "" {
			n++
		}
	}
	return n
}

// An outage is met with backoff, not a storm: once most recent calls
// failed, a failure goes straight to the backoff schedule, and an event
// that keeps failing still becomes a dead letter after MaxAttempts.
func TestOutageIsBackedOffNotStormed(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, quickRetries int) (creates int, st relay.Stats) {
		b := setup(t)
		b.cfg.QuickRetries = quickRetries
		b.cfg.MaxAttempts = 4
		b.cfg.RetryBaseDelay, b.cfg.RetryMaxDelay = 50*time.Millisecond, 100*time.Millisecond
		b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultStatus, Status: 503})
		var orgs []string
		for i := range 16 {
			orgs = append(orgs, fmt.Sprintf("org-down-%d", i))
		}
		committed := b.appendCommitted(t, orgs, 2)
		r, _ := b.start(t)
		// Every event goes through its attempts and ends dead-lettered.
		waitStats(t, func(st relay.Stats) bool { return st.DeadLettered == uint64(len(committed)) }, r)
		return countCreates(b.fake), r.Stats()
	}
	without, _ := run(t, -1)
	with, st := run(t, relay.DefaultQuickRetries)
	t.Logf("creates during the outage: %d with quick retries, %d without; %d quick retries", with, without, st.QuickRetries)
	require.LessOrEqual(t, with, 2*without, "quick retries must not turn an outage into a storm")
	require.LessOrEqual(t, st.QuickRetries, uint64(40), "quick retries stop once the health window shows the outage")
}
