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
