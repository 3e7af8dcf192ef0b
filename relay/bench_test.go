package relay_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

const (
	benchOrgs     = 100
	benchInFlight = 64
)

func benchOrg(i int) string { return benchOrgOf(i, benchOrgs) }

// benchOrgOf spreads event i over orgs organizations.
func benchOrgOf(i, orgs int) string { return fmt.Sprintf("org-%05d", i%orgs) }

func benchPayload(i int) map[string]any {
	return map[string]any{"id": i, "actor": "user_2f1c9a7e4b", "action": "document.updated",
		"resource": "doc_8d1e0c33a9b74f21", "ip": "203.0.113.42", "tags": []string{"audit", "docs"}}
}

// benchSetup returns a database and a fake with its request log off. It
// starts with a checkpoint, so that none comes on its own (every 5 minutes
// by default) during the case's minute or so: the WAL a case reports then
// holds no full-page images of pages a checkpoint in the middle would
// have cost, only the writes themselves. (CHECKPOINT needs a superuser or
// pg_checkpoint; without it the case says so and goes on.)
func benchSetup(b *testing.B, latency time.Duration) (*pgtest.DB, *svixtest.Server) {
	b.Helper()
	db := pgtest.New(b)
	if _, err := db.Pool.Exec(b.Context(), `CHECKPOINT`); err != nil {
		b.Logf("no checkpoint before the case (wal-B/event may include full-page images): %v", err)
	}
	fake := svixtest.NewT(b, svixtest.Options{DisableRequestLog: true, Latency: latency, AutoCreateApps: false})
	return db, fake
}

func benchConfig(db *pgtest.DB, fake *svixtest.Server) relay.Config {
	return relay.Config{
		SvixToken: fake.Token(), SvixServerURL: fake.URL(), Channel: "outbox_" + db.Schema,
		Concurrency: benchInFlight, PollInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// preload commits n events spread over benchOrgs organizations.
func preload(b *testing.B, db *pgtest.DB, n int) { preloadOrgs(b, db, n, benchOrgs) }

// preloadOrgs commits n events spread over orgs organizations.
func preloadOrgs(b *testing.B, db *pgtest.DB, n, orgs int) {
	b.Helper()
	ctx := context.Background()
	for done := 0; done < n; {
		size := min(10000, n-done)
		ps := make([]outbox.AppendParams, size)
		for i := range ps {
			ps[i] = outbox.AppendParams{OrganizationID: benchOrgOf(done+i, orgs), EventType: "bench.event", Payload: benchPayload(done + i)}
		}
		if _, err := outbox.AppendBatch(ctx, db.Pool, ps); err != nil {
			b.Fatal(err)
		}
		done += size
	}
}

// runRelayUntil runs a relay until the fake holds n messages.
func runRelayUntil(b *testing.B, cfg relay.Config, db *pgtest.DB, fake *svixtest.Server, n int) {
	b.Helper()
	r, err := relay.New(db.Pool, cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer wcancel()
	if err := fake.WaitForMessages(wctx, n); err != nil {
		b.Fatalf("relay delivered %d of %d: %v", fake.MessageCount(), n, err)
	}
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// rawCreates sends n messages with SDK Message.Create from benchInFlight
// goroutines: the ceiling the relay is measured against, with no database.
func rawCreates(b *testing.B, fake *svixtest.Server, n int) {
	b.Helper()
	client := fake.Client(b)
	ctx := context.Background()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		next int
	)
	for range benchInFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				org, eventID := benchOrg(i), fmt.Sprintf("evt-%d", i)
				_, err := client.Message.Create(ctx, org, models.MessageIn{
					EventType: "bench.event", EventId: &eventID, Payload: benchPayload(i),
					Application: &models.ApplicationIn{Name: org, Uid: &org},
				}, nil)
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkThroughput: 100 organizations, 64 calls in flight, against the
// fake with no added latency (raw) or 20 ms per call (latency=20ms). One op
// is one event created in Svix; events/s is the figure to compare.
func BenchmarkThroughput(b *testing.B) {
	for _, latency := range []time.Duration{0, 20 * time.Millisecond} {
		for _, impl := range []string{"raw_sdk", "relay"} {
			b.Run(fmt.Sprintf("latency=%s/impl=%s", latency, impl), func(b *testing.B) {
				db, fake := benchSetup(b, latency)
				if impl == "relay" {
					preload(b, db, b.N)
				}
				b.ResetTimer()
				if impl == "relay" {
					runRelayUntil(b, benchConfig(db, fake), db, fake, b.N)
				} else {
					rawCreates(b, fake, b.N)
					b.StopTimer()
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}

// BenchmarkCommitToCreateLatency appends events at 200/s (one per
// transaction, signalled after commit) and measures the time from each
// commit to its message's creation in the fake. mode=notify wakes the relay
// with NOTIFY; mode=poll_only relies on the sweep (PollInterval 1 s, the
// default).
func BenchmarkCommitToCreateLatency(b *testing.B) {
	for _, mode := range []string{"notify", "poll_only"} {
		b.Run("mode="+mode, func(b *testing.B) {
			db, fake := benchSetup(b, 0)
			cfg := benchConfig(db, fake)
			cfg.PollInterval = time.Second
			cfg.PollOnly = mode == "poll_only"
			r, err := relay.New(db.Pool, cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			defer func() { // Run's goroutines end before the benchmark does
				cancel()
				if err := <-done; err != nil {
					b.Error(err)
				}
			}()
			for !r.Ready() {
				time.Sleep(5 * time.Millisecond)
			}
			signaler := outbox.NopSignaler
			if mode == "notify" {
				if signaler, err = outbox.NewNotifySignaler(db.Pool, cfg.Channel); err != nil {
					b.Fatal(err)
				}
			}
			committedAt := make(map[string]time.Time, b.N)
			// WithTx signals right after the commit: note the time there.
			var commitAt time.Time
			timed := outbox.SignalerFunc(func(ctx context.Context, org string) error {
				commitAt = time.Now()
				return signaler.SignalRelay(ctx, org)
			})
			tick := time.NewTicker(5 * time.Millisecond) // 200 events/s
			defer tick.Stop()
			b.ResetTimer()
			for i := range b.N {
				<-tick.C
				var res outbox.AppendResult
				err := outbox.WithTx(ctx, db.Pool, timed, func(tx *outbox.Tx) error {
					res, err = outbox.Append(ctx, tx, outbox.AppendParams{OrganizationID: benchOrg(i), EventType: "bench.event", Payload: benchPayload(i)})
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
				committedAt[res.EventID.String()] = commitAt
			}
			wctx, wcancel := context.WithTimeout(ctx, time.Minute)
			defer wcancel()
			if err := fake.WaitForMessages(wctx, b.N); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			var lat []time.Duration
			for _, m := range fake.Messages() {
				lat = append(lat, m.Timestamp.Sub(committedAt[m.EventID]))
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.ReportMetric(pct(0.50), "p50_ms")
			b.ReportMetric(pct(0.95), "p95_ms")
			b.ReportMetric(pct(0.99), "p99_ms")
		})
	}
}

// retryingClient is the SDK as a plain user has it: its own default
// retries (three, 50, 100 and 200 µs apart), against the fake.
func retryingClient(b *testing.B, fake *svixtest.Server) *svix.Svix {
	b.Helper()
	u, err := url.Parse(fake.URL())
	if err != nil {
		b.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = false
	tr.MaxIdleConnsPerHost = benchInFlight
	b.Cleanup(tr.CloseIdleConnections)
	c, err := svix.New(fake.Token(), &svix.SvixOptions{ServerUrl: u, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// rawRetryingCreates sends n messages from benchInFlight goroutines with
// the SDK's default retries; a create that still fails is sent again.
func rawRetryingCreates(b *testing.B, client *svix.Svix, n int) {
	rawRetryingCreatesOrgs(b, client, n, benchOrgs)
}

// rawRetryingCreatesOrgs is rawRetryingCreates over orgs organizations.
func rawRetryingCreatesOrgs(b *testing.B, client *svix.Svix, n, orgs int) {
	rawRetryingCreatesFrom(b, client, 0, n, orgs)
}

// rawRetryingCreatesFrom is rawRetryingCreatesOrgs for the events numbered
// from first on (distinct eventIds from another run's).
func rawRetryingCreatesFrom(b *testing.B, client *svix.Svix, first, n, orgs int) {
	b.Helper()
	// The SDK's own retries leave the body of the answer they retry
	// unclosed, and its connection's goroutines wait for the request's
	// context: ending it frees them.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		next int
	)
	for range benchInFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := first + next
				next++
				mu.Unlock()
				if i >= first+n {
					return
				}
				org, eventID := benchOrgOf(i, orgs), fmt.Sprintf("evt-%d", i)
				for try := 1; ; try++ {
					_, err := client.Message.Create(ctx, org, models.MessageIn{
						EventType: "bench.event", EventId: &eventID, Payload: benchPayload(i),
						Application: &models.ApplicationIn{Name: org, Uid: &org},
					}, nil)
					if err == nil {
						break
					}
					if try == 100 { // not the injected 503s: a bug in the benchmark
						b.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkDegradedThroughput: a backlog over 100 organizations drained
// into a Svix that answers a share of message creations, at random, with
// 503 — the relay with its defaults beside a plain loop of 64 goroutines
// calling Message.Create with the SDK's default retries, against the same
// faults, and beside floorDrain (the least database work, retrying as the
// raw loop does). Run with -benchtime 20000x for the README's figures.
// Beside events/s each case reports its costs per event as
// BenchmarkOrganizations does.
func BenchmarkDegradedThroughput(b *testing.B) {
	for _, rate := range []float64{0, 0.01, 0.05} {
		for _, impl := range []string{"raw_sdk_retrying", "floor", "relay"} {
			b.Run(fmt.Sprintf("faults=%g/impl=%s", rate, impl), func(b *testing.B) {
				db, fake := benchSetup(b, 0)
				if rate > 0 {
					fake.SetFaultRate(rate, svixtest.Fault{Kind: svixtest.FaultStatus, Status: 503})
				}
				if impl != "raw_sdk_retrying" {
					preload(b, db, b.N)
				}
				b.ResetTimer()
				cpu := startCost(b, dbOf(impl != "raw_sdk_retrying", db))
				switch impl {
				case "relay":
					runRelayUntil(b, benchConfig(db, fake), db, fake, b.N)
				case "floor":
					floorDrain(b, db, fake, b.N)
				default:
					rawRetryingCreates(b, retryingClient(b, fake), b.N)
					b.StopTimer()
				}
				cpu.report(b, b.N)
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}

// BenchmarkOrganizations: a backlog spread over 100, 2,000 or 20,000
// organizations (20,000 events: one each at the widest), drained by the
// relay with its defaults (impl=relay: pages on) and with pages off
// (impl=relay_lanes: a lane for every organization) beside the raw SDK
// loop over the same organizations and beside floorDrain, the least
// database work any outbox with a delivery history does (a bound, not a
// relay). Run with -benchtime 20000x for the README's figures. (Before
// pages were the default, 2026-12-07, impl=relay was the lanes and
// impl=relay_pages the pages.)
//
// The warm cases measure a second backlog over the same organizations,
// after a first one was drained untimed: their lanes exist (and their
// applications in Svix), as in a service that has sent to them before. The
// cold cases pay for every organization's first lane row. Beside events/s
// each case reports the CPU per event of this process (cpu-µs/event) and of
// PostgreSQL (pg-cpu-µs/event), which share the machine's cores, and, but
// for the raw loop, which has no database, the WAL written per event
// (wal-B/event; see costMeter).
func BenchmarkOrganizations(b *testing.B) {
	for _, orgs := range []int{100, 2000, 20000} {
		for _, warm := range []bool{false, true} {
			if warm && orgs != 20000 {
				continue // with 10 events or more per organization, a lane row is a small share
			}
			for _, impl := range []string{"raw_sdk", "floor", "relay_lanes", "relay"} {
				name := fmt.Sprintf("orgs=%d/impl=%s", orgs, impl)
				if warm {
					name = fmt.Sprintf("orgs=%d-warm/impl=%s", orgs, impl)
				}
				b.Run(name, func(b *testing.B) { benchOrganizations(b, orgs, warm, 0, impl) })
			}
		}
	}
	// Svix as far away as a real one: each creation answered after 20 ms.
	// The CPU no longer bounds either loop; the calls in flight do.
	for _, impl := range []string{"raw_sdk", "floor", "relay_lanes", "relay"} {
		name := fmt.Sprintf("orgs=20000-latency=20ms/impl=%s", impl)
		b.Run(name, func(b *testing.B) { benchOrganizations(b, 20000, false, 20*time.Millisecond, impl) })
	}
}

func benchOrganizations(b *testing.B, orgs int, warm bool, latency time.Duration, impl string) {
	db, fake := benchSetup(b, latency)
	client := retryingClient(b, fake)
	// drain delivers the b.N events numbered from first on, and stops the
	// timer.
	drain := func(first int) {
		switch impl {
		case "relay", "relay_lanes":
			cfg := benchConfig(db, fake)
			cfg.DisablePages = impl == "relay_lanes"
			runRelayUntil(b, cfg, db, fake, first+b.N)
		case "floor":
			floorDrain(b, db, fake, first+b.N)
		default:
			rawRetryingCreatesFrom(b, client, first, b.N, orgs)
			b.StopTimer()
		}
	}
	first := 0
	if warm {
		if impl != "raw_sdk" {
			preloadOrgs(b, db, b.N, orgs)
		}
		drain(0)
		first = b.N
	}
	if impl != "raw_sdk" {
		preloadOrgs(b, db, b.N, orgs)
	}
	b.ResetTimer()
	b.StartTimer()
	cpu := startCost(b, dbOf(impl != "raw_sdk", db))
	drain(first)
	cpu.report(b, b.N)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDeepBacklog drains a million events pending in one organization
// for 20 s while five small organizations get an event every 50 ms each,
// signalled after commit: the deep lane's steady rate (events/s per 5 s
// window, min and max), the heap in use (MiB, min and max) and the small
// organizations' commit → create latency (p50, p99).
//
//	go test -run '^$' -bench DeepBacklog -benchtime 1x -timeout 10m ./relay
func BenchmarkDeepBacklog(b *testing.B) {
	const deep, window, windows = 1_000_000, 5 * time.Second, 4
	db, fake := benchSetup(b, 0)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO outbox_events (event_id, organization_id, event_type, payload)
		SELECT gen_random_uuid(), 'org-deep', 'bench.event', '{"id": 1, "actor": "user_2f1c9a7e4b", "action": "document.updated"}'
		FROM generate_series(1, $1)`, deep); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, "ANALYZE outbox_events"); err != nil {
		b.Fatal(err)
	}
	cfg := benchConfig(db, fake)
	r, err := relay.New(db.Pool, cfg)
	if err != nil {
		b.Fatal(err)
	}
	signaler, err := outbox.NewNotifySignaler(db.Pool, cfg.Channel)
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	for !r.Ready() {
		time.Sleep(5 * time.Millisecond)
	}
	b.ResetTimer()
	var (
		mu          sync.Mutex
		committedAt = map[string]time.Time{}
		rates, heap []float64
	)
	stopSmall := make(chan struct{})
	var small sync.WaitGroup
	small.Add(1)
	go func() {
		defer small.Done()
		tick := time.NewTicker(10 * time.Millisecond) // 5 organizations, each every 50 ms
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopSmall:
				return
			case <-tick.C:
			}
			var res outbox.AppendResult
			var at time.Time
			timed := outbox.SignalerFunc(func(ctx context.Context, org string) error {
				at = time.Now()
				return signaler.SignalRelay(ctx, org)
			})
			err := outbox.WithTx(ctx, db.Pool, timed, func(tx *outbox.Tx) error {
				var err error
				res, err = outbox.Append(ctx, tx, outbox.AppendParams{OrganizationID: fmt.Sprintf("org-small-%d", i%5), EventType: "bench.event", Payload: benchPayload(i)})
				return err
			})
			if err != nil {
				b.Error(err)
				return
			}
			mu.Lock()
			committedAt[res.EventID.String()] = at
			mu.Unlock()
		}
	}()
	deepCreated := func() int { return len(fake.MessagesFor("org-deep")) }
	last := deepCreated()
	for range windows {
		time.Sleep(window)
		now := deepCreated()
		rates = append(rates, float64(now-last)/window.Seconds())
		last = now
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		heap = append(heap, float64(m.HeapInuse)/(1<<20))
	}
	close(stopSmall)
	small.Wait()
	b.StopTimer()
	time.Sleep(500 * time.Millisecond) // the last small events
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	mu.Lock()
	for _, m := range fake.Messages() {
		if at, ok := committedAt[m.EventID]; ok {
			lat = append(lat, m.Timestamp.Sub(at))
		}
	}
	mu.Unlock()
	if len(lat) == 0 {
		b.Fatal("no small organization's event was delivered")
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	sort.Float64s(rates)
	sort.Float64s(heap)
	b.ReportMetric(rates[0], "deep_min_events/s")
	b.ReportMetric(rates[len(rates)-1], "deep_max_events/s")
	b.ReportMetric(heap[0], "heap_min_MiB")
	b.ReportMetric(heap[len(heap)-1], "heap_max_MiB")
	b.ReportMetric(pct(0.5), "small_p50_ms")
	b.ReportMetric(pct(0.99), "small_p99_ms")
}
