package relay

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// sweepLimit bounds how many organizations one sweep queues.
	sweepLimit = 10000
	// pruneEvery is how often settled history past its retention is pruned
	// (more often when the retention itself is shorter).
	pruneEvery = time.Minute
	// pruneBatch is how many history rows one prune statement deletes.
	pruneBatch = 5000
)

// sweepLoop sweeps every PollInterval and prunes history every minute.
func (r *Relay) sweepLoop(ctx context.Context) {
	poll := time.NewTicker(r.cfg.PollInterval)
	defer poll.Stop()
	prune := time.NewTicker(max(min(pruneEvery, r.cfg.DeliveredRetention), r.cfg.PollInterval))
	defer prune.Stop()
	r.sweep(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			r.sweep(ctx)
		case <-prune.C:
			r.prune(ctx)
		}
	}
}

// sweep queues every organization whose head event is due and whose lane
// is free: events nobody signalled, retries whose time has come, lanes
// whose holder died.
func (r *Relay) sweep(ctx context.Context) {
	rows, err := r.pool.Query(ctx, r.q.dueLanes, sweepLimit)
	var orgs []string
	if err == nil {
		orgs, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		if ctx.Err() == nil {
			r.log.WarnContext(ctx, "relay: sweep failed", "error", err)
			r.sweepOK.Store(false)
		}
		return
	}
	r.sweepOK.Store(true)
	if len(orgs) > 0 {
		r.enqueue(orgs...)
	}
}

// prune deletes delivery history older than DeliveredRetention.
func (r *Relay) prune(ctx context.Context) {
	if r.cfg.DeliveredRetention < 0 {
		return
	}
	for ctx.Err() == nil {
		tag, err := r.pool.Exec(ctx, r.q.pruneDeliveries, r.cfg.DeliveredRetention.Milliseconds(), pruneBatch)
		if err != nil {
			r.log.WarnContext(ctx, "relay: prune delivery history failed", "error", err)
			return
		}
		if tag.RowsAffected() < pruneBatch {
			return
		}
	}
}
