package relay

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// Svix health, as each relay reports it with its heartbeat
// (outbox_relays.svix_health, read by Admin.Relays): counts of what Svix
// answered over the last svixHealthSpan, by class, and the last failure's
// class. Never a body, a payload or a token.

// svixHealthBucket is the span of one bucket of counts; svixHealthBuckets
// of them make the window a report covers.
const (
	svixHealthBucket  = time.Minute
	svixHealthBuckets = 5
	svixHealthSpan    = svixHealthBucket * svixHealthBuckets
)

// svixCounts are one bucket's counts.
type svixCounts struct {
	minute                                   int64 // the bucket's start, in minutes since the epoch
	calls, ok, errors, limited, unauthorized int64
}

// svixHealthRecorder counts the relay's Svix calls by class, per minute,
// over the last five minutes. It is safe for concurrent use.
type svixHealthRecorder struct {
	clock clockwork.Clock

	mu          sync.Mutex
	buckets     [svixHealthBuckets]svixCounts
	lastError   string
	lastErrorAt time.Time
}

func newSvixHealthRecorder(clock clockwork.Clock) *svixHealthRecorder {
	return &svixHealthRecorder{clock: clock}
}

// record counts one call's result; a call not made (unsent, interrupted
// by the relay's shutdown) and an organization without webhooks say
// nothing of Svix.
func (h *svixHealthRecorder) record(res result) {
	if res.outcome == outcomeUnsent || res.outcome == outcomeSkipped {
		return
	}
	now := h.clock.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.bucket(now)
	b.calls++
	switch res.outcome {
	case outcomeDelivered:
		b.ok++
		return
	case outcomeRateLimited:
		b.limited++
	case outcomeAuth:
		b.unauthorized++
	default:
		b.errors++
	}
	h.lastError, h.lastErrorAt = failureClass(res), now
}

// bucket returns the bucket of the minute now is in, emptied if it last
// held an older minute. h.mu must be held.
func (h *svixHealthRecorder) bucket(now time.Time) *svixCounts {
	minute := now.Unix() / int64(svixHealthBucket/time.Second)
	b := &h.buckets[minute%svixHealthBuckets]
	if b.minute != minute {
		*b = svixCounts{minute: minute}
	}
	return b
}

// failureClass names a failure by its status, or "timeout" or "network"
// when Svix did not answer.
func failureClass(res result) string {
	switch {
	case res.status != 0:
		return strconv.Itoa(res.status)
	case res.timedOut:
		return "timeout"
	default:
		return "network"
	}
}

// report returns the last five minutes' counts, as JSON for the heartbeat.
func (h *svixHealthRecorder) report() []byte {
	now := h.clock.Now()
	minute := now.Unix() / int64(svixHealthBucket/time.Second)
	h.mu.Lock()
	s := SvixHealth{WindowSeconds: int(svixHealthSpan / time.Second), LastError: h.lastError}
	for _, b := range h.buckets {
		if b.minute > minute-svixHealthBuckets && b.minute <= minute {
			s.Calls += b.calls
			s.OK += b.ok
			s.Errors += b.errors
			s.RateLimited += b.limited
			s.Unauthorized += b.unauthorized
		}
	}
	if !h.lastErrorAt.IsZero() {
		at := h.lastErrorAt.UTC()
		s.LastErrorAt = &at
	}
	h.mu.Unlock()
	out, _ := json.Marshal(s) // a struct of numbers and strings always marshals
	return out
}

// isTimeout reports whether err is a call's deadline passing.
func isTimeout(err error) bool {
	var nerr net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &nerr) && nerr.Timeout()
}
