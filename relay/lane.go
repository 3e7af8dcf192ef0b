package relay

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// turnReport says what one lane turn did.
type turnReport struct {
	leased      bool // the lease was ours; false when another holder has it or the lane is paused
	more        bool // the lane may have more due events right now
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
// after stopAt or once ctx ends, nor after a failure that must hold the
// lane (a retry with one event in flight, 429, 401/403); calls in flight
// run on under sendCtx.
func (r *Relay) turn(ctx, sendCtx context.Context, org string, stopAt time.Time) (turnReport, error) {
	if err := ctx.Err(); err != nil {
		return turnReport{}, err
	}
	pgToken := pgtype.UUID{Bytes: uuid.New(), Valid: true}
	claimedAt := time.Now()
	// The claim is not interrupted once sent: a claim the server committed
	// while the client gave up would hold the lane until its lease expired.
	claimCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.LeaseDuration/2)
	events, leased, err := r.claim(claimCtx, org, pgToken)
	cancel()
	if err != nil || !leased {
		return turnReport{leased: leased}, err
	}
	if leaseStop := claimedAt.Add(r.cfg.LeaseDuration / 2); stopAt.IsZero() || leaseStop.Before(stopAt) {
		stopAt = leaseStop
	}
	results, held := r.sendAll(ctx, sendCtx, org, events, stopAt)
	rep := turnReport{leased: true, more: !held && (len(events) == r.cfg.BatchSize || !lastSent(results))}
	if err := r.settle(org, pgToken, events, results, &rep); err != nil {
		return rep, err
	}
	r.stats.add(rep.counts)
	return rep, nil
}

// claim takes the lane's lease and claims its due head events.
func (r *Relay) claim(ctx context.Context, org string, token pgtype.UUID) ([]event, bool, error) {
	batch := &pgx.Batch{}
	batch.Queue(r.q.claimLane, org, token, r.cfg.LeaseDuration.Milliseconds(), r.cfg.ID)
	batch.Queue(r.q.claimEvents, org, r.cfg.BatchSize, token)
	br := r.pool.SendBatch(ctx, batch)
	defer br.Close()

	var got string
	if err := br.QueryRow().Scan(&got); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("relay: claim lane %s: %w", org, err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, true, fmt.Errorf("relay: claim events of %s: %w", org, err)
	}
	var (
		events []event
		ev     event
		id     pgtype.UUID
	)
	_, err = pgx.ForEachRow(rows, []any{&ev.id, &id, &ev.eventType, &ev.payload, &ev.attempts, &ev.createdAt}, func() error {
		ev.eventID = id.Bytes
		events = append(events, ev)
		ev.payload = nil // ForEachRow reuses the scan targets
		return nil
	})
	if err != nil {
		return nil, true, fmt.Errorf("relay: claim events of %s: %w", org, err)
	}
	if err := br.Close(); err != nil {
		return nil, true, fmt.Errorf("relay: claim lane %s: %w", org, err)
	}
	sortByID(events)
	return events, true, nil
}

func sortByID(events []event) {
	for i := 1; i < len(events); i++ { // RETURNING order is unspecified; batches are small
		for j := i; j > 0 && events[j].id < events[j-1].id; j-- {
			events[j], events[j-1] = events[j-1], events[j]
		}
	}
}

// sendAll resolves the organization's destination and sends its events,
// PerOrgInFlight at a time. Events it did not send are left outcomeUnsent.
// It reports whether a failure holds the lane (its head waits for a retry,
// a pause, or the resolver), so no other turn should follow at once.
func (r *Relay) sendAll(ctx, sendCtx context.Context, org string, events []event, stopAt time.Time) ([]result, bool) {
	results := make([]result, len(events))
	if len(events) == 0 {
		return results, false
	}
	dest, err := r.cfg.Resolver.Resolve(ctx, org)
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

	var (
		mu   sync.Mutex
		halt bool // a failure holds the lane: start nothing more
		next int
		wg   sync.WaitGroup
	)
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if halt || next == len(events) {
			return 0, false
		}
		if time.Now().After(stopAt) || r.authPaused() || ctx.Err() != nil {
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
			res := r.sendWithSlot(sendCtx, dest, &events[i])
			results[i] = res
			if holdsLane(res.outcome, r.cfg.PerOrgInFlight) {
				mu.Lock()
				halt = true
				mu.Unlock()
			}
		}
	}
	for range min(r.cfg.PerOrgInFlight, len(events)) {
		wg.Add(1)
		go worker()
	}
	wg.Wait()
	return results, halt
}

// lastSent reports whether the turn got to its last event.
func lastSent(results []result) bool {
	return len(results) == 0 || results[len(results)-1].outcome != outcomeUnsent
}

// holdsLane reports whether an outcome stops the rest of the turn: a
// rate limit or a bad token always, a transient failure when events must
// stay in order (one in flight).
func holdsLane(o outcome, perOrgInFlight int) bool {
	switch o {
	case outcomeRateLimited, outcomeAuth, outcomeUnsent:
		return true
	case outcomeRetry:
		return perOrgInFlight == 1
	}
	return false
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
	res := r.send(ctx, dest, ev)
	if res.outcome == outcomeAuth {
		r.pauseForAuth(res)
	}
	return res
}

// settle records every outcome and releases (or pauses) the lane in one
// round trip, retrying briefly if the database is unreachable. It runs
// even while the relay shuts down. Every statement checks the lease token.
func (r *Relay) settle(org string, token pgtype.UUID, events []event, results []result, rep *turnReport) error {
	s := r.settlement(org, token, events, results, rep)
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.LeaseDuration/2)
	defer cancel()
	var err error
	for attempt, wait := 0, 50*time.Millisecond; attempt < 4; attempt, wait = attempt+1, wait*4 {
		if err = r.pool.SendBatch(ctx, s).Close(); err == nil {
			return nil
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(wait)
	}
	return fmt.Errorf("relay: settle lane %s (its lease will expire and the events be sent again, deduplicated by eventId): %w", org, err)
}

// settlement builds the settling batch and tallies the outcomes into rep.
func (r *Relay) settlement(org string, token pgtype.UUID, events []event, results []result, rep *turnReport) *pgx.Batch {
	var (
		doneIDs, retryIDs, deadIDs, unsentIDs []int64
		doneMsgs, retryErrs, deadErrs, bodies []string
		retryDelays                           []int64
		statuses                              []int32
		pause                                 time.Duration
	)
	bury := func(ev *event, res result) {
		deadIDs, deadErrs = append(deadIDs, ev.id), append(deadErrs, res.err)
		statuses, bodies = append(statuses, int32(res.status)), append(bodies, res.body)
		rep.counts.DeadLettered++
	}
	for i := range events {
		ev, res := &events[i], results[i]
		switch res.outcome {
		case outcomeDelivered, outcomeSkipped:
			doneIDs, doneMsgs = append(doneIDs, ev.id), append(doneMsgs, res.messageID)
			if res.outcome == outcomeDelivered {
				rep.counts.Delivered++
			} else {
				rep.counts.Skipped++
			}
		case outcomeRetry:
			if ev.attempts >= r.cfg.MaxAttempts {
				res.err = fmt.Sprintf("gave up after %d attempts: %s", ev.attempts, res.err)
				bury(ev, res)
				continue
			}
			retryIDs, retryErrs = append(retryIDs, ev.id), append(retryErrs, res.err)
			retryDelays = append(retryDelays, r.backoff(ev.attempts).Milliseconds())
			rep.counts.Retried++
		case outcomeDead:
			bury(ev, res)
		case outcomeRateLimited:
			rep.rateLimited = true
			pause = max(pause, res.retryAfter, r.cfg.RateLimitPause)
			unsentIDs = append(unsentIDs, ev.id)
		case outcomeAuth:
			rep.authFailed = true
			unsentIDs = append(unsentIDs, ev.id)
		default:
			unsentIDs = append(unsentIDs, ev.id)
			rep.counts.Unsent++
		}
	}
	b := &pgx.Batch{}
	if len(doneIDs) > 0 {
		if r.cfg.DeliveredRetention < 0 {
			b.Queue(r.q.deliverNoHistory, doneIDs, org, token)
		} else {
			b.Queue(r.q.deliver, doneIDs, org, token, doneMsgs)
		}
	}
	if len(retryIDs) > 0 {
		b.Queue(r.q.retry, retryIDs, org, token, retryDelays, retryErrs)
	}
	if len(deadIDs) > 0 {
		b.Queue(r.q.bury, deadIDs, org, token, deadErrs, statuses, bodies)
	}
	if len(unsentIDs) > 0 {
		b.Queue(r.q.unsend, unsentIDs, org, token)
	}
	if pause > 0 {
		b.Queue(r.q.pauseLane, org, token, pause.Milliseconds())
	} else {
		b.Queue(r.q.releaseLane, org, token)
	}
	if rep.rateLimited {
		r.stats.rateLimited.Add(1)
	}
	return b
}

// backoff is the delay before the retry that follows attempt n: full
// jitter over an exponential ceiling, RetryBaseDelay·2^(n-1) capped at
// RetryMaxDelay.
func (r *Relay) backoff(attempt int) time.Duration {
	ceiling := r.cfg.RetryMaxDelay
	if attempt >= 1 && attempt < 40 {
		if d := r.cfg.RetryBaseDelay << (attempt - 1); d > 0 && d < ceiling {
			ceiling = d
		}
	}
	return time.Duration(rand.Int64N(int64(ceiling)) + 1)
}
