package relay

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
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

// sendRetrying sends ev, and retries a fast transient failure quickly while
// Svix looks flaky rather than down.
func (r *Relay) sendRetrying(ctx context.Context, dest Destination, ev *pendingEvent) result {
	res := r.sendRecorded(ctx, dest, ev)
	delay := r.cfg.QuickRetryDelay
	for try := 1; try <= r.cfg.QuickRetries && res.fastRetry && r.health.flaky(); try++ {
		if !sleepCtx(ctx, delay/2+rand.N(delay/2+1)) || !r.alive() {
			return res
		}
		if r.limiter != nil && r.limiter.Wait(ctx) != nil {
			return res
		}
		r.stats.quickRetries.Add(1)
		res = r.sendRecorded(ctx, dest, ev)
		delay *= 2
	}
	return res
}

// sendRecorded sends ev and records the call in the health signal.
func (r *Relay) sendRecorded(ctx context.Context, dest Destination, ev *pendingEvent) result {
	res := r.send(ctx, dest, ev)
	switch res.outcome {
	case outcomeDelivered, outcomeDeadLetter:
		r.health.record(false)
	case outcomeRetry:
		r.health.record(true)
	}
	return res
}

// sleepCtx waits d, or less if ctx ends first; it reports whether the wait
// was whole.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
