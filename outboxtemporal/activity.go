package outboxtemporal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jonboulle/clockwork"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/relay"
)

// Drainer works one organization's lane for a time budget: *relay.Relay is
// one. Its DrainOrganization must be safe to run again after a crash, a
// timeout or a duplicate (the relay's leases and Svix eventIds make it so).
type Drainer interface {
	DrainOrganization(ctx context.Context, organizationID string, budget time.Duration) (relay.DrainResult, error)
}

var _ Drainer = (*relay.Relay)(nil)

// DrainResult is the drain activity's result, as the workflow's history
// records it.
type DrainResult struct {
	// Delivered, Skipped, Retried, DeadLettered and Unsent count what the
	// drain did with the events it claimed.
	Delivered    int `json:"delivered"`
	Skipped      int `json:"skipped"`
	Retried      int `json:"retried"`
	DeadLettered int `json:"deadLettered"`
	Unsent       int `json:"unsent"`
	// Busy: another holder had the lane, or it was paused after a 429.
	Busy bool `json:"busy"`
	// RateLimited: Svix answered 429 and the lane is paused.
	RateLimited bool `json:"rateLimited"`
	// AuthFailed: Svix refused the API token; delivery is paused.
	AuthFailed bool `json:"authFailed"`
	// Remaining is how many events the organization still has pending.
	Remaining int `json:"remaining"`
	// NextTurnAt is when the next drain can deliver something (zero when
	// nothing remains).
	NextTurnAt time.Time `json:"nextTurnAt"`
}

// progressed reports whether the drain settled any event.
func (r DrainResult) progressed() bool {
	return r.Delivered+r.Skipped+r.Retried+r.DeadLettered > 0
}

// held reports whether the lane is held for a time no signal can shorten: a
// 429 pause, another holder's turn, a refused token.
func (r DrainResult) held() bool { return r.Busy || r.RateLimited || r.AuthFailed }

// activities holds the drain activity's dependencies.
type activities struct {
	drainer Drainer
	clock   clockwork.Clock // the heartbeat ticker's: real, or a test's fake
}

// drain is the drain activity: one DrainOrganization call, heartbeating
// while it works. It fails only when the database is out of reach (the
// retry policy waits for it) or on input no retry can fix
// (ErrorTypeInvalidInput).
func (a *activities) drain(ctx context.Context, in DrainInput) (DrainResult, error) {
	if err := outbox.ValidateOrganizationID(in.OrganizationID); err != nil {
		return DrainResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrorTypeInvalidInput, err)
	}
	budget := time.Duration(in.BudgetMillis) * time.Millisecond
	stop := heartbeat(ctx, a.clock, activity.GetInfo(ctx).HeartbeatTimeout, func() { activity.RecordHeartbeat(ctx) })
	res, err := a.drainer.DrainOrganization(ctx, in.OrganizationID, budget)
	stop()
	if errors.Is(err, relay.ErrInvalidBudget) {
		return DrainResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrorTypeInvalidInput, err)
	}
	if err != nil {
		return DrainResult{}, fmt.Errorf("outboxtemporal: drain %s: %w", in.OrganizationID, err)
	}
	return DrainResult{
		Delivered: res.Delivered, Skipped: res.Skipped, Retried: res.Retried, DeadLettered: res.DeadLettered,
		Unsent: res.Unsent, Busy: res.Busy, RateLimited: res.RateLimited, AuthFailed: res.AuthFailed,
		Remaining: res.Remaining, NextTurnAt: res.NextTurnAt.UTC(),
	}, nil
}

// heartbeat calls record every third of the activity's heartbeat timeout
// on clock, until stop is called or ctx ends, so Temporal knows the drain
// is alive (and retries it elsewhere soon after its worker dies). No
// timeout: no heartbeat.
func heartbeat(ctx context.Context, clock clockwork.Clock, timeout time.Duration, record func()) (stop func()) {
	if timeout <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	t := clock.NewTicker(timeout / 3)
	go func() {
		defer close(finished)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.Chan():
				record()
			}
		}
	}()
	return func() { close(done); <-finished }
}
