package relay

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrInvalidBudget is returned by DrainOrganization for a budget that is not
// positive.
var ErrInvalidBudget = errors.New("drain budget not positive")

// MaxCountedRemaining is the most DrainResult.Remaining counts.
const MaxCountedRemaining = 10_000

// DrainResult reports one DrainOrganization call.
type DrainResult struct {
	// Delivered, Skipped, Retried, DeadLettered and Unsent count outcomes.
	Delivered, Skipped, Retried, DeadLettered, Unsent int
	// Busy is true when another holder had the lane (or it was paused
	// after a 429) and nothing was done.
	Busy bool
	// RateLimited is true when Svix answered 429 and the lane is paused.
	RateLimited bool
	// AuthFailed is true when Svix refused the token.
	AuthFailed bool
	// Fenced is true when this relay's heartbeats are failing (Run is
	// running but its last heartbeat is older than 3/4 of
	// LivenessTimeout): it starts no Svix call, so the drain stops at once
	// and NextTurnAt is the next heartbeat.
	Fenced bool
	// Remaining is the number of events the organization still has
	// pending, counted up to MaxCountedRemaining: a drain's cost never
	// follows the backlog.
	Remaining int
	// NextAttemptAt is when the organization's head (oldest) event is due
	// (zero when none remain); the events behind it wait for it. It may be
	// in the past: due now.
	NextAttemptAt time.Time
	// NextTurnAt is when the next DrainOrganization can deliver something
	// (zero when nothing remains; in the past when that is now): the lane's
	// due time, since the events behind a head that waits for a retry wait
	// with it, or later while the lane is held (a 429 pause, another
	// holder's turn) or delivery is paused for a bad token. A workflow that
	// drives the lane sleeps until then.
	NextTurnAt time.Time
}

// maxClaimAgain bounds how many times in a row DrainOrganization claims
// again an organization a claim found with events and no lane.
const maxClaimAgain = 3

// DrainOrganization works one organization's lane for up to budget: turn
// after turn (claim, deliver, settle, release) while due events remain, then
// reports what remains. It is the unit a workflow engine drives, one
// workflow per organization; it does not need Run. ctx bounds the calls
// in flight; settlements run to completion.
//
// At most Concurrency drains work at once per Relay, as Run works at most
// Concurrency lanes: a drain beyond them waits for one to end (or for ctx),
// so a worker that runs more activities at once holds no more leases and
// payloads than Run would. A relay that is fenced (Fenced) stops at once.
func (r *Relay) DrainOrganization(ctx context.Context, organizationID string, budget time.Duration) (DrainResult, error) {
	var res DrainResult
	if budget <= 0 {
		return res, fmt.Errorf("relay: drain organization: %w (got %s)", ErrInvalidBudget, budget)
	}
	select {
	case r.drainSlots <- struct{}{}:
		defer func() { <-r.drainSlots }()
	case <-ctx.Done():
		return res, fmt.Errorf("relay: drain organization %s: waiting for a lane slot: %w", organizationID, ctx.Err())
	}
	stopAt := r.clock.Now().Add(budget)
	var held time.Time // the lane is held until then
	agains := 0
	for r.clock.Now().Before(stopAt) && ctx.Err() == nil {
		rep, err := r.turn(ctx, organizationID, stopAt)
		if err != nil {
			return res, err
		}
		res.add(rep.counts)
		if rep.fenced {
			res.Fenced = true
			held = r.clock.Now().Add(r.cfg.HeartbeatInterval)
			break
		}
		if !rep.leased && rep.more && agains < maxClaimAgain {
			// Events and no lane: deleted, or a first event committed, in
			// the instant the claim read the lanes. Claim again, a few
			// times at most: each needs a new race to happen again.
			agains++
			continue
		}
		if !rep.leased {
			res.AuthFailed = rep.authFailed
			res.Busy = !rep.authFailed && !rep.empty
			held = rep.waitUntil
			break
		}
		res.RateLimited = res.RateLimited || rep.rateLimited
		res.AuthFailed = res.AuthFailed || rep.authFailed
		if !rep.more || rep.rateLimited || rep.authFailed {
			break
		}
	}
	r.pruneIfIdle(ctx)
	var next, laneDue *time.Time
	qctx, cancel := context.WithTimeout(ctx, backgroundTimeout)
	defer cancel()
	if err := r.pool.QueryRow(qctx, r.q.remaining, organizationID, MaxCountedRemaining).Scan(&res.Remaining, &next, &laneDue); err != nil {
		return res, fmt.Errorf("relay: count remaining events of %s: %w", organizationID, err)
	}
	if next != nil {
		res.NextAttemptAt = *next
	}
	if res.Remaining > 0 {
		res.NextTurnAt = latest(res.NextAttemptAt, deref0(laneDue), held, time.Unix(0, r.authPausedUntil.Load()))
	}
	return res, nil
}

// latest returns the latest of ts.
func latest(ts ...time.Time) time.Time {
	var l time.Time
	for _, t := range ts {
		if t.After(l) {
			l = t
		}
	}
	return l
}

func (d *DrainResult) add(c counts) {
	d.Delivered += c.Delivered
	d.Skipped += c.Skipped
	d.Retried += c.Retried
	d.DeadLettered += c.DeadLettered
	d.Unsent += c.Unsent
}
