package server

import (
	"context"
	"os"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"
)

// Tracing is OpenTelemetry tracing of gRPC calls, on only when the
// standard OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
// variable is set. The exporter reads the other OTEL_* variables itself
// (OTEL_EXPORTER_OTLP_PROTOCOL picks grpc, the default, or http/protobuf;
// OTEL_TRACES_SAMPLER picks the sampler). Health checks are not traced.
type Tracing struct {
	// Handler instruments the gRPC server; nil when tracing is off.
	Handler stats.Handler
	// Shutdown flushes and stops the exporter; a no-op when tracing is off.
	Shutdown func(context.Context) error
}

// NewTracing sets up tracing from the environment.
func NewTracing(ctx context.Context, version string) (*Tracing, error) {
	off := &Tracing{Shutdown: func(context.Context) error { return nil }}
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return off, nil
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch proto := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"); {
	case proto == "http/protobuf", proto == "" && os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL") == "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	default:
		exp, err = otlptracegrpc.New(ctx)
	}
	if err != nil {
		return nil, err
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName("usersigd"), semconv.ServiceVersion(version)))
	if err != nil {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracing{
		Handler:  TracingHandler(tp),
		Shutdown: tp.Shutdown,
	}, nil
}

// TracingHandler is the otelgrpc server handler for a tracer provider: W3C
// trace context in, health checks out.
func TracingHandler(tp trace.TracerProvider) stats.Handler {
	return otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithPropagators(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})),
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	)
}
