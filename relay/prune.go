package relay

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// pruneEvery is how often settled history past its retention, and lanes
	// long idle, are pruned (more often when the retention itself is
	// shorter).
	pruneEvery = time.Minute
	// pruneBatch is how many rows one prune statement deletes.
	pruneBatch = 5000
	// pruneBatchesPerTick bounds one tick's work: a backlog of history (a
	// day of downtime, a shorter retention) is worked off over many ticks,
	// never in one loop that holds a connection for hours.
	pruneBatchesPerTick = 4
	// idleLaneAge is how long a lane with no events stays before it is
	// pruned.
	idleLaneAge = time.Hour
)

// pruneLoop prunes history and idle lanes at start and every pruneEvery,
// in a goroutine of its own so that no amount of pruning delays a sweep.
func (r *Relay) pruneLoop(ctx context.Context) {
	every := pruneEvery
	if r.cfg.DeliveredRetention >= 0 {
		every = max(min(pruneEvery, r.cfg.DeliveredRetention), r.cfg.PollInterval)
	}
	tick := r.clock.NewTicker(every)
	defer tick.Stop()
	r.prune(ctx) // this hour's partition, before the first settlement if it can
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.Chan():
			r.prune(ctx)
		}
	}
}

// prune maintains the history's partitions (creating the next hours',
// dropping those past the retention), then deletes up to
// pruneBatchesPerTick batches of old rows from its default partition, and
// prunes idle lanes and dead relays' rows. One replica at a time prunes:
// the others find the advisory lock taken and skip the tick. No lock a
// partition change takes is held while the deletes run.
func (r *Relay) prune(ctx context.Context) {
	defer r.testSignals.Pruned.Signal(struct{}{})
	r.lastPrune.Store(r.clock.Now().UnixNano())
	r.maintainHistoryOnce(ctx)
	for i := range pruneBatchesPerTick {
		n, err := r.pruneOnce(ctx, i == 0)
		if err != nil {
			if ctx.Err() == nil {
				r.log.WarnContext(ctx, "relay: prune failed", "error", err)
			}
			return
		}
		if n < pruneBatch {
			return
		}
	}
}

// pruneOnce runs one step under the prune lock and returns how many rows
// of the default history partition it deleted (0 when another replica
// holds the lock). The first step of a tick also prunes lanes and relays.
func (r *Relay) pruneOnce(ctx context.Context, first bool) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, backgroundTimeout)
	defer cancel()
	var deleted int64
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, r.q.pruneLock, r.cfg.Schema).Scan(&locked); err != nil || !locked {
			return err
		}
		if first {
			if _, err := tx.Exec(ctx, r.q.pruneLanes, idleLaneAge.Milliseconds(), pruneBatch); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, r.q.pruneRelays); err != nil {
				return err
			}
		}
		tag, err := tx.Exec(ctx, r.q.pruneDefaultPartition, max(r.cfg.DeliveredRetention, 0).Milliseconds(), pruneBatch)
		deleted = tag.RowsAffected()
		return err
	})
	return deleted, err
}

// maintainHistoryOnce maintains the history's partitions, each change in a
// short transaction of its own (see maintainHistory), before the prune's
// deletes.
func (r *Relay) maintainHistoryOnce(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, backgroundTimeout)
	defer cancel()
	if err := r.maintainHistory(ctx); err != nil && ctx.Err() == nil {
		r.log.WarnContext(ctx, "relay: history partition maintenance failed", "error", err)
	}
}

// pruneIfIdle prunes when no Run does it (DrainOrganization alone), at most
// every pruneEvery.
func (r *Relay) pruneIfIdle(ctx context.Context) {
	if r.running.Load() || r.clock.Since(time.Unix(0, r.lastPrune.Load())) < pruneEvery {
		return
	}
	r.prune(ctx)
}
