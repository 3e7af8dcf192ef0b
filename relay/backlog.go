package relay

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jonboulle/clockwork"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/outboxrelay/outbox/internal/telemetry"
)

// backlogCacheTTL is how long one backlog reading answers collections at
// least, so that several scrapers cost one query; a reading that took long
// (a deep backlog: the query is O(pending events)) answers for
// backlogCostFactor times its duration, so that it never takes more than
// 1/backlogCostFactor of one connection's time.
const (
	backlogCacheTTL   = 5 * time.Second
	backlogCostFactor = 20
)

// backlogRow is one series of the backlog gauges.
type backlogRow struct {
	org    string
	events int64
	age    float64
}

// backlogSampler reads the backlog gauges' series from the database when a
// metrics reader collects them, caching each reading (backlogCacheTTL, or
// longer after a slow one). It has no loop of its own: collections drive
// it.
type backlogSampler struct {
	pool  *pgxpool.Pool
	query string // sqlBacklog
	top   int    // Config.BacklogTopOrganizations
	clock clockwork.Clock

	mu   sync.Mutex
	at   time.Time     // when the cached reading was taken
	took time.Duration // how long it took
	rows []backlogRow  // the cached reading
}

func newBacklogSampler(pool *pgxpool.Pool, q queries, cfg Config) *backlogSampler {
	return &backlogSampler{pool: pool, query: q.backlog, top: max(cfg.BacklogTopOrganizations, 0), clock: cfg.clock}
}

// observe registers the backlog gauges' callback with t's meter until the
// returned function is called (Run's lifetime).
func (s *backlogSampler) observe(t *relayTelemetry) (stop func()) {
	reg, err := t.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		rows, err := s.read(ctx)
		if err != nil {
			return err
		}
		for _, row := range rows {
			org := metric.WithAttributes(telemetry.OrganizationID.String(row.org))
			o.ObserveInt64(t.backlogEvents, row.events, org)
			o.ObserveFloat64(t.backlogAge, row.age, org)
		}
		return nil
	}, t.backlogEvents, t.backlogAge)
	if err != nil {
		otel.Handle(err)
		return func() {}
	}
	return func() { _ = reg.Unregister() }
}

// read returns the backlog series: the cached reading while it is fresh,
// else a new one. Nothing pending reads as one zero series, rather than
// none.
func (s *backlogSampler) read(ctx context.Context) ([]backlogRow, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.at.IsZero() && s.clock.Since(s.at) < max(backlogCacheTTL, backlogCostFactor*s.took) {
		return s.rows, nil
	}
	start := s.clock.Now()
	qctx, cancel := context.WithTimeout(ctx, backgroundTimeout)
	defer cancel()
	rows, err := s.pool.Query(qctx, s.query, s.top)
	if err != nil {
		return nil, err
	}
	var (
		read   = []backlogRow{}
		org    *string
		events int64
		age    float64
	)
	_, err = pgx.ForEachRow(rows, []any{&org, &events, &age}, func() error {
		row := backlogRow{org: OtherOrganizations, events: events, age: age}
		if org != nil {
			row.org = *org
		}
		read = append(read, row)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(read) == 0 {
		read = append(read, backlogRow{org: OtherOrganizations})
	}
	s.rows, s.at, s.took = read, s.clock.Now(), s.clock.Since(start)
	return read, nil
}
