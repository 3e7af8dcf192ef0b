package relay

import (
	"context"
	"fmt"
	"testing"

	"github.com/outboxrelay/outbox/internal/pgtest"
)

// BenchmarkClaim times the claim's round trip alone (r.claim: the new
// lanes, the leases, the heads' walk and the lane states, one batch), one
// op a claim of every organization, with nothing else running: a steadier
// figure for a change to the claim's statements than the drains of
// BenchmarkOrganizations, where the claim is a share of a CPU-bound whole.
// Between ops, untimed, the lanes are given back (or, for new lanes,
// deleted), so each op claims the same events. It reports µs/event, the
// op's time per event claimed.
//
//	go test -run '^$' -bench Claim -benchtime 200x ./relay
func BenchmarkClaim(b *testing.B) {
	for _, c := range []struct {
		name         string
		orgs, events int // events per organization
		payloadBytes int
		newLanes     bool
	}{
		{name: "deep", orgs: 16, events: 100, payloadBytes: 250},
		{name: "single", orgs: 256, events: 1, payloadBytes: 250},
		{name: "single-new", orgs: 256, events: 1, payloadBytes: 250, newLanes: true},
		{name: "large", orgs: 16, events: 8, payloadBytes: 32 << 10},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			db := pgtest.New(b)
			// Incompressible text (md5s), so the large payloads are stored
			// out of line as they would be.
			_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_events (event_id, organization_id, event_type, payload)
				SELECT gen_random_uuid(), 'org-' || lpad((g % $1)::text, 5, '0'), 'bench.event',
				       jsonb_build_object('id', g, 'pad', (SELECT string_agg(md5(g::text || i::text), '')
				                                           FROM generate_series(1, greatest($3::int / 32, 1)) i))
				FROM generate_series(0, $1::int * $2::int - 1) g`, c.orgs, c.events, c.payloadBytes)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := db.Pool.Exec(ctx, `ANALYZE outbox_events`); err != nil {
				b.Fatal(err)
			}
			r, err := New(db.Pool, Config{SvixToken: "t", BatchSize: max(c.events, 1)})
			if err != nil {
				b.Fatal(err)
			}
			orgs := benchOrgNames(c.orgs)
			giveBack := `UPDATE outbox_lanes SET lease_token = NULL, leased_until = NULL, holder = NULL`
			if c.newLanes {
				giveBack = `DELETE FROM outbox_lanes`
			}
			// One claim untimed: the lanes exist (for the cases that keep
			// them) and a connection has prepared the statements.
			if _, err := r.claim(ctx, orgs); err != nil {
				b.Fatal(err)
			}
			if _, err := db.Pool.Exec(ctx, giveBack); err != nil {
				b.Fatal(err)
			}
			claimed := 0
			b.ResetTimer()
			for range b.N {
				rd, err := r.claim(ctx, orgs)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				for _, ln := range rd.lanes {
					claimed += len(ln.events)
				}
				if _, err := db.Pool.Exec(ctx, giveBack); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			if want := b.N * c.orgs * c.events; claimed != want {
				b.Fatalf("claimed %d events, want %d", claimed, want)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(claimed), "µs/event")
		})
	}
}

// BenchmarkSettle times the settlement's round trip alone (r.settle: every
// event claimed delivered, moved into the history, each lane released:
// deleted, since nothing is left), one op a settlement of every
// organization's claimed events. Before each op, untimed, the events are
// committed again and claimed (their lanes inserted again). It reports
// µs/event, the op's time per event settled. Since 2026-12-06 (late) the
// release deletes the lanes it empties, so figures from before then (which
// timed an update of each lane) do not compare.
//
//	go test -run '^$' -bench Settle -benchtime 200x ./relay
func BenchmarkSettle(b *testing.B) {
	for _, c := range []struct {
		name         string
		orgs, events int // events per organization
	}{
		{name: "deep", orgs: 16, events: 100},
		{name: "single", orgs: 256, events: 1},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			db := pgtest.New(b)
			r, err := New(db.Pool, Config{SvixToken: "t", BatchSize: c.events})
			if err != nil {
				b.Fatal(err)
			}
			orgs := benchOrgNames(c.orgs)
			// claimAll commits the events again and claims them, each
			// delivered.
			claimAll := func() []*lane {
				_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_events (event_id, organization_id, event_type, payload)
					SELECT gen_random_uuid(), 'org-' || lpad((g % $1)::text, 5, '0'), 'bench.event',
					       jsonb_build_object('id', g, 'actor', 'user_2f1c9a7e4b', 'action', 'document.updated')
					FROM generate_series(0, $1::int * $2::int - 1) g`, c.orgs, c.events)
				if err != nil {
					b.Fatal(err)
				}
				rd, err := r.claim(ctx, orgs)
				if err != nil {
					b.Fatal(err)
				}
				for _, ln := range rd.lanes {
					ln.results = make([]result, len(ln.events))
					for i := range ln.results {
						ln.results[i] = result{outcome: outcomeDelivered, messageID: "msg_bench"}
					}
				}
				return rd.lanes
			}
			if _, err := r.settle(claimAll()); err != nil { // untimed: statements prepared
				b.Fatal(err)
			}
			settled := 0
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				lanes := claimAll()
				b.StartTimer()
				due, err := r.settle(lanes)
				if err != nil {
					b.Fatal(err)
				}
				if len(due) != c.orgs {
					b.Fatalf("released %d lanes, want %d", len(due), c.orgs)
				}
				for _, ln := range lanes {
					settled += len(ln.events)
				}
			}
			b.StopTimer()
			var left int
			if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox_events`).Scan(&left); err != nil {
				b.Fatal(err)
			}
			if want := b.N * c.orgs * c.events; settled != want || left != 0 {
				b.Fatalf("settled %d events, want %d; %d left", settled, want, left)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(settled), "µs/event")
		})
	}
}

// benchOrgNames names n organizations as the benchmarks' inserts do.
func benchOrgNames(n int) []string {
	orgs := make([]string, n)
	for i := range orgs {
		orgs[i] = fmt.Sprintf("org-%05d", i)
	}
	return orgs
}
