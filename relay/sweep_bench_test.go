package relay

import (
	"context"
	"testing"
	"time"

	"github.com/outboxrelay/outbox/internal/pgtest"
)

// BenchmarkSweep measures one sweep over a deep backlog: a million events
// pending in one organization (its lane due, as while it drains), and a
// hundred thousand organizations with one event each, undiscovered (no
// lane yet: what a full sweep pages through) or due (lanes due now: what
// every sweep reads). ns/op is one sweep.
//
//	go test -run '^$' -bench Sweep -benchtime 20x ./relay
func BenchmarkSweep(b *testing.B) {
	ctx := context.Background()
	cases := []struct {
		name  string
		setup string
		full  bool
	}{
		{"one_org_1M_pending/incremental", `
			INSERT INTO outbox_events (event_id, organization_id, event_type, payload)
			SELECT gen_random_uuid(), 'org-deep', 'x.y', '{"k": 1}' FROM generate_series(1, 1000000);
			INSERT INTO outbox_lanes (organization_id, due_at) VALUES ('org-deep', now())`, false},
		{"one_org_1M_pending/full", ``, true},
		{"100k_orgs_undiscovered/full_page", `
			INSERT INTO outbox_events (event_id, organization_id, event_type, payload)
			SELECT gen_random_uuid(), 'org-' || g, 'x.y', '{"k": 1}' FROM generate_series(1, 100000) g`, true},
		{"100k_orgs_due/incremental", `
			INSERT INTO outbox_lanes (organization_id, due_at) SELECT 'org-' || g, now() FROM generate_series(1, 100000) g`, false},
	}
	db := pgtest.New(b)
	set := map[string]bool{} // the runner calls each case more than once
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if c.setup != "" && !set[c.name] {
				set[c.name] = true
				if _, err := db.Pool.Exec(ctx, c.setup); err != nil {
					b.Fatal(err)
				}
				for _, t := range []string{"outbox_events", "outbox_lanes"} {
					if _, err := db.Pool.Exec(ctx, "VACUUM ANALYZE "+t); err != nil {
						b.Fatal(err)
					}
				}
			}
			r, err := New(db.Pool, Config{SvixToken: "t"})
			if err != nil {
				b.Fatal(err)
			}
			r.sweeper.sweep(ctx) // starts the incremental cursor
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				r.mu.Lock()
				r.queue, r.queued = nil, map[string]struct{}{}
				r.mu.Unlock()
				r.sweeper.full.Store(c.full)
				r.sweeper.fullFrom = ""
				if !c.full {
					r.sweeper.lastFull = time.Now()
				}
				b.StartTimer()
				r.sweeper.sweep(ctx)
			}
			b.StopTimer()
			if r.sweeper.last.Load() == 0 {
				b.Fatal("the sweep never reached the database")
			}
			r.mu.Lock()
			b.ReportMetric(float64(len(r.queue)), "orgs_queued")
			r.mu.Unlock()
		})
	}
}
