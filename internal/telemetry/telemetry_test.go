package telemetry_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxrelay/outbox/internal/telemetry"
)

func TestLogHandlerAddsTraceAndSpanIDs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(telemetry.LogHandler(slog.NewTextHandler(&buf, nil))).With("component", "relay")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})

	log.InfoContext(trace.ContextWithSpanContext(context.Background(), sc), "with span")
	require.Contains(t, buf.String(), "trace_id=01000000000000000000000000000000 span_id=0200000000000000")
	require.Contains(t, buf.String(), "component=relay", "WithAttrs keeps the wrapper")

	buf.Reset()
	log.InfoContext(context.Background(), "without span")
	require.NotContains(t, buf.String(), "trace_id")
}

func TestTraceContextRoundTrip(t *testing.T) {
	t.Parallel()
	tp, ts := telemetry.TraceContext(context.Background())
	require.Empty(t, tp+ts, "no span, nothing")
	_, ok := telemetry.RemoteContext(context.Background(), "", "")
	require.False(t, ok)
	_, ok = telemetry.RemoteContext(context.Background(), "00-garbage", "")
	require.False(t, ok, "a mangled traceparent is ignored")

	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{9}, SpanID: trace.SpanID{8}, TraceFlags: trace.FlagsSampled})
	tp, ts = telemetry.TraceContext(trace.ContextWithSpanContext(context.Background(), sc))
	ctx, ok := telemetry.RemoteContext(context.Background(), tp, ts)
	require.True(t, ok)
	got := trace.SpanContextFromContext(ctx)
	require.Equal(t, sc.TraceID(), got.TraceID())
	require.Equal(t, sc.SpanID(), got.SpanID())
	require.True(t, got.IsRemote())
}
