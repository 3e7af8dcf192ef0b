package relay

import (
	"net"
	"net/http"
	"strconv"
	"sync"

	"github.com/jonboulle/clockwork"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxrelay/outbox/internal/telemetry"
)

// MetricHTTPClientDuration is OpenTelemetry's HTTP client metric, recorded
// for every Svix call: the time to the response's headers, in seconds, by
// http.request.method, server.address, server.port and
// http.response.status_code (or error.type when no response came).
const MetricHTTPClientDuration = "http.client.request.duration"

// httpDurationBuckets are the HTTP semantic conventions' advised bounds.
var httpDurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// httpTelemetry measures the Svix calls as http.client.request.duration
// and records each failed call as an event of the delivery span that made
// it. It opens no client span per call: a second span per event measured
// a tenth of the relay's throughput with tracing on (the SDK's cost per
// span), and the delivery span already carries the status; the failed
// calls that a delivery retried within its turn stay visible as its
// events. No trace header goes to Svix.
type httpTelemetry struct {
	next     http.RoundTripper
	clock    clockwork.Clock
	duration metric.Float64Histogram
	// sets caches the metric attribute sets, by method, host, port and
	// status or error: a handful of distinct values.
	sets sync.Map
}

func (t *relayTelemetry) httpTransport(rt http.RoundTripper) http.RoundTripper {
	h := &httpTelemetry{next: rt, clock: t.clock}
	var err error
	h.duration, err = t.meter.Float64Histogram(MetricHTTPClientDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of HTTP client requests."),
		metric.WithExplicitBucketBoundaries(httpDurationBuckets...))
	if err != nil {
		otel.Handle(err)
	}
	return h
}

// RoundTrip sends req and records its duration; on the caller's span (the
// event's delivery span), the status of a success or an event for a
// failure.
func (h *httpTelemetry) RoundTrip(req *http.Request) (*http.Response, error) {
	start := h.clock.Now()
	resp, err := h.next.RoundTrip(req)
	elapsed := h.clock.Since(start)
	status, errorType := 0, ""
	switch {
	case err != nil:
		errorType = "transport"
	case resp.StatusCode >= 400:
		status, errorType = resp.StatusCode, strconv.Itoa(resp.StatusCode)
	default:
		status = resp.StatusCode
	}
	host, port := serverOf(req)
	ctx := req.Context()
	h.duration.Record(ctx, elapsed.Seconds(), metric.WithAttributeSet(h.attributes(req.Method, host, port, status, errorType)))
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return resp, err
	}
	if errorType == "" { // the delivery span says what Svix answered
		span.SetAttributes(telemetry.HTTPResponseStatusCode.Int(status))
	} else {
		attrs := []attribute.KeyValue{telemetry.HTTPRequestMethod.String(req.Method), telemetry.URLFull.String(redactedURL(req)),
			telemetry.ErrorType.String(errorType), attribute.Float64("http.client.request.duration", elapsed.Seconds())}
		if status != 0 {
			attrs = append(attrs, telemetry.HTTPResponseStatusCode.Int(status))
		}
		if err != nil {
			attrs = append(attrs, attribute.String("exception.message", err.Error()))
		}
		span.AddEvent("svix call failed", trace.WithAttributes(attrs...))
	}
	return resp, err
}

// setKey identifies one metric attribute set.
type setKey struct {
	method, host, errorType string
	port, status            int
}

// attributes returns the cached attribute set of a call's metric.
func (h *httpTelemetry) attributes(method, host string, port, status int, errorType string) attribute.Set {
	key := setKey{method: method, host: host, port: port, status: status, errorType: errorType}
	if s, ok := h.sets.Load(key); ok {
		return s.(attribute.Set)
	}
	kvs := []attribute.KeyValue{telemetry.HTTPRequestMethod.String(method), telemetry.ServerAddress.String(host), telemetry.ServerPort.Int(port)}
	if status != 0 {
		kvs = append(kvs, telemetry.HTTPResponseStatusCode.Int(status))
	}
	if errorType != "" {
		kvs = append(kvs, telemetry.ErrorType.String(errorType))
	}
	s := attribute.NewSet(kvs...)
	h.sets.Store(key, s)
	return s
}

// serverOf returns the host and port a request goes to (the scheme's
// default port when the URL names none).
func serverOf(req *http.Request) (string, int) {
	host, portText, err := net.SplitHostPort(req.URL.Host)
	if err != nil {
		host = req.URL.Host
		portText = "443"
		if req.URL.Scheme == "http" {
			portText = "80"
		}
	}
	port, _ := strconv.Atoi(portText)
	return host, port
}

// redactedURL is the request's URL without credentials or query (the
// conventions' url.full; Svix's paths hold ids only).
func redactedURL(req *http.Request) string {
	u := *req.URL
	u.User, u.RawQuery, u.ForceQuery = nil, "", false
	return u.String()
}
