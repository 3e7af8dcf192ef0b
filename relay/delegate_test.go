package relay_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/relay"
)

// handOffs records the organizations a Delegate was given.
type handOffs struct {
	mu     sync.Mutex
	orgs   map[string]int
	calls  int
	fail   bool
	called chan struct{} // a receive per call
}

func newHandOffs() *handOffs {
	return &handOffs{orgs: map[string]int{}, called: make(chan struct{}, 1000)}
}

func (h *handOffs) SignalRelays(_ context.Context, orgs []string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	defer func() { h.called <- struct{}{} }()
	if h.fail {
		return context.DeadlineExceeded
	}
	for _, org := range orgs {
		h.orgs[org]++
	}
	return nil
}

func (h *handOffs) SignalRelay(ctx context.Context, org string) error {
	return h.SignalRelays(ctx, []string{org})
}

func (h *handOffs) has(org string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.orgs[org] > 0
}

// waitCall waits for the next call.
func (h *handOffs) waitCall(t *testing.T) {
	t.Helper()
	select {
	case <-h.called:
	case <-time.After(30 * time.Second):
		t.Fatal("the delegate was not called")
	}
}

// wait waits until every org has been handed over.
func (h *handOffs) wait(t *testing.T, orgs ...string) {
	t.Helper()
	for {
		all := true
		for _, org := range orgs {
			all = all && h.has(org)
		}
		if all {
			return
		}
		h.waitCall(t)
	}
}

func (h *handOffs) setFail(fail bool) {
	h.mu.Lock()
	h.fail = fail
	h.mu.Unlock()
}

// startDelegating runs a relay that hands its lanes to d, on a fake clock,
// with its test signals armed.
func (b *bundle) startDelegating(t *testing.T, d *handOffs) (*relay.Relay, *clockwork.FakeClock, *relay.TestSignals) {
	t.Helper()
	b.cfg.Delegate = d
	clock := clockwork.NewFakeClockAt(time.Now())
	relay.SetClock(&b.cfg, clock)
	r := b.newRelay(t)
	signals := relay.InitTestSignals(r)
	b.run(t, r)
	signals.Swept.Wait(t) // the first sweep, at start
	return r, clock, signals
}

func TestDelegateIsHandedTheLanesInsteadOfWorkingThem(t *testing.T) {
	t.Parallel()
	b := setup(t)
	d := newHandOffs()
	notify, err := outbox.NewNotifySignaler(b.db.Pool, b.cfg.Channel)
	require.NoError(t, err)

	b.appendCommitted(t, []string{"org-lost"}, 2) // committed, never signalled
	r, clock, signals := b.startDelegating(t, d)
	d.wait(t, "org-lost") // the sweep hands over an organization nobody signalled

	b.appendWithSignal(t, notify, "org-notified")
	require.NoError(t, r.SignalRelay(b.ctx, "org-in-process"))
	d.wait(t, "org-notified", "org-in-process") // NOTIFY and SignalRelay are handed over too

	for range 3 { // three sweeps later, still nothing sent
		signals.Swept.Drain()
		clock.Advance(b.cfg.PollInterval)
		signals.Swept.Wait(t)
	}
	require.Zero(t, b.fake.MessageCount(), "a delegating relay sends nothing itself")
	require.Equal(t, 3, b.pending(t), "its lanes are left to the delegate")
	require.Zero(t, r.Stats().Turns)
	require.GreaterOrEqual(t, r.Stats().HandedOff, uint64(3))
}

func TestFailedHandOffIsFoundAgainBySweep(t *testing.T) {
	t.Parallel()
	b := setup(t)
	d := newHandOffs()
	d.setFail(true)
	r, clock, signals := b.startDelegating(t, d)
	b.appendCommitted(t, []string{"org-retry"}, 1)
	require.NoError(t, r.SignalRelay(b.ctx, "org-retry"))
	d.waitCall(t)
	require.Eventually(t, func() bool { return strings.Contains(b.logs.String(), "hand-off to the delegate failed") }, 30*time.Second, 10*time.Millisecond,
		"the failure is logged")
	require.Positive(t, r.Stats().HandOffFailures)
	require.False(t, d.has("org-retry"))

	d.setFail(false)
	// The new-events step reads back over the last sweeps, and the full
	// sweep every 30 s finds what they missed: 30 s of the relay's clock.
	signals.Swept.Drain()
	clock.Advance(30 * time.Second)
	signals.Swept.Wait(t)
	d.wait(t, "org-retry") // an organization whose hand-off failed comes back
}
