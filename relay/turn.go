package relay

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxrelay/outbox/internal/telemetry"
)

// turnReport says what one lane turn did.
type turnReport struct {
	// leased: the turn took the lease. False when another holder has it, the
	// lane is paused, or delivery is paused for a bad token.
	leased bool
	// empty: the organization has no events (nothing was leased).
	empty bool
	// more: the lane may have more due events right now.
	more bool
	// fenced: this relay's heartbeats are failing; it claimed nothing.
	fenced bool
	// gaveUp: the lane was claimed ahead of the turn slots and given back
	// unsent after waiting for one; it does not count as a turn.
	gaveUp      bool
	rateLimited bool
	authFailed  bool
	counts      counts
	// waitUntil: not leased, the lane is held (another holder, a pause)
	// until about then.
	waitUntil time.Time
}

// counts tallies outcomes.
type counts struct {
	Delivered, Skipped, Retried, DeadLettered, Unsent int
}

// work sends a claimed lane's events: it sends them in order,
// PerOrgInFlight at a time, and notes what the turn did. It starts no new
// call after stopAt (at most half the lease after the claim) or once ctx
// ends, nor after a failure that blocks the lane (a retry with one event in
// flight, 429, 401/403). Calls already in flight run on under callCtx,
// which outlives ctx during a graceful shutdown, but never past three
// quarters of the lease: whatever is still in flight then is cut off and
// settled as unsent, leaving the last quarter for the settlement.
func (r *Relay) work(ctx, callCtx context.Context, ln *lane, stopAt time.Time) {
	// A panic here is a bug of ours; it must cost one lane (its events are
	// settled as unsent and retried), never the process.
	defer func() {
		if v := recover(); v != nil {
			r.log.ErrorContext(ctx, "relay: lane turn panicked; its events go back unsent",
				"organization_id", ln.org, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			ln.results, ln.blocked = make([]result, len(ln.events)), true
			ln.rep = turnReport{leased: true}
		}
	}()
	if ln.page != nil && ln.page.lost.Load() {
		// Its page's session is gone, and the page will be rolled back:
		// whatever it sent would be sent again. All unsent.
		ln.results, ln.blocked = make([]result, len(ln.events)), true
		ln.rep = turnReport{leased: true}
		return
	}
	if leaseStop := ln.claimedAt.Add(r.cfg.LeaseDuration / 2); stopAt.IsZero() || leaseStop.Before(stopAt) {
		stopAt = leaseStop
	}
	callCtx, cancel := context.WithDeadline(callCtx, ln.claimedAt.Add(r.cfg.LeaseDuration*3/4))
	ln.results, ln.blocked = r.sendAll(ctx, callCtx, ln.org, ln.events, stopAt)
	cancel()
	ln.rep = turnReport{leased: true, more: !ln.blocked && (len(ln.events) == r.cfg.BatchSize || ln.cutByBytes || !lastSent(ln.results))}
}

// turn works one organization's lane once, outside Run (DrainOrganization):
// claim it, send its events, settle them.
func (r *Relay) turn(ctx context.Context, org string, stopAt time.Time) (turnReport, error) {
	if err := ctx.Err(); err != nil {
		return turnReport{}, err
	}
	if r.authPaused() {
		return turnReport{authFailed: true}, nil // nothing can be sent until the pause ends
	}
	if !r.alive() {
		return turnReport{fenced: true}, nil // no call may start until a heartbeat gets through
	}
	// The claim is not interrupted once sent: a claim the server committed
	// while the client gave up would hold the lane until its lease expired.
	claimCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.LeaseDuration/2)
	rd, err := r.claim(claimCtx, []string{org})
	cancel()
	if err != nil {
		return turnReport{}, err
	}
	if len(rd.lanes) == 0 {
		return turnReport{empty: len(rd.empty) > 0, more: len(rd.again) > 0, waitUntil: rd.waiting[org]}, nil
	}
	ln := rd.lanes[0]
	ctx, span := r.startTurn(ctx, ln)
	r.work(ctx, ctx, ln, stopAt)
	_, err = r.settle([]*lane{ln})
	endTurn(span, ln, err)
	return ln.rep, err
}

// startTurn opens a lane turn's span.
func (r *Relay) startTurn(ctx context.Context, ln *lane) (context.Context, trace.Span) {
	ctx, span := r.tel.startSpan(ctx, "turn outbox_lanes", telemetry.OrganizationID.String(ln.org), telemetry.Events.Int(len(ln.events)))
	ln.turn = span.SpanContext()
	return ctx, span
}

// endTurn records what the turn did on its span.
func endTurn(span trace.Span, ln *lane, err error) {
	c := ln.rep.counts
	span.SetAttributes(attribute.Int("outbox.delivered", c.Delivered), attribute.Int("outbox.retried", c.Retried),
		attribute.Int("outbox.dead_lettered", c.DeadLettered), attribute.Int("outbox.unsent", c.Unsent),
		attribute.Bool("outbox.rate_limited", ln.rep.rateLimited))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// sendAll resolves the organization's destination and sends its events,
// PerOrgInFlight at a time (on the calling goroutine when that is one, or
// there is one event). Events it did not send are left outcomeUnsent.
// It reports whether a failure blocks the lane (its head waits for a retry,
// a pause, or the resolver), so no other turn should follow at once.
func (r *Relay) sendAll(ctx, callCtx context.Context, org string, events []pendingEvent, stopAt time.Time) (results []result, blocked bool) {
	results = make([]result, len(events))
	if len(events) == 0 {
		return results, false
	}
	if !r.mayStart(ctx, stopAt) {
		return results, true // fenced, paused or out of time: no call, nor a resolve for none
	}
	dest, err := r.resolve(callCtx, org)
	if ctx.Err() != nil || callCtx.Err() != nil {
		return results, true // shutting down or out of lease: all unsent, no attempt counted
	}
	if err != nil {
		results[0] = result{outcome: outcomeRetry, err: "resolve destination: " + err.Error()}
		return results, true
	}
	if dest.Skip {
		for i := range results {
			results[i] = result{outcome: outcomeSkipped}
		}
		return results, false
	}
	if rule := dest.rule(); rule != "" {
		// Rows written before the producer refused such ids, or a Resolver's
		// answer: never put them in a URL. No retry can fix them.
		for i := range results {
			results[i] = result{outcome: outcomeDeadLetter, err: "destination " + rule}
		}
		return results, false
	}

	turn := trace.SpanContextFromContext(ctx)
	if min(r.cfg.PerOrgInFlight, len(events)) == 1 {
		// One call at a time (the default, and every page's single event):
		// the events in order on this goroutine.
		for i := range events {
			if !r.mayStart(ctx, stopAt) {
				break
			}
			results[i] = r.deliver(callCtx, turn, org, dest, &events[i])
			if blocksLane(results[i].outcome, r.cfg.PerOrgInFlight) {
				return results, true
			}
		}
		return results, false
	}
	var (
		mu   sync.Mutex
		next int
		wg   sync.WaitGroup
	)
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if blocked || next == len(events) || !r.mayStart(ctx, stopAt) {
			return 0, false
		}
		next++
		return next - 1, true
	}
	worker := func() {
		defer wg.Done()
		for {
			i, ok := take()
			if !ok {
				return
			}
			res := r.deliver(callCtx, turn, org, dest, &events[i])
			results[i] = res
			if blocksLane(res.outcome, r.cfg.PerOrgInFlight) {
				mu.Lock()
				blocked = true
				mu.Unlock()
			}
		}
	}
	// One worker runs on this goroutine (a runner's, whose stack has grown
	// for the Svix call already), the others on goroutines of their own.
	for range min(r.cfg.PerOrgInFlight, len(events)) - 1 {
		wg.Add(1)
		go worker()
	}
	wg.Add(1)
	worker()
	wg.Wait()
	return results, blocked
}

// mayStart reports whether a turn may start another call: not past stopAt,
// delivery not paused for a bad token, heartbeats getting through, and ctx
// not ended.
func (r *Relay) mayStart(ctx context.Context, stopAt time.Time) bool {
	return !r.clock.Now().After(stopAt) && !r.authPaused() && r.alive() && ctx.Err() == nil
}

// lastSent reports whether the turn got to its last event.
func lastSent(results []result) bool {
	return len(results) == 0 || results[len(results)-1].outcome != outcomeUnsent
}

// blocksLane reports whether an outcome stops the rest of the turn: a
// rate limit or a bad token always, a transient failure when events must
// stay in order (one in flight).
func blocksLane(o outcome, perOrgInFlight int) bool {
	switch o {
	case outcomeRateLimited, outcomeAuth, outcomeUnsent:
		return true
	case outcomeRetry:
		return perOrgInFlight == 1
	}
	return false
}

// resolve asks the Resolver, turning a panic into an error: one
// organization's bad resolver must not take the process (and, restart
// after restart, the fleet) down.
func (r *Relay) resolve(ctx context.Context, org string) (dest Destination, err error) {
	defer func() {
		if v := recover(); v != nil {
			r.log.ErrorContext(ctx, "relay: Resolver panicked; the lane is held with backoff", "organization_id", org, "panic", fmt.Sprint(v))
			err = fmt.Errorf("resolver panicked: %v", v)
		}
	}()
	return r.cfg.Resolver.Resolve(ctx, org)
}

// deliver sends one event under its delivery span, the one place that
// holds a send slot, waits for the rate limiter and retries quickly: a fast
// transient failure is sent again (up to QuickRetries times, the delay
// doubling from QuickRetryDelay) while Svix looks flaky rather than down. A
// refused token pauses all delivery. A panic becomes a transient failure of
// the event: the lane is held with backoff and the process, with every
// other lane, goes on.
func (r *Relay) deliver(ctx context.Context, turn trace.SpanContext, org string, dest Destination, ev *pendingEvent) (res result) {
	ctx, span := r.tel.startDelivery(ctx, turn, org, ev)
	defer func() {
		if v := recover(); v != nil {
			r.log.ErrorContext(ctx, "relay: panic while sending; the event is retried with backoff",
				"organization_id", org, "event_id", ev.eventID.String(), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			res = result{outcome: outcomeRetry, err: fmt.Sprintf("panic: %v", v)}
		}
		res.at = r.clock.Now()
		endDelivery(span, res, res.outcome == outcomeRetry && ev.attempts >= r.cfg.MaxAttempts)
	}()
	select {
	case r.sendSlots <- struct{}{}:
	case <-ctx.Done():
		return result{outcome: outcomeUnsent}
	}
	defer func() { <-r.sendSlots }()
	if r.limiter != nil && r.limiter.Wait(ctx) != nil {
		return result{outcome: outcomeUnsent}
	}
	res = r.send(ctx, dest, ev)
	delay := r.cfg.QuickRetryDelay
	for try := 1; try <= r.cfg.QuickRetries && res.fastRetry && r.health.flaky(); try++ {
		if !sleepCtx(ctx, r.clock, delay/2+rand.N(delay/2+1)) || !r.alive() {
			break
		}
		if r.limiter != nil && r.limiter.Wait(ctx) != nil {
			break
		}
		r.stats.quickRetries.Add(1)
		res = r.send(ctx, dest, ev)
		delay *= 2
	}
	if res.outcome == outcomeAuth {
		r.pauseForAuth(res)
	}
	return res
}
