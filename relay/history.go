package relay

import (
	"context"
	"fmt"
	"strconv"
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

// ddlLockTimeout bounds how long a partition DDL waits for its lock: while
// it waits, the settlements' INSERTs queue behind it.
const ddlLockTimeout = 100 * time.Millisecond

// ddlStatementTimeout bounds one partition DDL once it has its lock (an
// ATTACH checks that the default partition holds no row of the new range).
const ddlStatementTimeout = 2 * time.Second

// maintainHistory creates the partitions from this hour to partitionAhead
// hours on (none when no history is kept) and drops those that end before
// now - DeliveredRetention. Each change is a transaction of its own, under
// the prune lock, that waits at most ddlLockTimeout for its locks and holds
// them only for the statement: one that cannot run now is tried again at
// the next tick.
//
// A partition is created detached (no lock on the history), with a CHECK
// constraint that proves its range, then attached: ATTACH takes SHARE UPDATE
// EXCLUSIVE on the history, which lets settlements insert and readers read,
// and ACCESS EXCLUSIVE on the default partition (which it checks for rows
// of the range; the prune keeps it small). A partition past the retention
// is detached, then dropped. PostgreSQL allows no DETACH CONCURRENTLY while
// a default partition exists, so the detach takes ACCESS EXCLUSIVE on the
// history for its few milliseconds, after waiting at most ddlLockTimeout.
func (p *pruner) maintainHistory(ctx context.Context) error {
	rows, err := p.pool.Query(ctx, p.q.partitions, p.q.schema.Table(sqlname.Deliveries))
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
	now := p.clock.Now().UTC()
	history := p.q.schema.Table(sqlname.Deliveries)
	if p.retention >= 0 {
		hour := now.Truncate(time.Hour)
		for i := range partitionAhead + 1 {
			start := hour.Add(time.Duration(i) * time.Hour)
			name := partitionName(start)
			if have[name] {
				continue
			}
			table := p.q.schema.Table(name)
			from, to := start.Format(time.RFC3339), start.Add(time.Hour).Format(time.RFC3339)
			p.runDDL(ctx,
				fmt.Sprintf("CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)", table, history),
				fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s CHECK (settled_at >= '%s' AND settled_at < '%s')",
					table, sqlname.Quote(name+"_range"), from, to),
				fmt.Sprintf("ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM ('%s') TO ('%s')", history, table, from, to))
		}
	}
	horizon := now.Add(-max(p.retention, 0))
	for _, n := range names {
		if end, ok := partitionEnd(n); ok && !end.After(horizon) {
			table := p.q.schema.Table(n)
			p.runDDL(ctx, fmt.Sprintf("ALTER TABLE %s DETACH PARTITION %s", history, table))
			p.runDDL(ctx, "DROP TABLE "+table)
		}
	}
	return nil
}

// runDDL runs statements in one short transaction of their own, under the
// prune lock, with ddlLockTimeout and ddlStatementTimeout. It logs a
// failure at debug level: the next tick tries again.
func (p *pruner) runDDL(ctx context.Context, statements ...string) {
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, p.q.pruneLock, p.schema).Scan(&locked); err != nil || !locked {
			return err
		}
		if _, err := tx.Exec(ctx, "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)",
			strconv.FormatInt(ddlLockTimeout.Milliseconds(), 10), strconv.FormatInt(ddlStatementTimeout.Milliseconds(), 10)); err != nil {
			return err
		}
		for _, ddl := range statements {
			if _, err := tx.Exec(ctx, ddl); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		p.log.DebugContext(ctx, "relay: history partition maintenance deferred", "statements", statements, "error", err)
	}
}
