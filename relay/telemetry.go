package relay

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jonboulle/clockwork"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxrelay/outbox/internal/telemetry"
)

// The metrics a Relay exports, by their OpenTelemetry names (a Prometheus
// exporter writes them with underscores, a unit suffix and, for counters,
// _total: outbox_events_delivered_total, outbox_delivery_latency_seconds).
// The Svix calls are measured as OpenTelemetry's HTTP client metric,
// MetricHTTPClientDuration.
const (
	// MetricEventsDelivered counts events created in Svix (or confirmed
	// there after a 409), by outbox.event.type.
	MetricEventsDelivered = "outbox.events.delivered"
	// MetricEventsRetried counts transient failures scheduled for another
	// attempt, by outbox.event.type and error.type (the HTTP status, or
	// transport, resolver, panic).
	MetricEventsRetried = "outbox.events.retried"
	// MetricEventsSkipped counts events of organizations the Resolver said
	// have no webhooks.
	MetricEventsSkipped = "outbox.events.skipped"
	// MetricEventsDeadLettered counts events refused for good or out of
	// attempts, by outbox.event.type and error.type (the HTTP status,
	// max_attempts, invalid_payload, invalid_destination).
	MetricEventsDeadLettered = "outbox.events.dead_lettered"
	// MetricRateLimited counts lane pauses after Svix answered 429.
	MetricRateLimited = "outbox.lanes.rate_limited"
	// MetricAuthFailures counts delivery pauses after Svix refused the token
	// (401, 403).
	MetricAuthFailures = "outbox.auth.failures"
	// MetricDeliveryLatency is the time from an event's append (its
	// transaction's start, PostgreSQL's now()) to Svix accepting it, in
	// seconds.
	MetricDeliveryLatency = "outbox.delivery.latency"
	// MetricBacklogEvents is the number of pending events, by
	// outbox.organization.id for the BacklogTopOrganizations organizations
	// whose oldest pending event is oldest, and "_other" for the rest
	// together: sum() is the whole backlog. Every running relay reports it:
	// aggregate replicas with max().
	MetricBacklogEvents = "outbox.backlog.events"
	// MetricBacklogOldestAge is the age of the oldest pending event, in
	// seconds, by the same organizations: max() is the whole backlog's.
	MetricBacklogOldestAge = "outbox.backlog.oldest_age"
)

// OtherOrganizations is the outbox.organization.id of the backlog series
// that aggregates the organizations not reported by name.
const OtherOrganizations = "_other"

// latencyBuckets are the delivery latency histogram's bounds, in seconds:
// from a millisecond (NOTIFY) to an hour (an outage's backlog).
var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}

// relayTelemetry is a Relay's tracer and instruments.
type relayTelemetry struct {
	clock  clockwork.Clock
	tp     trace.TracerProvider
	mp     metric.MeterProvider
	tracer trace.Tracer
	meter  metric.Meter

	delivered, retried, skipped, deadLettered, rateLimited, authFailures metric.Int64Counter
	latency                                                              metric.Float64Histogram
	backlogEvents                                                        metric.Int64ObservableGauge
	backlogAge                                                           metric.Float64ObservableGauge

	typeSets     sync.Map // event type → attribute.Set
	typeSetCount atomic.Int64
}

func newRelayTelemetry(cfg Config) *relayTelemetry {
	t := &relayTelemetry{tp: cfg.TracerProvider, mp: cfg.MeterProvider, clock: cfg.clock}
	if t.tp == nil {
		t.tp = otel.GetTracerProvider()
	}
	if t.mp == nil {
		t.mp = otel.GetMeterProvider()
	}
	t.tracer, t.meter = t.tp.Tracer(telemetry.Scope), t.mp.Meter(telemetry.Scope)
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := t.meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if err != nil {
			otel.Handle(err)
		}
		return c
	}
	t.delivered = counter(MetricEventsDelivered, "{event}", "Events created in Svix.")
	t.retried = counter(MetricEventsRetried, "{event}", "Transient delivery failures scheduled for another attempt.")
	t.skipped = counter(MetricEventsSkipped, "{event}", "Events of organizations without webhooks.")
	t.deadLettered = counter(MetricEventsDeadLettered, "{event}", "Events refused for good or out of attempts.")
	t.rateLimited = counter(MetricRateLimited, "{pause}", "Lane pauses after Svix answered 429.")
	t.authFailures = counter(MetricAuthFailures, "{pause}", "Delivery pauses after Svix refused the API token.")
	// The counters without attributes are exported at zero from the first
	// collection, so rate() and absence alerts work on an idle relay. (The
	// others are per event type, which is not known before its first event.)
	t.rateLimited.Add(context.Background(), 0)
	t.authFailures.Add(context.Background(), 0)
	var err error
	t.latency, err = t.meter.Float64Histogram(MetricDeliveryLatency, metric.WithUnit("s"),
		metric.WithDescription("Time from an event's append to Svix accepting it."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	if err != nil {
		otel.Handle(err)
	}
	t.backlogEvents, err = t.meter.Int64ObservableGauge(MetricBacklogEvents, metric.WithUnit("{event}"),
		metric.WithDescription("Pending events, by organization (the oldest first, the rest as _other)."))
	if err != nil {
		otel.Handle(err)
	}
	t.backlogAge, err = t.meter.Float64ObservableGauge(MetricBacklogOldestAge, metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest pending event, by organization."))
	if err != nil {
		otel.Handle(err)
	}
	return t
}

// startDelivery opens an event's delivery span ("process outbox_events", a
// consumer span): a child of the span that appended the event, when its
// trace context was stored (one trace from the request to the webhook),
// linked to the lane turn that sends it; a child of the turn otherwise.
func (t *relayTelemetry) startDelivery(ctx context.Context, turn trace.SpanContext, org string, ev *pendingEvent) (context.Context, trace.Span) {
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
		telemetry.MessagingSystem.String(telemetry.System),
		telemetry.MessagingOperationType.String("process"),
		telemetry.MessagingOperationName.String("deliver"),
		telemetry.MessagingDestinationName.String(telemetry.Destination),
		telemetry.MessagingMessageID.String(ev.eventID.String()),
		telemetry.OrganizationID.String(org),
		telemetry.EventType.String(ev.eventType),
		telemetry.Attempt.Int(ev.attempts),
	)}
	parent := trace.ContextWithSpanContext(ctx, turn)
	if pctx, ok := telemetry.RemoteContext(ctx, ev.traceparent, ev.tracestate); ok {
		parent = pctx
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: turn}))
	}
	return t.tracer.Start(parent, "process "+telemetry.Destination, opts...)
}

// endDelivery records what became of the event on its span. exhausted:
// a retry that the settlement turns into a dead letter (out of attempts),
// which the span says as the dead_lettered metric does.
func endDelivery(span trace.Span, res result, exhausted bool) {
	outcome, errType := res.outcome.String(), ""
	failed := false
	switch res.outcome {
	case outcomeRetry, outcomeDeadLetter, outcomeRateLimited, outcomeAuth:
		failed, errType = true, errorType(res)
	}
	if exhausted {
		outcome, errType = outcomeDeadLetter.String(), "max_attempts"
	}
	attrs := make([]attribute.KeyValue, 0, 3)
	attrs = append(attrs, telemetry.Outcome.String(outcome))
	if res.status != 0 {
		attrs = append(attrs, telemetry.HTTPResponseStatusCode.Int(res.status))
	}
	if res.outcome == outcomeDelivered {
		attrs = append(attrs, telemetry.SvixMessageID.String(res.messageID))
	}
	if failed {
		attrs = append(attrs, telemetry.ErrorType.String(errType))
	}
	span.SetAttributes(attrs...) // one call: the SDK grows its slice once
	if failed {
		span.SetStatus(codes.Error, res.err)
	}
	span.End()
}

// startSpan opens one of the relay's internal spans (claim, turn, settle).
func (t *relayTelemetry) startSpan(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return t.tracer.Start(ctx, name, trace.WithAttributes(attrs...))
}

// recordSettled counts a settled lane's outcomes: what planSettlement
// decided and the database recorded.
func (t *relayTelemetry) recordSettled(ctx context.Context, ln *lane, maxAttempts int) {
	now := t.clock.Now()
	for i := range ln.events {
		ev, res := &ln.events[i], ln.results[i]
		typ := metric.WithAttributeSet(t.eventTypeSet(ev.eventType))
		switch res.outcome {
		case outcomeDelivered:
			t.delivered.Add(ctx, 1, typ)
			at := res.at
			if at.IsZero() {
				at = now
			}
			t.latency.Record(ctx, at.Sub(ev.createdAt).Seconds(), typ)
		case outcomeSkipped:
			t.skipped.Add(ctx, 1, typ)
		case outcomeRetry:
			reason := errorType(res)
			if ev.attempts >= maxAttempts {
				t.deadLettered.Add(ctx, 1, metric.WithAttributes(telemetry.EventType.String(ev.eventType), telemetry.ErrorType.String("max_attempts")))
				continue
			}
			t.retried.Add(ctx, 1, metric.WithAttributes(telemetry.EventType.String(ev.eventType), telemetry.ErrorType.String(reason)))
		case outcomeDeadLetter:
			t.deadLettered.Add(ctx, 1, metric.WithAttributes(telemetry.EventType.String(ev.eventType), telemetry.ErrorType.String(errorType(res))))
		}
	}
	if ln.rep.rateLimited {
		t.rateLimited.Add(ctx, 1)
	}
}

// maxCachedEventTypes bounds eventTypeSet's cache: event types are a
// catalog's handful, but nothing stops a producer from minting more.
const maxCachedEventTypes = 1024

// eventTypeSet returns the attribute set {outbox.event.type: typ}, cached:
// building a set per delivered event costs a sort and an allocation.
func (t *relayTelemetry) eventTypeSet(typ string) attribute.Set {
	if s, ok := t.typeSets.Load(typ); ok {
		return s.(attribute.Set)
	}
	s := attribute.NewSet(telemetry.EventType.String(typ))
	if t.typeSetCount.Load() < maxCachedEventTypes {
		if _, loaded := t.typeSets.LoadOrStore(typ, s); !loaded {
			t.typeSetCount.Add(1)
		}
	}
	return s
}

// errorType names a failure for error.type: the HTTP status when Svix
// answered, else what failed.
func errorType(res result) string {
	switch {
	case res.status != 0:
		return strconv.Itoa(res.status)
	case strings.HasPrefix(res.err, "resolve destination"):
		return "resolver"
	case strings.HasPrefix(res.err, "panic"):
		return "panic"
	case strings.HasPrefix(res.err, "payload is not"):
		return "invalid_payload"
	case strings.HasPrefix(res.err, "destination"):
		return "invalid_destination"
	}
	return "transport"
}

// String names an outcome for the outbox.outcome attribute.
func (o outcome) String() string {
	switch o {
	case outcomeDelivered:
		return "delivered"
	case outcomeSkipped:
		return "skipped"
	case outcomeRetry:
		return "retry"
	case outcomeDeadLetter:
		return "dead_letter"
	case outcomeRateLimited:
		return "rate_limited"
	case outcomeAuth:
		return "auth_failed"
	}
	return "unsent"
}
