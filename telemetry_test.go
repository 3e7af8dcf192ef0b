package outbox_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxrelay/outbox"
)

// callerSpan returns ctx with a sampled span context, as a request's
// tracing middleware would leave it (no SDK needed: the API carries it).
func callerSpan(ctx context.Context) (context.Context, trace.SpanContext) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
		TraceState: func() trace.TraceState { ts, _ := trace.ParseTraceState("vendor=abc"); return ts }(),
	})
	return trace.ContextWithSpanContext(ctx, sc), sc
}

func (b *testBundle) traceColumns(t *testing.T) [][2]*string {
	t.Helper()
	rows, err := b.pool.Query(b.ctx, "SELECT traceparent, tracestate FROM outbox_events ORDER BY id")
	require.NoError(t, err)
	defer rows.Close()
	var out [][2]*string
	for rows.Next() {
		var tp, ts *string
		require.NoError(t, rows.Scan(&tp, &ts))
		out = append(out, [2]*string{tp, ts})
	}
	require.NoError(t, rows.Err())
	return out
}

// Without an OpenTelemetry SDK the producer makes no span of its own, and
// stores the caller's trace context: the relay's delivery span joins the
// caller's trace all the same.
func TestAppendStoresTheCallersTraceContext(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, _ := callerSpan(b.ctx)
	_, err := outbox.Append(ctx, b.pool, params("org-t", map[string]any{"a": 1}))
	require.NoError(t, err)
	_, err = outbox.AppendBatch(ctx, b.pool, []outbox.AppendParams{params("org-t", map[string]any{"b": 1}), params("org-t", map[string]any{"c": 1})})
	require.NoError(t, err)
	_, err = outbox.Append(b.ctx, b.pool, params("org-t", map[string]any{"d": 1})) // no span
	require.NoError(t, err)

	cols := b.traceColumns(t)
	require.Len(t, cols, 4)
	for _, c := range cols[:3] {
		require.NotNil(t, c[0])
		require.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", *c[0], "W3C traceparent")
		require.NotNil(t, c[1])
		require.Equal(t, "vendor=abc", *c[1], "W3C tracestate")
	}
	require.Nil(t, cols[3][0], "nothing is stored without an active span")
	require.Nil(t, cols[3][1])
}
