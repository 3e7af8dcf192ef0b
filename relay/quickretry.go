package relay

import (
	"context"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// Quick retries. A transient failure that came back fast (a 5xx, a reset
// connection) is retried within the turn, QuickRetries times, QuickRetryDelay
// apart and doubling, before the event falls back to the scheduled backoff:
// with one call in twenty failing at random, a lane that waited a backoff
// for each would spend most of its time waiting. The same eventId and
// Idempotency-Key go with every try, and a quick retry counts no attempt.
//
// Quick retries stop while Svix looks down rather than flaky: when more than
// a quarter of the last healthWindow calls failed (once there are
// healthMinCalls of them), a failure goes straight to the backoff schedule,
// so an outage is met with backoff, not a storm.

// healthWindow is how many recent calls the health signal remembers.
const healthWindow = 64

// health remembers whether the most recent Svix calls failed transiently.
type health struct {
	mu       sync.Mutex
	failed   [healthWindow]bool
	next, n  int
	failures int
}

// record adds one call's result.
func (h *health) record(failed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == healthWindow {
		if h.failed[h.next] {
			h.failures--
		}
	} else {
		h.n++
	}
	h.failed[h.next] = failed
	if failed {
		h.failures++
	}
	h.next = (h.next + 1) % healthWindow
}

// recordOutcome adds one call's outcome: a transient failure, or an
// answer; a call that was not made (unsent, auth) says nothing of Svix's
// health.
func (h *health) recordOutcome(o outcome) {
	switch o {
	case outcomeDelivered, outcomeDeadLetter:
		h.record(false)
	case outcomeRetry:
		h.record(true)
	}
}

// healthMinCalls is how many calls the signal needs before it may say
// "down": the first failures of a fresh relay are taken for isolated ones.
const healthMinCalls = 8

// flaky reports whether failures look isolated (at most a quarter of the
// window, or too few calls to tell), so a quick retry is worth it.
func (h *health) flaky() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n < healthMinCalls || h.failures*4 <= h.n
}

// sleepCtx waits d, or less if ctx ends first; it reports whether the wait
// was whole.
func sleepCtx(ctx context.Context, clock clockwork.Clock, d time.Duration) bool {
	t := clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.Chan():
		return true
	case <-ctx.Done():
		return false
	}
}
