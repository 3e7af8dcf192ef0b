package relay

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// settle records every outcome and releases (or pauses) the lane in one
// round trip, retrying briefly if the database is unreachable. It runs
// even while the relay shuts down. Every statement checks the lease token.
func (r *Relay) settle(org string, token pgtype.UUID, events []event, results []result, rep *turnReport) error {
	plan := r.planSettlement(events, results, rep)
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.LeaseDuration/4)
	defer cancel()
	err := retry(ctx, settleTries, 50*time.Millisecond, func(ctx context.Context) error {
		// A fresh batch each try: pgx caches statement descriptions on the
		// batch, which a new connection (after a reconnect) does not have.
		return r.pool.SendBatch(ctx, plan.batch(r, org, token)).Close()
	})
	if err == nil {
		return nil
	}
	return fmt.Errorf("relay: settle lane %s (its lease will expire and the events be sent again, deduplicated by eventId): %w", org, err)
}

// settleTries is how many times a settlement is sent before the turn gives
// up on it (50 ms, 200 ms and 800 ms apart).
const settleTries = 4

// settlementPlan is what a turn's settlement writes.
type settlementPlan struct {
	doneIDs, retryIDs, deadLetterIDs, unsentIDs []int64
	doneMsgs, retryErrs, deadLetterErrs, bodies []string
	retryDelays                                 []int64
	statuses                                    []int32
	pause                                       time.Duration
}

// planSettlement sorts the outcomes into a plan and tallies them into rep.
func (r *Relay) planSettlement(events []event, results []result, rep *turnReport) *settlementPlan {
	p := &settlementPlan{}
	deadLetter := func(ev *event, res result) {
		p.deadLetterIDs, p.deadLetterErrs = append(p.deadLetterIDs, ev.id), append(p.deadLetterErrs, cleanText(res.err, maxErrorText))
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
				deadLetter(ev, res)
				continue
			}
			p.retryIDs, p.retryErrs = append(p.retryIDs, ev.id), append(p.retryErrs, cleanText(res.err, maxErrorText))
			p.retryDelays = append(p.retryDelays, r.backoff(ev.attempts).Milliseconds())
			rep.counts.Retried++
		case outcomeDeadLetter:
			deadLetter(ev, res)
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
	if len(p.deadLetterIDs) > 0 {
		b.Queue(r.q.deadLetter, p.deadLetterIDs, org, token, p.deadLetterErrs, p.statuses, p.bodies)
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
