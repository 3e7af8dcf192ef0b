package telemetry

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

func attr(s tracetest.SpanStub, key string) (attribute.Value, bool) {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

func spansNamed(stubs tracetest.SpanStubs, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range stubs {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// The trace goes on from the request that appended the event to the
// delivery that created it in Svix.
func TestTraceContinuesFromTheRequestToTheDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.run(t, b.relayConfig())
	ctx, request := b.tp.Tracer("app").Start(b.ctx, "POST /invoices")
	var res outbox.AppendResult
	err := outbox.WithTx(ctx, b.db.Pool, r, func(tx *outbox.Tx) error {
		var err error
		res, err = b.producer.Append(ctx, tx, outbox.AppendParams{OrganizationID: "org-trace", EventType: "invoice.paid", Payload: map[string]any{"n": 1}})
		return err
	})
	require.NoError(t, err)
	request.End()
	b.waitPending(t, 0)

	var spans tracetest.SpanStubs
	require.Eventually(t, func() bool {
		spans = b.spans.GetSpans()
		return len(spansNamed(spans, "process outbox_events")) == 1 && len(spansNamed(spans, "turn outbox_lanes")) >= 1
	}, 5*time.Second, 10*time.Millisecond)
	require.Empty(t, spansNamed(spans, "create outbox_events"), "the append opens no span of its own")

	deliver := spansNamed(spans, "process outbox_events")[0]
	require.Equal(t, request.SpanContext().TraceID(), deliver.SpanContext.TraceID(), "one trace from the request to the webhook")
	require.Equal(t, request.SpanContext().SpanID(), deliver.Parent.SpanID(), "the delivery is a child of the request that appended")
	require.True(t, deliver.Parent.IsRemote(), "its parent came through the table")
	require.Equal(t, trace.SpanKindConsumer, deliver.SpanKind)
	require.Len(t, deliver.Links, 1, "linked to the lane turn that sent it")
	turns := spansNamed(spans, "turn outbox_lanes")
	require.Equal(t, turns[0].SpanContext.SpanID(), deliver.Links[0].SpanContext.SpanID())

	msgs := b.fake.MessagesFor("org-trace")
	require.Len(t, msgs, 1)
	for key, want := range map[string]string{
		"outbox.organization.id": "org-trace", "outbox.event.type": "invoice.paid", "messaging.message.id": res.EventID.String(),
		"outbox.attempt": "1", "outbox.outcome": "delivered", "outbox.svix.message_id": msgs[0].ID, "messaging.system": "outbox",
	} {
		v, ok := attr(deliver, key)
		require.True(t, ok, "delivery span has %s", key)
		require.Equal(t, want, v.String(), key)
	}

	status, ok := attr(deliver, "http.response.status_code")
	require.True(t, ok)
	require.Equal(t, int64(200), status.AsInt64()/100*100, "2xx")
	require.Empty(t, deliver.Events, "a call that succeeded first time leaves no event")
	require.NotEmpty(t, spansNamed(spans, "claim outbox_lanes"))
	require.NotEmpty(t, spansNamed(spans, "settle outbox_lanes"))
}

// Retries and dead letters are counted by reason, and their spans say why.
func TestRetriesAndDeadLettersAreRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.run(t, b.relayConfig())
	b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultStatus, Status: 503, Times: 1})
	_, err := b.producer.Append(b.ctx, b.db.Pool, outbox.AppendParams{OrganizationID: "org-flaky", EventType: "invoice.paid", Payload: map[string]any{"n": 1}})
	require.NoError(t, err)
	b.waitPending(t, 0)
	b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultStatus, Status: 422, Times: 1})
	_, err = b.producer.Append(b.ctx, b.db.Pool, outbox.AppendParams{OrganizationID: "org-bad", EventType: "invoice.voided", Payload: map[string]any{"n": 2}})
	require.NoError(t, err)
	b.waitPending(t, 0)

	// The counters are added once the settlement has committed, which
	// waitPending saw: wait for the last one.
	var m map[string]metricdata.Metrics
	require.Eventually(t, func() bool {
		m = b.collect(t)
		dl, ok := m[relay.MetricEventsDeadLettered].Data.(metricdata.Sum[int64])
		dv, ok2 := m[relay.MetricEventsDelivered].Data.(metricdata.Sum[int64])
		rt, ok3 := m[relay.MetricEventsRetried].Data.(metricdata.Sum[int64])
		return ok && ok2 && ok3 && len(dl.DataPoints) > 0 && len(dv.DataPoints) > 0 && len(rt.DataPoints) > 0
	}, 10*time.Second, 5*time.Millisecond, "the dead letter is counted")
	require.Equal(t, int64(1), sum(t, m[relay.MetricEventsRetried], map[string]string{"error.type": "503", "outbox.event.type": "invoice.paid"}))
	require.Equal(t, int64(1), sum(t, m[relay.MetricEventsDelivered], map[string]string{"outbox.event.type": "invoice.paid"}))
	require.Equal(t, int64(1), sum(t, m[relay.MetricEventsDeadLettered], map[string]string{"error.type": "422", "outbox.event.type": "invoice.voided"}))
	require.Equal(t, int64(0), sum(t, m[relay.MetricEventsDelivered], map[string]string{"outbox.event.type": "invoice.voided"}))
	require.Equal(t, int64(2), sum(t, m[outbox.MetricEventsAppended], nil))

	hist, ok := m[relay.MetricDeliveryLatency].Data.(metricdata.Histogram[float64])
	require.True(t, ok)
	require.Len(t, hist.DataPoints, 1)
	require.Equal(t, uint64(1), hist.DataPoints[0].Count, "one latency per delivered event")
	require.Greater(t, hist.DataPoints[0].Sum, 0.0)
	_, ok = m["http.client.request.duration"]
	require.True(t, ok, "the Svix calls are measured")

	outcomes := map[string]codes.Code{}
	for _, s := range spansNamed(b.spans.GetSpans(), "process outbox_events") {
		o, _ := attr(s, "outbox.outcome")
		outcomes[o.String()] = s.Status.Code
		if o.String() != "delivered" {
			et, _ := attr(s, "error.type")
			st, _ := attr(s, "http.response.status_code")
			require.Equal(t, strconv.Itoa(int(st.AsInt64())), et.String())
			require.Len(t, s.Events, 1, "the failed Svix call is an event of the span")
			require.Equal(t, "svix call failed", s.Events[0].Name)
			require.Contains(t, s.Events[0].Attributes, attribute.Int("http.response.status_code", int(st.AsInt64())))
		}
	}
	require.Equal(t, map[string]codes.Code{"retry": codes.Error, "delivered": codes.Unset, "dead_letter": codes.Error}, outcomes)
}

// The backlog gauges say what the table holds, naming only the
// organizations whose oldest event is oldest.
func TestBacklogGaugesMatchTheTable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ages := map[string]time.Duration{"org-a": time.Hour, "org-b": 30 * time.Minute, "org-c": 10 * time.Minute, "org-d": time.Minute}
	counts := map[string]int{"org-a": 2, "org-b": 3, "org-c": 4, "org-d": 5}
	for org, n := range counts {
		for range n {
			_, err := outbox.Append(b.ctx, b.db.Pool, outbox.AppendParams{OrganizationID: org, EventType: "e.t", Payload: map[string]any{}})
			require.NoError(t, err)
		}
		_, err := b.db.Pool.Exec(b.ctx, "UPDATE outbox_events SET created_at = now() - $2 * interval '1 second' WHERE organization_id = $1",
			org, ages[org].Seconds())
		require.NoError(t, err)
	}
	cfg := b.relayConfig()
	cfg.BacklogTopOrganizations = 2
	cfg.Delegate = outbox.NopSignaler // the relay sweeps and reports, and delivers nothing
	b.run(t, cfg)
	var m map[string]metricdata.Metrics
	require.Eventually(t, func() bool { // Run registers the gauges as it starts
		m = b.collect(t)
		_, events := m[relay.MetricBacklogEvents]
		_, age := m[relay.MetricBacklogOldestAge]
		return events && age
	}, 15*time.Second, 10*time.Millisecond, "the backlog gauges are observed; logs:\n%s", b.logs)
	events := gauge[int64](t, m[relay.MetricBacklogEvents])
	age := gauge[float64](t, m[relay.MetricBacklogOldestAge])
	require.Equal(t, map[string]int64{"org-a": 2, "org-b": 3, relay.OtherOrganizations: 9}, events, "the two oldest by name, the rest together")
	require.Len(t, age, 3, "the cardinality stays capped")
	require.InDelta(t, time.Hour.Seconds(), age["org-a"], 5)
	require.InDelta(t, (30 * time.Minute).Seconds(), age["org-b"], 5)
	require.InDelta(t, (10 * time.Minute).Seconds(), age[relay.OtherOrganizations], 5, "the rest's oldest")
}

// gauge returns a gauge's points by outbox.organization.id.
func gauge[N int64 | float64](t *testing.T, m metricdata.Metrics) map[string]N {
	t.Helper()
	g, ok := m.Data.(metricdata.Gauge[N])
	require.True(t, ok, "%s is a gauge", m.Name)
	out := map[string]N{}
	for _, dp := range g.DataPoints {
		org, _ := dp.Attributes.Value("outbox.organization.id")
		out[org.String()] = dp.Value
	}
	return out
}

// A log record written during a delivery carries its trace.
func TestRelayLogsCarryTraceIDs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.relayConfig()
	cfg.HTTPClient = &http.Client{Transport: panicking{}} // a bug under the Svix call
	b.run(t, cfg)
	ctx, request := b.tp.Tracer("app").Start(b.ctx, "request")
	_, err := b.producer.Append(ctx, b.db.Pool, outbox.AppendParams{OrganizationID: "org-log", EventType: "e.t", Payload: map[string]any{}})
	require.NoError(t, err)
	request.End()
	require.Eventually(t, func() bool { return strings.Contains(b.logs.String(), "panic while sending") }, 10*time.Second, 10*time.Millisecond)
	require.Contains(t, b.logs.String(), "trace_id="+request.SpanContext().TraceID().String(), "the error names the event's trace")
}

type panicking struct{}

func (panicking) RoundTrip(*http.Request) (*http.Response, error) { panic("transport bug") }

// An event out of attempts says so on its span as the metric does: a dead
// letter for max_attempts, not a retry.
func TestLastAttemptIsADeadLetterOnItsSpan(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.relayConfig()
	cfg.MaxAttempts = 1
	b.run(t, cfg)
	b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultStatus, Status: 503, Times: 1})
	_, err := b.producer.Append(b.ctx, b.db.Pool, outbox.AppendParams{OrganizationID: "org-last", EventType: "invoice.paid", Payload: map[string]any{"n": 1}})
	require.NoError(t, err)
	b.waitPending(t, 0)

	m := b.collect(t)
	require.Equal(t, int64(1), sum(t, m[relay.MetricEventsDeadLettered], map[string]string{"error.type": "max_attempts"}))
	spans := spansNamed(b.spans.GetSpans(), "process outbox_events")
	require.Len(t, spans, 1)
	o, _ := attr(spans[0], "outbox.outcome")
	et, _ := attr(spans[0], "error.type")
	require.Equal(t, "dead_letter", o.String())
	require.Equal(t, "max_attempts", et.String())
}
