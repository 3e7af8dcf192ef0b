package relay

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/outboxrelay/outbox/internal/telemetry"
)

// The library depends on the OpenTelemetry API only, so these tests record
// through small API implementations rather than the SDK (test/telemetry
// runs the relay under the real SDK).

// histogram records what the transport measures.
type histogram struct {
	metricnoop.Float64Histogram
	attrs []attribute.KeyValue
	n     int
}

func (h *histogram) Record(_ context.Context, _ float64, opts ...metric.RecordOption) {
	h.n++
	set := metric.NewRecordConfig(opts).Attributes()
	h.attrs = set.ToSlice()
}

type meterProvider struct {
	metricnoop.MeterProvider
	h *histogram
}

func (p meterProvider) Meter(string, ...metric.MeterOption) metric.Meter { return meter{h: p.h} }

type meter struct {
	metricnoop.Meter
	h *histogram
}

func (m meter) Float64Histogram(string, ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	return m.h, nil
}

// span records its attributes and events.
type span struct {
	tracenoop.Span
	attrs  []attribute.KeyValue
	events map[string][]attribute.KeyValue
}

func (s *span) IsRecording() bool                      { return true }
func (s *span) SetAttributes(kv ...attribute.KeyValue) { s.attrs = append(s.attrs, kv...) }
func (s *span) AddEvent(name string, o ...trace.EventOption) {
	c := trace.NewEventConfig(o...)
	s.events[name] = c.Attributes()
}

type answer struct {
	status int
	err    error
}

func (a answer) RoundTrip(*http.Request) (*http.Response, error) {
	if a.err != nil {
		return nil, a.err
	}
	return &http.Response{StatusCode: a.status, Body: http.NoBody}, nil
}

// Each Svix call is measured by status or error, and leaves on the span
// that made it its status (a success) or an event (a failure), with no
// credentials or query in the URL.
func TestHTTPTelemetry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		answer    answer
		url       string
		metric    []attribute.KeyValue
		spanEvent bool
	}{
		{"created", answer{status: 202}, "https://api.eu.svix.com/api/v1/app/org_1/msg",
			[]attribute.KeyValue{telemetry.HTTPRequestMethod.String("POST"), telemetry.ServerAddress.String("api.eu.svix.com"), telemetry.ServerPort.Int(443), telemetry.HTTPResponseStatusCode.Int(202)}, false},
		{"refused", answer{status: 503}, "http://127.0.0.1:8071/api/v1/app/org_1/msg?x=1",
			[]attribute.KeyValue{telemetry.HTTPRequestMethod.String("POST"), telemetry.ServerAddress.String("127.0.0.1"), telemetry.ServerPort.Int(8071), telemetry.HTTPResponseStatusCode.Int(503), telemetry.ErrorType.String("503")}, true},
		{"transport", answer{err: errors.New("connection reset")}, "http://u:secret@svix.internal/api/v1/app/org_1/msg",
			[]attribute.KeyValue{telemetry.HTTPRequestMethod.String("POST"), telemetry.ServerAddress.String("svix.internal"), telemetry.ServerPort.Int(80), telemetry.ErrorType.String("transport")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := &histogram{}
			tel := newRelayTelemetry(Config{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: meterProvider{h: h}, clock: clockwork.NewRealClock()})
			rt := tel.httpTransport(tc.answer)
			sp := &span{events: map[string][]attribute.KeyValue{}}
			ctx := trace.ContextWithSpan(context.Background(), sp)
			u, err := url.Parse(tc.url)
			require.NoError(t, err)
			req := (&http.Request{Method: http.MethodPost, URL: u, Header: http.Header{}}).WithContext(ctx)
			_, err = rt.RoundTrip(req)
			require.Equal(t, tc.answer.err, err)

			require.Equal(t, 1, h.n, "one measurement per call")
			require.ElementsMatch(t, tc.metric, h.attrs)
			if !tc.spanEvent {
				require.Empty(t, sp.events)
				require.Contains(t, sp.attrs, telemetry.HTTPResponseStatusCode.Int(tc.answer.status))
				return
			}
			event, ok := sp.events["svix call failed"]
			require.True(t, ok)
			var full string
			for _, a := range event {
				if a.Key == telemetry.URLFull {
					full = a.Value.AsString()
				}
			}
			require.NotContains(t, full, "secret")
			require.NotContains(t, full, "?")
			require.Contains(t, full, "/api/v1/app/org_1/msg")
		})
	}
}
