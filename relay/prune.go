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

// pruneLoop prunes history and idle lanes every pruneEvery, in a goroutine
// of its own so that no amount of pruning delays a sweep.
func (r *Relay) pruneLoop(ctx context.Context) {
	every := pruneEvery
	if r.cfg.DeliveredRetention >= 0 {
		every = max(min(pruneEvery, r.cfg.DeliveredRetention), r.cfg.PollInterval)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			r.prune(ctx)
		}
	}
}

// prune deletes up to pruneBatchesPerTick batches of delivery history older
// than DeliveredRetention, and idle lanes. One replica at a time prunes: the
// others find the advisory lock taken and skip the tick.
func (r *Relay) prune(ctx context.Context) {
	for range pruneBatchesPerTick {
		n, err := r.pruneOnce(ctx)
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

// pruneOnce runs one batch under the prune lock and returns how many
// history rows it deleted (0 when another replica holds the lock).
func (r *Relay) pruneOnce(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, backgroundTimeout)
	defer cancel()
	var deleted int64
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, r.q.pruneLock, r.cfg.Schema).Scan(&locked); err != nil || !locked {
			return err
		}
		if r.cfg.DeliveredRetention >= 0 {
			tag, err := tx.Exec(ctx, r.q.pruneDeliveries, r.cfg.DeliveredRetention.Milliseconds(), pruneBatch)
			if err != nil {
				return err
			}
			deleted = tag.RowsAffected()
		}
		if _, err := tx.Exec(ctx, r.q.pruneLanes, idleLaneAge.Milliseconds(), pruneBatch); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, r.q.pruneRelays)
		return err
	})
	return deleted, err
}
