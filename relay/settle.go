package relay

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxrelay/outbox/internal/telemetry"
)

// settle records every outcome of the given lanes' turns and releases (or
// pauses) each lane, in one round trip for all of them, retrying briefly if
// the database is unreachable. It runs even while the relay shuts down.
// Every statement checks each lane's lease token: a lane whose lease was
// taken over settles nothing. It returns, per released lane, when the lane
// is next due (zero: nothing left).
func (r *Relay) settle(lanes []*lane) (due map[string]time.Time, err error) {
	var plan batchPlan
	links := make([]trace.Link, 0, min(len(lanes), maxSettleLinks))
	for _, ln := range lanes {
		plan.add(ln, r.planSettlement(ln.events, ln.results, &ln.rep))
		if len(links) < cap(links) {
			links = append(links, trace.Link{SpanContext: ln.turn})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.LeaseDuration/4)
	defer cancel()
	ctx, span := r.tel.tracer.Start(ctx, "settle outbox_lanes", trace.WithLinks(links...),
		trace.WithAttributes(telemetry.Organizations.Int(len(lanes))))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	err = retry(ctx, r.clock, settleTries, 50*time.Millisecond, func(ctx context.Context) error {
		// A fresh batch each try: pgx caches statement descriptions on the
		// batch, which a new connection (after a reconnect) does not have.
		var err error
		due, err = r.sendSettlement(ctx, r.pool, plan.batch(r, &r.q.settleLanes), 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("relay: settle %d lane(s) (their leases will expire and the events be sent again, deduplicated by eventId): %w", len(lanes), err)
	}
	r.countSettled(ctx, lanes, due)
	return due, nil
}

// countSettled counts the settled lanes' outcomes in the stats and the
// metrics: only what was recorded, the lanes due names. A lane whose lease
// another relay took wrote nothing (every statement is token-fenced), and
// its events will be counted by the relay that settles them.
func (r *Relay) countSettled(ctx context.Context, lanes []*lane, due map[string]time.Time) {
	for _, ln := range lanes {
		if _, held := due[ln.org]; !held {
			continue
		}
		if !ln.rep.gaveUp { // given back unsent: not a turn
			r.stats.add(ln.rep.counts)
		}
		if ln.rep.rateLimited {
			r.stats.rateLimited.Add(1)
		}
		r.tel.recordSettled(ctx, ln, r.cfg.MaxAttempts)
	}
}

// batchSender sends a batch: the pool, or a page's connection.
type batchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// sendSettlement sends the settling statements, on db, and reads what the
// release returned; the release is followed by trailing statements (a
// page's COMMIT).
func (r *Relay) sendSettlement(ctx context.Context, db batchSender, b *pgx.Batch, trailing int) (map[string]time.Time, error) {
	br := db.SendBatch(ctx, b)
	defer func() { _ = br.Close() }()
	for range b.Len() - 1 - trailing {
		if _, err := br.Exec(); err != nil {
			return nil, err
		}
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	due := map[string]time.Time{}
	var (
		org string
		at  *time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&org, &at}, func() error {
		due[org] = time.Time{}
		if at != nil {
			due[org] = *at
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for range trailing {
		if _, err := br.Exec(); err != nil {
			return nil, err
		}
	}
	return due, br.Close()
}

// batchPlan gathers the settlements of many lanes into arrays, one
// statement per kind of outcome.
type batchPlan struct {
	done, retry, dead   rows
	doneMsgs            []string
	retryDelays         []int64
	retryErrs, deadErrs []string
	deadStatuses        []int32
	deadBodies          []string
	release             rows
	pauses              []int64
}

// rows are (id, organization, token) triples, as arrays.
type rows struct {
	ids    []int64
	orgs   []string
	tokens []pgtype.UUID
}

func (rs *rows) add(id int64, ln *lane) {
	rs.ids = append(rs.ids, id)
	rs.orgs = append(rs.orgs, ln.org)
	rs.tokens = append(rs.tokens, ln.token)
}

// add merges one lane's plan.
func (b *batchPlan) add(ln *lane, p *settlementPlan) {
	for i, id := range p.doneIDs {
		b.done.add(id, ln)
		b.doneMsgs = append(b.doneMsgs, p.doneMsgs[i])
	}
	for i, id := range p.retryIDs {
		b.retry.add(id, ln)
		b.retryDelays, b.retryErrs = append(b.retryDelays, p.retryDelays[i]), append(b.retryErrs, p.retryErrs[i])
	}
	for i, id := range p.deadLetterIDs {
		b.dead.add(id, ln)
		b.deadErrs = append(b.deadErrs, p.deadLetterErrs[i])
		b.deadStatuses, b.deadBodies = append(b.deadStatuses, p.statuses[i]), append(b.deadBodies, p.bodies[i])
	}
	b.release.add(0, ln)
	b.pauses = append(b.pauses, p.pause.Milliseconds())
}

// batch builds the settling statements, with q's checks (a lane's or a
// page's); the release comes last, so it sees what the others left of each
// lane.
func (b *batchPlan) batch(r *Relay, q *settleQueries) *pgx.Batch {
	pb := &pgx.Batch{}
	pb.Queue(sqlWriteSettings)
	if len(b.done.ids) > 0 {
		if r.cfg.DeliveredRetention < 0 {
			pb.Queue(q.deliverNoHistory, b.done.ids, b.done.orgs, b.done.tokens)
		} else {
			pb.Queue(q.deliver, b.done.ids, b.done.orgs, b.done.tokens, b.doneMsgs)
		}
	}
	if len(b.retry.ids) > 0 {
		pb.Queue(q.retry, b.retry.ids, b.retry.orgs, b.retry.tokens, b.retryDelays, b.retryErrs)
	}
	if len(b.dead.ids) > 0 {
		pb.Queue(q.deadLetter, b.dead.ids, b.dead.orgs, b.dead.tokens, b.deadErrs, b.deadStatuses, b.deadBodies)
	}
	pb.Queue(q.release, b.release.orgs, b.release.tokens, b.pauses)
	return pb
}

// maxSettleLinks bounds the turn spans a settlement's span links to.
const maxSettleLinks = 128

// settleTries is how many times a settlement is sent before the turn gives
// up on it (50 ms, 200 ms and 800 ms apart).
const settleTries = 4

// settlementPlan is what a turn's settlement writes. An event claimed but
// not sent (a 429, a refused token, a turn cut short) is in none of its
// lists: the claim wrote nothing to it, and it is claimed again as it is.
type settlementPlan struct {
	doneIDs, retryIDs, deadLetterIDs            []int64
	doneMsgs, retryErrs, deadLetterErrs, bodies []string
	retryDelays                                 []int64
	statuses                                    []int32
	pause                                       time.Duration
}

// planSettlement sorts the outcomes into a plan and tallies them into rep.
func (r *Relay) planSettlement(events []pendingEvent, results []result, rep *turnReport) *settlementPlan {
	p := &settlementPlan{}
	deadLetter := func(ev *pendingEvent, res result) {
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
		case outcomeAuth:
			rep.authFailed = true
		default:
			rep.counts.Unsent++
		}
	}
	return p
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

const (
	// maxSettleBatch bounds the lanes one settlement round trip covers.
	maxSettleBatch = 256
	// settlersInFlight is how many settlements may be on their way at once.
	settlersInFlight = 1
)

// settleRequest is a lane done sending, waiting for its settlement.
type settleRequest struct {
	ln   *lane
	done chan settled
}

// settled is what became of a lane's settlement: an error, or the time the
// lane is next due (zero: now or nothing left).
type settled struct {
	due time.Time
	err error
}

// settleLoop settles lanes as they finish, settlersInFlight round trips
// at a time, each taking every lane that finished while the others were on
// their way, until reqs is closed.
func (r *Relay) settleLoop(reqs <-chan *settleRequest) {
	var wg sync.WaitGroup
	for range settlersInFlight {
		wg.Add(1)
		go func() { defer wg.Done(); r.settleWorker(reqs) }()
	}
	wg.Wait()
}

func (r *Relay) settleWorker(reqs <-chan *settleRequest) {
	for req := range reqs {
		batch := []*settleRequest{req}
	gather:
		for len(batch) < maxSettleBatch {
			select {
			case next, ok := <-reqs:
				if !ok {
					break gather
				}
				batch = append(batch, next)
			default:
				break gather
			}
		}
		lanes := make([]*lane, len(batch))
		for i, q := range batch {
			lanes[i] = q.ln
		}
		due, err := r.settle(lanes)
		for _, q := range batch {
			q.done <- settled{due: due[q.ln.org], err: err}
		}
	}
}
