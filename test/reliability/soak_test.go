package reliability

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/testnet"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
)

// soakDuration is how long TestSoak runs: $OUTBOX_SOAK (a Go duration),
// 60 s by default. The documented long run is OUTBOX_SOAK=10m.
func soakDuration(t *testing.T) time.Duration {
	if v := os.Getenv("OUTBOX_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "OUTBOX_SOAK")
		return d
	}
	return time.Minute
}

// soakSample is one row of the soak report.
type soakSample struct {
	at                  time.Duration
	heapMB              []float64
	goroutines          []int
	hotRows, deadTuples int
	p50, p99            time.Duration
	delivered           int
}

// 9. Producers and relays at a steady 200 events/s for a while: memory and
// goroutines stay flat, the hot table stays small, dead tuples are
// vacuumed, latency holds.
func TestSoak(t *testing.T) {
	duration := soakDuration(t)
	e := newEnv(t, svixtest.Options{Latency: 2 * time.Millisecond, DisableRequestLog: true})
	var relays []*relayProc
	for i := range 2 {
		addr := fmt.Sprintf("127.0.0.1:%d", testnet.FreePort(t))
		relays = append(relays, e.startRelay(fmt.Sprintf("relay-%d", i), e.token, "--http-addr", addr))
	}
	ctx, stop := context.WithCancel(e.ctx)
	producers := e.produce(ctx, 2, producer{orgs: 20, rollbackRate: 0.05, rate: 200})

	every := max(duration/12, 2*time.Second)
	var samples []soakSample
	seen := 0
	start := time.Now()
	for time.Since(start) < duration {
		time.Sleep(every)
		s := soakSample{at: time.Since(start).Round(time.Second), hotRows: e.pending()}
		for _, p := range relays {
			var vars struct {
				Memstats   struct{ HeapAlloc uint64 }
				Goroutines int
			}
			require.NoError(t, getJSON(p.http+"/debug/vars", &vars))
			s.heapMB = append(s.heapMB, float64(vars.Memstats.HeapAlloc)/(1<<20))
			s.goroutines = append(s.goroutines, vars.Goroutines)
		}
		require.NoError(t, e.pool.QueryRow(e.ctx, `SELECT coalesce(n_dead_tup, 0) FROM pg_stat_user_tables
			WHERE schemaname = $1 AND relname = 'outbox_events'`, e.schema).Scan(&s.deadTuples))
		s.p50, s.p99, seen = e.windowLatency(seen)
		s.delivered = seen
		samples = append(samples, s)
	}
	stop()
	producers.Wait()
	res := e.audit(time.Minute, nil)

	table := soakTable(samples)
	t.Logf("soak for %s at 200 events/s:\n%s", duration, table)
	if path := os.Getenv("SOAK_REPORT"); path != "" {
		require.NoError(t, os.WriteFile(path, []byte(table), 0o644))
	}
	// Flat, not constant: goroutines and heap follow the calls in flight,
	// which vary with load. A leak at 200 events/s would add thousands of
	// goroutines or megabytes a minute; the bounds leave room for the rest.
	early := samples[:max(1, len(samples)/3)]
	last := samples[len(samples)-1]
	maxHot := 0
	for _, s := range samples {
		maxHot = max(maxHot, s.hotRows)
	}
	for i := range relays {
		var goroutines int
		var heap float64
		for _, s := range early {
			goroutines, heap = max(goroutines, s.goroutines[i]), max(heap, s.heapMB[i])
		}
		require.LessOrEqual(t, last.goroutines[i], goroutines+50, "relay %d goroutines grew", i)
		require.LessOrEqual(t, last.heapMB[i], heap*3+16, "relay %d heap grew", i)
	}
	require.Less(t, maxHot, 1000, "the hot table should stay small at a rate the relays keep up with")
	fig := res.figures()
	fig["seconds"], fig["max_hot_rows"] = duration.Seconds(), maxHot
	report(t, "soak", fig)
}

// windowLatency returns commit→create percentiles of the messages created
// since the first `seen` ones, and the new count.
func (e *env) windowLatency(seen int) (p50, p99 time.Duration, total int) {
	msgs := e.fake.Messages()
	var lat []time.Duration
	e.mu.Lock()
	for _, m := range msgs[min(seen, len(msgs)):] {
		if at, ok := e.commitAt[m.EventID]; ok {
			lat = append(lat, m.Timestamp.Sub(at))
		}
	}
	e.mu.Unlock()
	if len(lat) == 0 {
		return 0, 0, len(msgs)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat[len(lat)/2], lat[(len(lat)-1)*99/100], len(msgs)
}

func soakTable(samples []soakSample) string {
	var b strings.Builder
	b.WriteString("| t | relay heap MB | relay goroutines | hot rows | dead tuples | delivered | p50 | p99 |\n|---|---|---|---|---|---|---|---|\n")
	for _, s := range samples {
		heap := make([]string, len(s.heapMB))
		for i, h := range s.heapMB {
			heap[i] = fmt.Sprintf("%.1f", h)
		}
		fmt.Fprintf(&b, "| %s | %s | %v | %d | %d | %d | %s | %s |\n", s.at, strings.Join(heap, " / "),
			strings.Trim(strings.ReplaceAll(fmt.Sprint(s.goroutines), " ", " / "), "[]"), s.hotRows, s.deadTuples, s.delivered,
			s.p50.Round(100*time.Microsecond), s.p99.Round(100*time.Microsecond))
	}
	return b.String()
}
