// Package telemetry tests what outbox records through the OpenTelemetry
// SDK: the traces from a producer's span to the delivery span, the relay's
// metrics, the backlog gauges, and the cost of it all. It is a module of
// its own so the SDK stays out of the library's go.mod: the library
// depends on the OpenTelemetry API only.
package telemetry

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/internal/syncbuf"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// bundle is a schema, a Svix fake, and an SDK recording every span in
// memory and every metric for a manual reader.
type bundle struct {
	ctx      context.Context
	db       *pgtest.DB
	fake     *svixtest.Server
	spans    *tracetest.InMemoryExporter
	tp       *sdktrace.TracerProvider
	reader   *sdkmetric.ManualReader
	mp       *sdkmetric.MeterProvider
	producer *outbox.Producer
	logs     *syncbuf.Buffer
}

func setup(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{ctx: context.Background(), db: pgtest.New(t), fake: svixtest.NewT(t, svixtest.Options{}),
		spans: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader(), logs: &syncbuf.Buffer{}}
	b.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(b.spans), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(b.reader))
	t.Cleanup(func() { _ = b.tp.Shutdown(context.Background()); _ = b.mp.Shutdown(context.Background()) })
	var err error
	b.producer, err = outbox.NewProducer(outbox.Config{MeterProvider: b.mp})
	require.NoError(t, err)
	return b
}

func (b *bundle) relayConfig() relay.Config {
	return relay.Config{
		SvixToken: b.fake.Token(), SvixServerURL: b.fake.URL(), Channel: "outbox_" + b.db.Schema,
		PollInterval: 100 * time.Millisecond, RetryBaseDelay: 10 * time.Millisecond, RetryMaxDelay: 20 * time.Millisecond,
		QuickRetries: -1, TracerProvider: b.tp, MeterProvider: b.mp,
		Logger: slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
}

// run runs a relay with cfg until the test ends.
func (b *bundle) run(t *testing.T, cfg relay.Config) *relay.Relay {
	t.Helper()
	r, err := relay.New(b.db.Pool, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	return r
}

func (b *bundle) waitPending(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		var got int
		require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_events").Scan(&got))
		return got == n
	}, 15*time.Second, 10*time.Millisecond, "pending events; logs:\n%s", b.logs)
}

// collect reads every metric, by name.
func (b *bundle) collect(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, b.reader.Collect(b.ctx, &rm))
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// sum adds up a counter's points whose attributes include want.
func sum(t *testing.T, m metricdata.Metrics, want map[string]string) int64 {
	t.Helper()
	s, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is an int64 sum", m.Name)
	var n int64
	for _, dp := range s.DataPoints {
		if matches(dp.Attributes.ToSlice(), want) {
			n += dp.Value
		}
	}
	return n
}

func matches(attrs []attribute.KeyValue, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, a := range attrs {
			if string(a.Key) == k && a.Value.String() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
