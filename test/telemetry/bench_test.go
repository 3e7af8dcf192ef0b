package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

// providers returns the tracer and meter providers of a run: none (the
// global no-ops: nothing recorded), or the SDK with every span sampled into
// an in-memory exporter and every metric aggregated for a reader.
func providers(b *testing.B, on bool) (outbox.Config, relay.Config) {
	if !on {
		return outbox.Config{}, relay.Config{}
	}
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(spans), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) })
	tick := time.NewTicker(time.Second)
	stop := make(chan struct{})
	b.Cleanup(func() { tick.Stop(); close(stop) })
	go func() { // keep the exporter's memory bounded
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				spans.Reset()
			}
		}
	}()
	return outbox.Config{MeterProvider: mp}, relay.Config{TracerProvider: tp, MeterProvider: mp}
}

// BenchmarkAppendCommit is one event appended and committed per op, inside
// a caller's span, with telemetry off and on side by side: the ops
// alternate between the two in blocks of 50, so both see the same server
// state, and the benchmark reports each one's rate and their ratio.
//
//	go test -run '^$' -bench AppendCommit -benchtime 10000x ./test/telemetry
func BenchmarkAppendCommit(b *testing.B) {
	const block = 50
	db := pgtest.New(b)
	var producers [2]*outbox.Producer
	for i, on := range []bool{false, true} {
		pcfg, _ := providers(b, on)
		p, err := outbox.NewProducer(pcfg)
		require.NoError(b, err)
		producers[i] = p
	}
	ctx, span := sdktrace.NewTracerProvider().Tracer("app").Start(context.Background(), "request")
	defer span.End()
	ap := outbox.AppendParams{OrganizationID: "org-bench", EventType: "invoice.paid", Payload: map[string]any{"amount": 42, "currency": "EUR"}}
	var spent [2]time.Duration
	var ops [2]int
	b.ResetTimer()
	for i := 0; i < b.N; {
		which := (i / block) % 2
		start := time.Now()
		for j := 0; j < block && i < b.N; j, i = j+1, i+1 {
			tx, err := db.Pool.Begin(ctx)
			require.NoError(b, err)
			if _, err := producers[which].Append(ctx, tx, ap); err != nil {
				b.Fatal(err)
			}
			require.NoError(b, tx.Commit(ctx))
			ops[which]++
		}
		spent[which] += time.Since(start)
	}
	report(b, float64(ops[0])/spent[0].Seconds(), float64(ops[1])/spent[1].Seconds(), "tx/s")
}

// report writes both rates and the ratio of on to off.
func report(b *testing.B, off, on float64, unit string) {
	b.ReportMetric(off, unit+"-off")
	b.ReportMetric(on, unit+"-on")
	b.ReportMetric(on/off, "on/off")
}

// BenchmarkRelayThroughput delivers a backlog of 20,000 events of 100
// organizations twice per op, once with telemetry off and once on, in
// alternating order, each into a schema of its own: it reports each one's
// rate and their ratio.
//
//	go test -run '^$' -bench RelayThroughput -benchtime 4x ./test/telemetry
func BenchmarkRelayThroughput(b *testing.B) {
	const orgs, perOrg = 100, 200
	var (
		dbs     [2]*pgtest.DB
		configs [2]relay.Config
		elapsed [2]time.Duration
	)
	fake := svixtest.New(svixtest.Options{})
	b.Cleanup(fake.Close)
	for i, on := range []bool{false, true} {
		dbs[i] = pgtest.New(b)
		_, configs[i] = providers(b, on)
		configs[i].SvixToken, configs[i].SvixServerURL, configs[i].PollOnly = fake.Token(), fake.URL(), true
		configs[i].Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	params := make([]outbox.AppendParams, 0, orgs*perOrg)
	for i := range perOrg {
		for o := range orgs {
			params = append(params, outbox.AppendParams{OrganizationID: fmt.Sprintf("org-%03d", o), EventType: "invoice.paid", Payload: map[string]any{"i": i}})
		}
	}
	b.ResetTimer()
	for n := range b.N {
		for k := range 2 {
			which := (n + k) % 2
			elapsed[which] += drain(b, dbs[which], configs[which], fake, params)
		}
	}
	events := float64(b.N * len(params))
	report(b, events/elapsed[0].Seconds(), events/elapsed[1].Seconds(), "events/s")
}

// drain appends params, runs a relay until Svix holds them all, and
// returns how long that took.
func drain(b *testing.B, db *pgtest.DB, cfg relay.Config, fake *svixtest.Server, params []outbox.AppendParams) time.Duration {
	b.StopTimer()
	_, err := outbox.AppendBatch(context.Background(), db.Pool, params)
	require.NoError(b, err)
	// The fake forgets the last drain's messages and the collector runs:
	// neither side pays for a heap the other grew.
	fake.Reset()
	runtime.GC()
	want := len(params)
	r, err := relay.New(db.Pool, cfg)
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.StartTimer()
	start := time.Now()
	go func() { done <- r.Run(ctx) }()
	waitCtx, stop := context.WithTimeout(context.Background(), 5*time.Minute)
	defer stop()
	require.NoError(b, fake.WaitForMessages(waitCtx, want))
	elapsed := time.Since(start)
	cancel()
	require.NoError(b, <-done)
	return elapsed
}
