package relay

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// sweepLimit bounds how many organizations one sweep queues.
	sweepLimit = 10000
	// backgroundTimeout bounds every query the relay runs on its own (the
	// sweep, pruning, counts): a half-open connection must not hold one of
	// them for the minutes TCP takes to notice.
	backgroundTimeout = 5 * time.Second
)

// sweepLoop sweeps every PollInterval.
func (r *Relay) sweepLoop(ctx context.Context) {
	poll := time.NewTicker(r.cfg.PollInterval)
	defer poll.Stop()
	r.sweep(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			r.sweep(ctx)
		}
	}
}

// sweep queues every organization whose head event is due and whose lane
// is free: events nobody signalled, retries whose time has come, lanes
// whose holder died.
func (r *Relay) sweep(ctx context.Context) {
	qctx, cancel := context.WithTimeout(ctx, backgroundTimeout)
	defer cancel()
	rows, err := r.pool.Query(qctx, r.q.dueLanes, sweepLimit)
	var orgs []string
	if err == nil {
		orgs, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		if ctx.Err() == nil {
			r.log.WarnContext(ctx, "relay: sweep failed", "error", err)
		}
		return
	}
	r.lastSweep.Store(time.Now().UnixNano())
	if len(orgs) > 0 {
		r.enqueue(orgs...)
	}
}

// sweptRecently reports whether a sweep reached the database lately: within
// three PollIntervals plus the time one sweep may take.
func (r *Relay) sweptRecently() bool {
	last := r.lastSweep.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < 3*r.cfg.PollInterval+backgroundTimeout
}
