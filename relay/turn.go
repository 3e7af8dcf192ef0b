package relay

import (
	"cmp"
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// turnReport says what one lane turn did.
type turnReport struct {
	// leased: the turn took the lease. False when another holder has it, the
	// lane is paused, or delivery is paused for a bad token.
	leased bool
	// empty: the organization has no events (nothing was leased).
	empty bool
	// more: the lane may have more due events right now.
	more        bool
	rateLimited bool
	authFailed  bool
	counts      counts
}

// counts tallies outcomes.
type counts struct {
	Delivered, Skipped, Retried, DeadLettered, Unsent int
}

// turn works one organization's lane once: take the lease and claim up to
// BatchSize due events (one round trip), send them, then settle every
// outcome and give the lease back (one round trip). It starts no new call
// after stopAt or once ctx ends, nor after a failure that blocks the lane
// (a retry with one event in flight, 429, 401/403). Calls already in flight
// run on under callCtx, which outlives ctx during a graceful shutdown.
func (r *Relay) turn(ctx, callCtx context.Context, org string, stopAt time.Time) (rep turnReport, err error) {
	// A panic here is a bug of ours; it must cost one lane (its lease
	// expires and another turn retries it), never the process.
	defer func() {
		if v := recover(); v != nil {
			r.log.ErrorContext(ctx, "relay: lane turn panicked; the lane waits for its lease to expire",
				"organization_id", org, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			err = fmt.Errorf("relay: lane turn of %s panicked: %v", org, v)
		}
	}()
	if err := ctx.Err(); err != nil {
		return turnReport{}, err
	}
	if r.authPaused() {
		return turnReport{authFailed: true}, nil // nothing can be sent until the pause ends
	}
	pgToken := pgtype.UUID{Bytes: uuid.New(), Valid: true}
	claimedAt := time.Now()
	// The claim is not interrupted once sent: a claim the server committed
	// while the client gave up would hold the lane until its lease expired.
	select {
	case r.claimSlots <- struct{}{}:
	case <-ctx.Done():
		return turnReport{}, ctx.Err()
	}
	claimCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.LeaseDuration/2)
	c, err := r.claim(claimCtx, org, pgToken)
	cancel()
	<-r.claimSlots
	if err != nil || !c.leased {
		return turnReport{leased: c.leased, empty: c.empty}, err
	}
	events := c.events
	if leaseStop := claimedAt.Add(r.cfg.LeaseDuration / 2); stopAt.IsZero() || leaseStop.Before(stopAt) {
		stopAt = leaseStop
	}
	// No call may outlive the lease: whatever is still in flight at three
	// quarters of it is cut off and settled as unsent, leaving the last
	// quarter for the settlement.
	callCtx, cancel = context.WithDeadline(callCtx, claimedAt.Add(r.cfg.LeaseDuration*3/4))
	results, blocked := r.sendAll(ctx, callCtx, org, events, stopAt)
	cancel()
	rep = turnReport{leased: true, more: !blocked && (len(events) == r.cfg.BatchSize || c.cutByBytes || !lastSent(results))}
	if err := r.settle(org, pgToken, events, results, &rep); err != nil {
		return rep, err
	}
	r.stats.add(rep.counts)
	if rep.rateLimited {
		r.stats.rateLimited.Add(1)
	}
	return rep, nil
}

// claimed is what a claim got.
type claimed struct {
	events []event
	// leased: the lease is ours (else events is empty).
	leased bool
	// empty: the organization has no events at all (and no lease was taken).
	empty bool
	// cutByBytes: more events were due but BatchMaxBytes stopped the claim.
	cutByBytes bool
}

// claim takes the lane's lease and claims its due head events.
func (r *Relay) claim(ctx context.Context, org string, token pgtype.UUID) (claimed, error) {
	batch := &pgx.Batch{}
	batch.Queue(r.q.claimLane, org, token, r.cfg.LeaseDuration.Milliseconds(), r.cfg.ID, r.holder())
	batch.Queue(r.q.claimEvents, org, r.cfg.BatchSize, token, r.cfg.BatchMaxBytes)
	br := r.pool.SendBatch(ctx, batch)
	defer func() { _ = br.Close() }() // closed and checked below on success

	var leased, hasEvents bool
	if err := br.QueryRow().Scan(&leased, &hasEvents); err != nil {
		return claimed{}, fmt.Errorf("relay: claim lane %s: %w", org, err)
	}
	if !leased {
		return claimed{empty: !hasEvents}, nil
	}
	c := claimed{leased: true}
	rows, err := br.Query()
	if err != nil {
		return c, fmt.Errorf("relay: claim events of %s: %w", org, err)
	}
	var (
		ev event
		id pgtype.UUID
	)
	_, err = pgx.ForEachRow(rows, []any{&ev.id, &id, &ev.eventType, &ev.payload, &ev.attempts, &ev.createdAt, &c.cutByBytes}, func() error {
		ev.eventID = id.Bytes
		c.events = append(c.events, ev)
		ev.payload = nil // ForEachRow reuses the scan targets
		return nil
	})
	if err != nil {
		return c, fmt.Errorf("relay: claim events of %s: %w", org, err)
	}
	if err := br.Close(); err != nil {
		return c, fmt.Errorf("relay: claim lane %s: %w", org, err)
	}
	// UPDATE ... RETURNING gives no order.
	slices.SortFunc(c.events, func(a, b event) int { return cmp.Compare(a.id, b.id) })
	return c, nil
}

// sendAll resolves the organization's destination and sends its events,
// PerOrgInFlight at a time. Events it did not send are left outcomeUnsent.
// It reports whether a failure blocks the lane (its head waits for a retry,
// a pause, or the resolver), so no other turn should follow at once.
func (r *Relay) sendAll(ctx, callCtx context.Context, org string, events []event, stopAt time.Time) (results []result, blocked bool) {
	results = make([]result, len(events))
	if len(events) == 0 {
		return results, false
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

	var (
		mu   sync.Mutex
		next int
		wg   sync.WaitGroup
	)
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if blocked || next == len(events) {
			return 0, false
		}
		if time.Now().After(stopAt) || r.authPaused() || !r.alive() || ctx.Err() != nil {
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
			res := r.sendRecovered(callCtx, org, dest, &events[i])
			results[i] = res
			if blocksLane(res.outcome, r.cfg.PerOrgInFlight) {
				mu.Lock()
				blocked = true
				mu.Unlock()
			}
		}
	}
	for range min(r.cfg.PerOrgInFlight, len(events)) {
		wg.Add(1)
		go worker()
	}
	wg.Wait()
	return results, blocked
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

// sendRecovered is sendWithSlot with a panic turned into a transient
// failure of the event: the lane is held with backoff and the process, with
// every other lane, goes on.
func (r *Relay) sendRecovered(ctx context.Context, org string, dest Destination, ev *event) (res result) {
	defer func() {
		if v := recover(); v != nil {
			r.log.ErrorContext(ctx, "relay: panic while sending; the event is retried with backoff",
				"organization_id", org, "event_id", ev.eventID.String(), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			res = result{outcome: outcomeRetry, err: fmt.Sprintf("panic: %v", v)}
		}
	}()
	return r.sendWithSlot(ctx, dest, ev)
}

// sendWithSlot waits for a global send slot and the rate limiter, then
// sends.
func (r *Relay) sendWithSlot(ctx context.Context, dest Destination, ev *event) result {
	select {
	case r.sendSlots <- struct{}{}:
	case <-ctx.Done():
		return result{outcome: outcomeUnsent}
	}
	defer func() { <-r.sendSlots }()
	if r.limiter != nil {
		if err := r.limiter.Wait(ctx); err != nil {
			return result{outcome: outcomeUnsent}
		}
	}
	res := r.sendRetrying(ctx, dest, ev)
	if res.outcome == outcomeAuth {
		r.pauseForAuth(res)
	}
	return res
}
