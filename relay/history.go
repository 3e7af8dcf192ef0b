package relay

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxrelay/outbox/internal/sqlname"
)

// The delivery history is partitioned by the hour it was settled in
// (migration 0004). The relay that holds the prune lock creates the
// partitions of this hour and the next two, and drops whole those that end
// before the retention window: pruning costs a DROP, whatever the volume.

// partitionAhead is how many hours ahead partitions are made.
const partitionAhead = 2

// partitionName names the hourly partition that starts at hour h.
func partitionName(h time.Time) string {
	return sqlname.DeliveriesPartitionPrefix + h.UTC().Format("2006010215")
}

// partitionEnd reads the end of the range a partition holds from its name:
// an hourly one ends an hour after it starts, the one migration 0004 made of
// the old table at the hour it names. ok is false for the default partition
// and any name not made by outbox.
func partitionEnd(name string) (end time.Time, ok bool) {
	parse := func(s string) (time.Time, bool) {
		t, err := time.Parse("2006010215", s)
		return t, err == nil
	}
	if s, found := strings.CutPrefix(name, sqlname.DeliveriesPartitionPrefix); found {
		if t, ok := parse(s); ok {
			return t.Add(time.Hour), true
		}
	}
	if s, found := strings.CutPrefix(name, sqlname.DeliveriesBeforePrefix); found {
		return parse(s)
	}
	return time.Time{}, false
}

// maintainHistory creates the partitions from this hour to partitionAhead
// hours on (none when no history is kept) and drops those that end before
// now - DeliveredRetention. Each DDL runs under its own savepoint with a
// short lock timeout: one that cannot run now (a default partition holding
// rows of a missing hour, a lock that does not come) is tried again at the
// next tick, and settlements wait on it for a second at most.
func (r *Relay) maintainHistory(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '1s'"); err != nil {
		return err
	}
	rows, err := tx.Query(ctx, r.q.partitions, r.q.schema.Table(sqlname.Deliveries))
	if err != nil {
		return err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, n := range names {
		have[n] = true
	}
	now := r.now().UTC()
	if r.cfg.DeliveredRetention >= 0 {
		hour := now.Truncate(time.Hour)
		for i := range partitionAhead + 1 {
			start := hour.Add(time.Duration(i) * time.Hour)
			name := partitionName(start)
			if have[name] {
				continue
			}
			ddl := fmt.Sprintf("CREATE TABLE %s PARTITION OF %s FOR VALUES FROM ('%s') TO ('%s')",
				r.q.schema.Table(name), r.q.schema.Table(sqlname.Deliveries),
				start.Format(time.RFC3339), start.Add(time.Hour).Format(time.RFC3339))
			r.savepointDDL(ctx, tx, ddl)
		}
	}
	horizon := now.Add(-max(r.cfg.DeliveredRetention, 0))
	for _, n := range names {
		if end, ok := partitionEnd(n); ok && !end.After(horizon) {
			r.savepointDDL(ctx, tx, "DROP TABLE "+r.q.schema.Table(n))
		}
	}
	return nil
}

// savepointDDL runs one DDL statement under a savepoint, so its failure
// leaves the transaction usable; it logs the failure at debug level (the
// next tick tries again).
func (r *Relay) savepointDDL(ctx context.Context, tx pgx.Tx, ddl string) {
	err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
		_, err := sp.Exec(ctx, ddl)
		return err
	})
	if err != nil {
		r.log.DebugContext(ctx, "relay: history partition maintenance deferred", "statement", ddl, "error", err)
	}
}
