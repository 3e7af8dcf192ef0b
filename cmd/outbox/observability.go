package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// observability is what `outbox relay` exports: metrics for /metrics
// always, traces over OTLP when an endpoint is set.
type observability struct {
	meters  metric.MeterProvider
	tracers trace.TracerProvider
	metrics http.Handler
	// shutdown flushes the spans still buffered.
	shutdown func(context.Context) error
}

// otlpTracesConfigured reports whether the standard environment names an
// OTLP endpoint for traces.
func otlpTracesConfigured(env *environment) bool {
	return env.getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || env.getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// newObservability sets up the meter provider behind /metrics (the
// OpenTelemetry Prometheus exporter, with the Go runtime's and the process's
// collectors beside it) and, when otlpEndpoint is set or the OTEL_EXPORTER_OTLP_*
// variables name one, a tracer provider exporting over OTLP/HTTP (sampling
// per OTEL_TRACES_SAMPLER, parent-based always-on by default). Without an
// endpoint, no span is recorded.
func newObservability(ctx context.Context, env *environment, otlpEndpoint string) (*observability, error) {
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(serviceName(env))))
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter), sdkmetric.WithResource(res))
	o := &observability{
		meters:  mp,
		tracers: noop.NewTracerProvider(),
		metrics: promhttp.HandlerFor(registry, promhttp.HandlerOpts{}),
	}
	shutdowns := []func(context.Context) error{mp.Shutdown}
	if otlpEndpoint != "" || otlpTracesConfigured(env) {
		var opts []otlptracehttp.Option
		if otlpEndpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(otlpEndpoint))
		}
		spans, err := otlptracehttp.New(ctx, opts...)
		if err != nil {
			return nil, usagef("--otlp-endpoint: %v", err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(spans), sdktrace.WithResource(res))
		o.tracers = tp
		shutdowns = append(shutdowns, tp.Shutdown)
	}
	o.shutdown = func(ctx context.Context) error {
		var errs []error
		for _, s := range shutdowns {
			errs = append(errs, s(ctx))
		}
		return errors.Join(errs...)
	}
	return o, nil
}

// serviceName is OTEL_SERVICE_NAME, or "outbox-relay".
func serviceName(env *environment) string {
	if s := env.getenv("OTEL_SERVICE_NAME"); s != "" {
		return s
	}
	return "outbox-relay"
}

// close flushes what is buffered, for at most 5 seconds.
func (o *observability) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = o.shutdown(ctx)
}
