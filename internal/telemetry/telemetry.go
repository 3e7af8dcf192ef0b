// Package telemetry holds what the producer and the relay share for
// OpenTelemetry: the instrumentation scope, the attribute keys, the W3C
// trace context stored with an event, and the slog handler that adds trace
// and span ids to log records. It uses the OpenTelemetry API only.
package telemetry

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Scope is the instrumentation scope of every tracer and meter of outbox.
const Scope = "github.com/outboxrelay/outbox"

// Attribute keys: OpenTelemetry's messaging and error conventions where they
// exist, outbox.* for the rest.
const (
	MessagingSystem          = attribute.Key("messaging.system")
	MessagingOperationType   = attribute.Key("messaging.operation.type")
	MessagingOperationName   = attribute.Key("messaging.operation.name")
	MessagingDestinationName = attribute.Key("messaging.destination.name")
	MessagingMessageID       = attribute.Key("messaging.message.id")
	ErrorType                = attribute.Key("error.type")
	HTTPResponseStatusCode   = attribute.Key("http.response.status_code")
	HTTPRequestMethod        = attribute.Key("http.request.method")
	ServerAddress            = attribute.Key("server.address")
	ServerPort               = attribute.Key("server.port")
	URLFull                  = attribute.Key("url.full")

	OrganizationID = attribute.Key("outbox.organization.id")
	EventType      = attribute.Key("outbox.event.type")
	Attempt        = attribute.Key("outbox.attempt")
	Outcome        = attribute.Key("outbox.outcome")
	SvixMessageID  = attribute.Key("outbox.svix.message_id")
	Organizations  = attribute.Key("outbox.organizations")
	Events         = attribute.Key("outbox.events")
)

// System is messaging.system's value for outbox's spans.
const System = "outbox"

// Destination is messaging.destination.name's value: the outbox table.
const Destination = "outbox_events"

var w3c = propagation.TraceContext{}

// TraceContext returns the W3C traceparent and tracestate of the span
// active in ctx, or "" and "" when there is none.
func TraceContext(ctx context.Context) (traceparent, tracestate string) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return "", ""
	}
	c := propagation.MapCarrier{}
	w3c.Inject(ctx, c)
	return c["traceparent"], c["tracestate"]
}

// RemoteContext returns ctx with the span context that traceparent and
// tracestate describe as its remote parent, and whether they described a
// valid one.
func RemoteContext(ctx context.Context, traceparent, tracestate string) (context.Context, bool) {
	if traceparent == "" {
		return ctx, false
	}
	c := propagation.MapCarrier{"traceparent": traceparent}
	if tracestate != "" {
		c["tracestate"] = tracestate
	}
	out := w3c.Extract(ctx, c)
	return out, trace.SpanContextFromContext(out).IsRemote()
}

// LogHandler wraps h so that a record logged with a context holding a span
// carries its trace_id and span_id.
func LogHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(traceHandler); ok {
		return h
	}
	return traceHandler{h}
}

type traceHandler struct{ slog.Handler }

func (t traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone()
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return t.Handler.Handle(ctx, r)
}

func (t traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{t.Handler.WithAttrs(as)}
}

func (t traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{t.Handler.WithGroup(name)}
}
