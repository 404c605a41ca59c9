package server_test

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
	"github.com/usersig/usersig/server"
)

// TestTracing: with tracing on, calls become spans and the call log line
// carries the span's trace id; health checks are not traced.
func TestTracing(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ts := startServer(t, fixtureConfig, func(ts *testServer) { ts.stats = server.TracingHandler(tp) })
	if _, err := ts.client.GenerateUserSig(ts.as(tokBackend), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u1"}); err != nil {
		t.Fatal(err)
	}
	healthpb.NewHealthClient(ts.conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	// The server ends a call's span after the client has its answer.
	waitFor(t, "the GenerateUserSig span", func() bool { return len(rec.Ended()) > 0 })
	time.Sleep(50 * time.Millisecond) // and the health check's, were it traced
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].Name() != "usersig.v1.UserSigService/GenerateUserSig" {
		names := []string{}
		for _, s := range spans {
			names = append(names, s.Name())
		}
		t.Fatalf("spans %q, want one for GenerateUserSig (health checks are not traced)", names)
	}
	id := spans[0].SpanContext().TraceID().String()
	if lines := ts.logs.lines(`"grpc.method":"GenerateUserSig"`, `"trace_id":"`+id+`"`); len(lines) != 1 {
		t.Errorf("no call log line with trace_id %s:\n%s", id, ts.logs.String())
	}
}

func TestTracingFromEnvironment(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	off, err := server.NewTracing(context.Background(), "test")
	if err != nil || off.Handler != nil || off.Shutdown(context.Background()) != nil {
		t.Errorf("without OTEL_EXPORTER_OTLP_ENDPOINT: %+v %v, want tracing off", off, err)
	}
	for _, proto := range []string{"grpc", "http/protobuf"} {
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
		t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", proto)
		on, err := server.NewTracing(context.Background(), "test")
		if err != nil || on.Handler == nil {
			t.Errorf("with OTEL_EXPORTER_OTLP_ENDPOINT and %s: %+v %v, want tracing on", proto, on, err)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 0)
		on.Shutdown(ctx) // nothing to flush; the endpoint is never dialled for real
		cancel()
	}
}

// TestTracingOverHTTP: the W3C trace context of an HTTP API request
// reaches the call: its span continues the request's trace, and the call
// log line carries the trace id.
func TestTracingOverHTTP(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ts := startServer(t, apiConfig, func(ts *testServer) { ts.stats = server.TracingHandler(tp) })
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	a := newAPIClient(ts, "http", nil).post("/v1/usersig:generate", `{"sdk_app_id": 1400000000, "user_id": "u1"}`, tokBackend,
		"Traceparent: 00-"+traceID+"-00f067aa0ba902b7-01")
	if a.code != 200 {
		t.Fatalf("%d %s", a.code, a.raw)
	}
	waitFor(t, "the GenerateUserSig span", func() bool { return len(rec.Ended()) > 0 })
	if got := rec.Ended()[0].SpanContext().TraceID().String(); got != traceID {
		t.Errorf("the call's span is in trace %s, want the request's %s", got, traceID)
	}
	if lines := ts.logs.lines(`"grpc.method":"GenerateUserSig"`, `"trace_id":"`+traceID+`"`); len(lines) != 1 {
		t.Errorf("no call log line with the request's trace_id:\n%s", ts.logs.String())
	}
}
