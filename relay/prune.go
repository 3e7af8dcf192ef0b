package relay

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jonboulle/clockwork"

	"github.com/outboxrelay/outbox/internal/testsignal"
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

// pruner is the maintenance service that keeps the delivery history's
// hourly partitions (history.go) and prunes old history, idle lanes and
// dead relays' rows. It needs the pool, the queries, a clock and a logger,
// nothing of the lanes, so it is built and tested alone.
type pruner struct {
	pool  *pgxpool.Pool
	q     queries
	clock clockwork.Clock
	log   *slog.Logger
	// schema keys the prune lock: one replica per schema prunes.
	schema string
	// retention is Config.DeliveredRetention; negative keeps no history.
	retention time.Duration
	// every is how often Run prunes.
	every time.Duration
	// last is when the last prune started, in unix nanoseconds.
	last atomic.Int64
	// pruned is signalled after each prune (tests).
	pruned *testsignal.Signal[struct{}]
}

// newPruner returns the pruner of a relay configured by cfg (defaults
// applied): it prunes every pruneEvery, more often when the retention is
// shorter, never more often than the sweep.
func newPruner(pool *pgxpool.Pool, q queries, cfg Config, pruned *testsignal.Signal[struct{}]) *pruner {
	every := pruneEvery
	if cfg.DeliveredRetention >= 0 {
		every = max(min(pruneEvery, cfg.DeliveredRetention), cfg.PollInterval)
	}
	return &pruner{pool: pool, q: q, clock: cfg.clock, log: cfg.Logger, schema: cfg.Schema,
		retention: cfg.DeliveredRetention, every: every, pruned: pruned}
}

// Run prunes at start and every p.every until ctx ends, in a goroutine of
// its own so that no amount of pruning delays a sweep.
func (p *pruner) Run(ctx context.Context) {
	tick := p.clock.NewTicker(p.every)
	defer tick.Stop()
	p.prune(ctx) // this hour's partition, before the first settlement if it can
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.Chan():
			p.prune(ctx)
		}
	}
}

// prune maintains the history's partitions (creating the next hours',
// dropping those past the retention), then deletes up to
// pruneBatchesPerTick batches of old rows from its default partition, and
// prunes idle lanes and dead relays' rows. One replica at a time prunes:
// the others find the advisory lock taken and skip the tick. No lock a
// partition change takes is held while the deletes run.
func (p *pruner) prune(ctx context.Context) {
	defer p.pruned.Signal(struct{}{})
	p.last.Store(p.clock.Now().UnixNano())
	p.maintainHistoryOnce(ctx)
	for i := range pruneBatchesPerTick {
		n, err := p.pruneOnce(ctx, i == 0)
		if err != nil {
			if ctx.Err() == nil {
				p.log.WarnContext(ctx, "relay: prune failed", "error", err)
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
func (p *pruner) pruneOnce(ctx context.Context, first bool) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, backgroundTimeout)
	defer cancel()
	var deleted int64
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, p.q.pruneLock, p.schema).Scan(&locked); err != nil || !locked {
			return err
		}
		if first {
			if _, err := tx.Exec(ctx, p.q.pruneLanes, idleLaneAge.Milliseconds(), pruneBatch); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, p.q.pruneRelays); err != nil {
				return err
			}
		}
		tag, err := tx.Exec(ctx, p.q.pruneDefaultPartition, max(p.retention, 0).Milliseconds(), pruneBatch)
		deleted = tag.RowsAffected()
		return err
	})
	return deleted, err
}

// maintainHistoryOnce maintains the history's partitions, each change in a
// short transaction of its own (see maintainHistory), before the prune's
// deletes.
func (p *pruner) maintainHistoryOnce(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, backgroundTimeout)
	defer cancel()
	if err := p.maintainHistory(ctx); err != nil && ctx.Err() == nil {
		p.log.WarnContext(ctx, "relay: history partition maintenance failed", "error", err)
	}
}

// pruneIfIdle prunes when no Run does it (DrainOrganization alone), at most
// every pruneEvery.
func (r *Relay) pruneIfIdle(ctx context.Context) {
	if r.running.Load() || r.clock.Since(time.Unix(0, r.pruner.last.Load())) < pruneEvery {
		return
	}
	r.pruner.prune(ctx)
}
