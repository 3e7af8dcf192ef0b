package relay_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
)

// handOffs records the organizations a Delegate was given.
type handOffs struct {
	mu    sync.Mutex
	orgs  map[string]int
	calls int
	fail  bool
}

func (h *handOffs) SignalRelays(_ context.Context, orgs []string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
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

func (h *handOffs) setFail(fail bool) {
	h.mu.Lock()
	h.fail = fail
	h.mu.Unlock()
}

func TestDelegateIsHandedTheLanesInsteadOfWorkingThem(t *testing.T) {
	t.Parallel()
	b := setup(t)
	d := &handOffs{orgs: map[string]int{}}
	b.cfg.Delegate = d
	notify, err := outbox.NewNotifySignaler(b.db.Pool, b.cfg.Channel)
	require.NoError(t, err)

	b.appendCommitted(t, []string{"org-lost"}, 2) // committed, never signalled
	r, _ := b.start(t)
	require.Eventually(t, func() bool { return d.has("org-lost") }, 5*time.Second, 10*time.Millisecond,
		"the sweep hands over an organization nobody signalled")

	b.appendWithSignal(t, notify, "org-notified")
	require.NoError(t, r.SignalRelay(b.ctx, "org-in-process"))
	require.Eventually(t, func() bool { return d.has("org-notified") && d.has("org-in-process") }, 5*time.Second, 10*time.Millisecond,
		"NOTIFY and SignalRelay are handed over too")

	time.Sleep(3 * b.cfg.PollInterval)
	require.Zero(t, b.fake.MessageCount(), "a delegating relay sends nothing itself")
	require.Equal(t, 3, b.pending(t), "its lanes are left to the delegate")
	require.Zero(t, r.Stats().Turns)
	require.GreaterOrEqual(t, r.Stats().HandedOff, uint64(3))
}

func TestFailedHandOffIsFoundAgainBySweep(t *testing.T) {
	t.Parallel()
	b := setup(t)
	d := &handOffs{orgs: map[string]int{}, fail: true}
	b.cfg.Delegate = d
	r, _ := b.start(t)
	b.appendCommitted(t, []string{"org-retry"}, 1)
	require.NoError(t, r.SignalRelay(b.ctx, "org-retry"))
	require.Eventually(t, func() bool { return r.Stats().HandOffFailures > 0 }, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return strings.Contains(b.logs.String(), "hand-off to the delegate failed") }, 5*time.Second, 10*time.Millisecond,
		"the failure is logged (after it is counted)")

	d.setFail(false)
	// The new-events step reads back over the last sweeps, the full sweep
	// every 30 s finds what they missed.
	require.Eventually(t, func() bool { return d.has("org-retry") }, 40*time.Second, 50*time.Millisecond,
		"an organization whose hand-off failed must come back")
}
