package relay

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
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
	if r.authPaused() {
		return turnReport{authFailed: true}, nil // nothing can be sent until the pause ends
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
	// No call may outlive the lease: whatever is still in flight at three
	// quarters of it is cut off and settled as unsent, leaving the last
	// quarter for the settlement.
	sendCtx, cancel = context.WithDeadline(sendCtx, claimedAt.Add(r.cfg.LeaseDuration*3/4))
	results, held := r.sendAll(ctx, sendCtx, org, events, stopAt)
	cancel()
	rep := turnReport{leased: true, more: !held && (len(events) == r.cfg.BatchSize || !lastSent(results))}
	if err := r.settle(org, pgToken, events, results, &rep); err != nil {
		return rep, err
	}
	r.stats.add(rep.counts)
	if rep.rateLimited {
		r.stats.rateLimited.Add(1)
	}
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
	dest, err := r.cfg.Resolver.Resolve(sendCtx, org)
	if ctx.Err() != nil || sendCtx.Err() != nil {
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
	plan := r.planSettlement(events, results, rep)
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.LeaseDuration/4)
	defer cancel()
	var err error
	for attempt, wait := 0, 50*time.Millisecond; attempt < 4; attempt, wait = attempt+1, wait*4 {
		// A fresh batch each try: pgx caches statement descriptions on the
		// batch, which a new connection (after a reconnect) does not have.
		if err = r.pool.SendBatch(ctx, plan.batch(r, org, token)).Close(); err == nil {
			return nil
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(wait)
	}
	return fmt.Errorf("relay: settle lane %s (its lease will expire and the events be sent again, deduplicated by eventId): %w", org, err)
}

// settlementPlan is what a turn's settlement writes.
type settlementPlan struct {
	doneIDs, retryIDs, deadIDs, unsentIDs []int64
	doneMsgs, retryErrs, deadErrs, bodies []string
	retryDelays                           []int64
	statuses                              []int32
	pause                                 time.Duration
}

// planSettlement sorts the outcomes into a plan and tallies them into rep.
func (r *Relay) planSettlement(events []event, results []result, rep *turnReport) *settlementPlan {
	p := &settlementPlan{}
	bury := func(ev *event, res result) {
		p.deadIDs, p.deadErrs = append(p.deadIDs, ev.id), append(p.deadErrs, cleanText(res.err, maxErrorText))
		p.statuses, p.bodies = append(p.statuses, int32(res.status)), append(p.bodies, cleanText(res.body, maxBodyText))
		rep.counts.DeadLettered++
	}
	for i := range events {
		ev, res := &events[i], results[i]
		switch res.outcome {
		case outcomeDelivered, outcomeSkipped:
			p.doneIDs, p.doneMsgs = append(p.doneIDs, ev.id), append(p.doneMsgs, cleanText(res.messageID, maxErrorText))
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
			p.retryIDs, p.retryErrs = append(p.retryIDs, ev.id), append(p.retryErrs, cleanText(res.err, maxErrorText))
			p.retryDelays = append(p.retryDelays, r.backoff(ev.attempts).Milliseconds())
			rep.counts.Retried++
		case outcomeDead:
			bury(ev, res)
		case outcomeRateLimited:
			rep.rateLimited = true
			p.pause = max(p.pause, min(res.retryAfter, maxRetryAfter), r.cfg.RateLimitPause)
			p.unsentIDs = append(p.unsentIDs, ev.id)
		case outcomeAuth:
			rep.authFailed = true
			p.unsentIDs = append(p.unsentIDs, ev.id)
		default:
			p.unsentIDs = append(p.unsentIDs, ev.id)
			rep.counts.Unsent++
		}
	}
	return p
}

// batch builds the settling statements.
func (p *settlementPlan) batch(r *Relay, org string, token pgtype.UUID) *pgx.Batch {
	b := &pgx.Batch{}
	if len(p.doneIDs) > 0 {
		if r.cfg.DeliveredRetention < 0 {
			b.Queue(r.q.deliverNoHistory, p.doneIDs, org, token)
		} else {
			b.Queue(r.q.deliver, p.doneIDs, org, token, p.doneMsgs)
		}
	}
	if len(p.retryIDs) > 0 {
		b.Queue(r.q.retry, p.retryIDs, org, token, p.retryDelays, p.retryErrs)
	}
	if len(p.deadIDs) > 0 {
		b.Queue(r.q.bury, p.deadIDs, org, token, p.deadErrs, p.statuses, p.bodies)
	}
	if len(p.unsentIDs) > 0 {
		b.Queue(r.q.unsend, p.unsentIDs, org, token)
	}
	if p.pause > 0 {
		b.Queue(r.q.pauseLane, org, token, p.pause.Milliseconds())
	} else {
		b.Queue(r.q.releaseLane, org, token)
	}
	return b
}

// maxRetryAfter caps how long a 429's Retry-After may pause a lane, so a
// wild value cannot hold an organization back for days.
const maxRetryAfter = 10 * time.Minute

const (
	// maxErrorText and maxBodyText bound what is stored of an error and of
	// Svix's response body.
	maxErrorText = 2048
	maxBodyText  = 8192
)

// cleanText makes s storable in a text column whatever Svix or a proxy
// answered: valid UTF-8, no NUL (PostgreSQL refuses both, which would fail
// the settlement every time), at most n bytes.
func cleanText(s string, n int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "")
	}
	return s
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
