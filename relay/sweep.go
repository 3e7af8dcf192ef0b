package relay

import (
	"cmp"
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jonboulle/clockwork"

	"github.com/outboxrelay/outbox/internal/testsignal"
)

const (
	// sweepLimit bounds how many organizations one sweep step queues.
	sweepLimit = 10000
	// backgroundTimeout bounds every query the relay runs on its own (the
	// sweep, pruning, counts): a half-open connection must not hold one of
	// them for the minutes TCP takes to notice.
	backgroundTimeout = 5 * time.Second
	// fullSweepEvery is how often the sweep also looks for pending events
	// no lane knows of among all of them (an index skip through every
	// pending organization), besides the new ones: for a transaction that
	// committed late, with a low id, and whose signal was lost. The first
	// sweep, and the first after LISTEN reconnects, do it too.
	fullSweepEvery = 30 * time.Second
	// sweepTrail is how many sweeps back the incremental step reads from:
	// ids of transactions that committed within that many poll intervals of
	// their insert are found even when higher ids committed first.
	sweepTrail = 3
	// newEventsPage bounds the events one incremental step reads: after a
	// bulk append the step works through it a page per sweep.
	newEventsPage = 50_000
)

// sweeper is the maintenance service that finds work no signal announced:
// every PollInterval it queues the lanes due now, the organizations of
// new events, and (every fullSweepEvery) those of any pending event no
// lane knows of. It needs the pool, the queries, a clock, a logger and the
// relay's queueing callbacks, nothing of the lanes themselves.
type sweeper struct {
	pool  *pgxpool.Pool
	q     queries
	clock clockwork.Clock
	log   *slog.Logger
	every time.Duration // Config.PollInterval
	// enqueue queues organizations for a turn unless known to wait;
	// enqueueDue queues them whatever they waited for; forgetPastWaits
	// drops the relay's waits whose time has come.
	enqueue, enqueueDue func(orgs ...string)
	forgetPastWaits     func()
	// swept is signalled after each sweep (tests).
	swept *testsignal.Signal[struct{}]
	// last is when a sweep last reached the database, in unix nanoseconds.
	last atomic.Int64
	// full asks the next sweep to look at every pending organization. An
	// atomic, not guarded by mu: a heartbeat that finds a dead relay asks
	// for it, and must not wait for a sweep in progress.
	full atomic.Bool

	mu sync.Mutex // one sweep at a time; guards what follows

	// trail holds the highest id seen by the last sweepTrail sweeps,
	// oldest first; the next sweep reads ids above trail[0].
	trail    []int64
	lastFull time.Time
	// fullFrom is where a full sweep that filled its page goes on: the
	// next sweep reads the organizations after it.
	fullFrom string
	// page is how many new events one step reads (newEventsPage; tests
	// make it smaller).
	page int
	// fullPage bounds the organizations of a full sweep's page (sweepLimit;
	// tests make it smaller).
	fullPage int
}

// newSweeper returns the sweeper of relay r, configured by r.cfg.
func newSweeper(r *Relay) *sweeper {
	return &sweeper{pool: r.pool, q: r.q, clock: r.clock, log: r.log, every: r.cfg.PollInterval,
		enqueue: r.enqueue, enqueueDue: r.enqueueDue, forgetPastWaits: r.forgetPastWaits, swept: &r.testSignals.Swept}
}

// Run sweeps at start (a full sweep) and every s.every until ctx ends.
func (s *sweeper) Run(ctx context.Context) {
	poll := s.clock.NewTicker(s.every)
	defer poll.Stop()
	s.requestFull()
	s.sweep(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.Chan():
			s.sweep(ctx)
		}
	}
}

// requestFullSweep makes the next sweep look at every pending organization
// (notifications sent while LISTEN was down are lost).
func (s *sweeper) requestFull() { s.full.Store(true) }

// sweep queues the lanes that need a turn and nobody signalled: lanes whose
// due time has come (retries, pauses that ended, a dead holder's lanes,
// leftovers), organizations with new events, and, every fullSweepEvery,
// every organization with pending events no lane knows of. Its cost follows
// what it returns and what was appended since the last sweeps (a page at a
// time), never the backlog: a million events waiting in one organization
// are one row of the lane index.
//
// The three steps are read-only transactions of their own, each with its
// own timeout, so that one that fails or takes long (a bulk append behind
// the new events) never keeps the others, due retries first, from being
// found. A sweep counts as done (Ready) when its due-lanes step reached the
// database.
func (s *sweeper) sweep(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.swept.Signal(struct{}{})
	s.forgetPastWaits()
	var due, found, more []string
	if s.step(ctx, "due lanes", func(ctx context.Context, tx pgx.Tx) (err error) {
		due, err = collectOrgs(ctx, tx, s.q.dueLanes, sweepLimit)
		return err
	}) {
		s.enqueueDue(shuffled(due)...)
		s.last.Store(s.clock.Now().UnixNano())
	}
	if s.step(ctx, "new events", func(ctx context.Context, tx pgx.Tx) (err error) {
		found, err = s.sweepNew(ctx, tx)
		return err
	}) {
		s.enqueue(shuffled(found)...)
	}
	if full := s.full.Swap(false); full || s.fullFrom != "" || s.clock.Since(s.lastFull) >= fullSweepEvery {
		if s.step(ctx, "undiscovered organizations", func(ctx context.Context, tx pgx.Tx) (err error) {
			more, err = s.sweepUndiscovered(ctx, tx)
			return err
		}) {
			s.enqueue(shuffled(more)...)
		} else if full {
			s.requestFull() // asked for, and not done: the next sweep tries again
		}
	}
}

// sweepStep runs one step of the sweep in a read-only transaction bounded
// by backgroundTimeout, and reports whether it succeeded (a failure is
// logged).
func (s *sweeper) step(ctx context.Context, what string, step func(context.Context, pgx.Tx) error) bool {
	qctx, cancel := context.WithTimeout(ctx, backgroundTimeout)
	defer cancel()
	err := pgx.BeginTxFunc(qctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(qctx, sqlReadSettings); err != nil {
			return err
		}
		return step(qctx, tx)
	})
	if err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "relay: sweep failed", "step", what, "error", err)
	}
	return err == nil
}

// sweepNew returns the undiscovered organizations with events appended
// since the last sweeps.
func (s *sweeper) sweepNew(ctx context.Context, tx pgx.Tx) ([]string, error) {
	sw := s
	if len(sw.trail) == 0 {
		// Start at the end: what is already pending is the full sweep's.
		var top int64
		if err := tx.QueryRow(ctx, s.q.maxEventID).Scan(&top); err != nil {
			return nil, err
		}
		sw.trail = []int64{top}
		return nil, nil
	}
	page := cmp.Or(sw.page, newEventsPage)
	rows, err := tx.Query(ctx, s.q.newEvents, sw.trail[0], page)
	if err != nil {
		return nil, err
	}
	var (
		orgs []string
		org  *string
		high int64
		n    int
	)
	_, err = pgx.ForEachRow(rows, []any{&org, &high, &n}, func() error {
		if org != nil {
			orgs = append(orgs, *org)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n == page {
		// A full page (a bulk append): go on from its end next sweep. The
		// trail, for late commits, starts again there; the full sweep
		// finds what committed late inside the bulk.
		sw.trail = []int64{high}
		return orgs, nil
	}
	sw.trail = append(sw.trail, maxOf(sw.trail[len(sw.trail)-1], high))
	if len(sw.trail) > sweepTrail {
		sw.trail = sw.trail[1:]
	}
	return orgs, nil
}

func maxOf(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// sweepUndiscovered returns a page of the organizations with pending
// events no lane knows of, and notes where the next page starts (the next
// sweep reads it) until the scan reaches the last organization.
func (s *sweeper) sweepUndiscovered(ctx context.Context, tx pgx.Tx) ([]string, error) {
	sw := s
	limit := cmp.Or(sw.fullPage, sweepLimit)
	rows, err := tx.Query(ctx, s.q.undiscovered, limit, sw.fullFrom)
	if err != nil {
		return nil, err
	}
	var (
		orgs      []string
		org, last *string
	)
	_, err = pgx.ForEachRow(rows, []any{&org, &last}, func() error {
		if org != nil {
			orgs = append(orgs, *org)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if last == nil { // past the last organization
		sw.fullFrom, sw.lastFull = "", s.clock.Now()
	} else {
		sw.fullFrom = *last
	}
	return orgs, nil
}

// collectOrgs runs a query returning organization ids.
func collectOrgs(ctx context.Context, tx pgx.Tx, sql string, limit int) ([]string, error) {
	rows, err := tx.Query(ctx, sql, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// shuffled puts orgs in this relay's own random order, so that replicas
// sweeping the same due lanes claim different ones first.
func shuffled(orgs []string) []string {
	rand.Shuffle(len(orgs), func(i, j int) { orgs[i], orgs[j] = orgs[j], orgs[i] })
	return orgs
}

// recently reports whether a sweep reached the database lately: within
// three PollIntervals plus the time one sweep may take.
func (s *sweeper) recently() bool {
	last := s.last.Load()
	return last != 0 && s.clock.Since(time.Unix(0, last)) < 3*s.every+backgroundTimeout
}
