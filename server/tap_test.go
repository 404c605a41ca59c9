package server_test

import (
	"context"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/usersig/usersig/bench/streamattack"
	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
)

// metric reads one series' value from /metrics ("" when absent).
func (ts *testServer) metric(series string) string {
	ts.t.Helper()
	_, body := ts.httpGet("/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// holdStreams opens n streams that send headers and never a request, 32
// to a connection (the server's limit), and waits until they are sent.
// They are held until the test ends; the result is the first
// connection's attack, for n up to 32.
func (ts *testServer) holdStreams(n int, method, authorization string) *streamattack.Running {
	ts.t.Helper()
	var first *streamattack.Running
	for n > 0 {
		k := min(n, 32)
		n -= k
		r, err := streamattack.Attack{Addr: ts.srv.GRPCAddr(), Conns: 1, Streams: k, Method: method, Authorization: authorization}.Start(context.Background())
		if err != nil {
			ts.t.Fatal(err)
		}
		ts.t.Cleanup(func() { r.Stop() })
		select {
		case <-r.Sent():
		case <-time.After(10 * time.Second):
			ts.t.Fatal("the streams were not sent within 10s")
		}
		if first == nil {
			first = r
		}
	}
	return first
}

// TestTapRefusesWithoutCredentials: a stream to UserSigService without
// valid credentials is answered UNAUTHENTICATED from its headers alone,
// counted by reason, and holds nothing; health and reflection stay open.
func TestTapRefusesWithoutCredentials(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	for _, c := range []struct {
		auth, reason string
	}{
		{"", "no_token"},
		{"Basic dXNlcjpwYXNz", "not_bearer"},
		{"Bearer not-a-token-of-anyone", "unknown_token"},
	} {
		r := ts.holdStreams(20, "", c.auth)
		waitFor(t, "20 refusals for "+c.reason, func() bool { return ts.metric(`usersig_auth_failures_total{reason="`+c.reason+`"}`) == "20" })
		if got := r.Stop(); got.Codes[codes.Unauthenticated] != 20 {
			t.Errorf("%s: the server answered %v, want 20 UNAUTHENTICATED", c.reason, got)
		}
	}
	if got := ts.metric(`usersig_calls_in_flight{class="caller"}`); got != "0" {
		t.Errorf("streams refused on arrival hold %s caller slots", got)
	}
	// The same streams to health and reflection are admitted: they wait for
	// their requests.
	ts.holdStreams(3, "/grpc.health.v1.Health/Check", "")
	ts.holdStreams(2, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "Bearer not-a-token-of-anyone")
	waitFor(t, "3 anonymous calls and 2 anonymous streams in flight", func() bool {
		return ts.metric(`usersig_calls_in_flight{class="anonymous"}`) == "3" && ts.metric(`usersig_calls_in_flight{class="anonymous_stream"}`) == "2"
	})
}

// TestTapLimits: with grpc.max_concurrent_calls 3 and a 500ms
// grpc.max_call_duration, three streams whose request never comes hold
// every caller slot, so further calls are refused at once with
// RESOURCE_EXHAUSTED (counted), for other callers too; the slots come back
// when the server cancels the stalled streams, and calls succeed again.
func TestTapLimits(t *testing.T) {
	config := strings.Replace(fixtureConfig, "grpc:\n  listen: 127.0.0.1:0", "grpc:\n  listen: 127.0.0.1:0\n  max_concurrent_calls: 3\n  max_call_duration: 500ms", 1)
	ts := startServer(t, config)
	stalled := ts.holdStreams(3, "", "Bearer "+tokBackend)
	waitFor(t, "3 caller streams in flight", func() bool { return ts.metric(`usersig_calls_in_flight{class="caller"}`) == "3" })

	start := time.Now()
	_, err := ts.client.GenerateUserSig(ts.as(tokWeb), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u_1"})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "limit of concurrent calls") {
		t.Errorf("a call while every slot is held: %v, want RESOURCE_EXHAUSTED", err)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Errorf("the refusal took %v; it should not wait for a slot", d)
	}
	if got := ts.metric(`usersig_calls_refused_total{limit="max_concurrent_calls"}`); got != "1" {
		t.Errorf("usersig_calls_refused_total{limit=max_concurrent_calls} = %q, want 1", got)
	}
	// A caller's health check takes a caller slot too; an anonymous one
	// does not.
	if _, err := healthpb.NewHealthClient(ts.conn).Check(ts.as(tokWeb), &healthpb.HealthCheckRequest{}); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a caller's health check while every caller slot is held: %v, want RESOURCE_EXHAUSTED", err)
	}
	if _, err := healthpb.NewHealthClient(ts.conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("an anonymous health check while every caller slot is held: %v", err)
	}

	// max_call_duration after their headers, the stalled streams are
	// cancelled and their slots released.
	waitFor(t, "the stalled streams to be cancelled", func() bool { return ts.metric(`usersig_calls_in_flight{class="caller"}`) == "0" })
	if _, err := ts.client.GenerateUserSig(ts.as(tokWeb), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u_1"}); err != nil {
		t.Errorf("a call after the stalled streams ended: %v", err)
	}
	if got := stalled.Stop(); got.Codes[codes.DeadlineExceeded] != 3 {
		t.Errorf("the stalled streams ended %v, want 3 DEADLINE_EXCEEDED", got)
	}
}

// TestTapAnonymousLimit: stalled health checks without credentials take
// every anonymous slot (256), and stalled anonymous Watch streams every
// anonymous streaming slot (128); then anonymous ones are refused with
// RESOURCE_EXHAUSTED, while a caller's health checks, Watch and calls go
// on. A call without credentials may not carry more than 2 KiB of headers.
func TestTapAnonymousLimit(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	ts.holdStreams(256, "/grpc.health.v1.Health/Check", "")
	ts.holdStreams(128, "/grpc.health.v1.Health/Watch", "")
	waitFor(t, "256 anonymous calls and 128 anonymous streams in flight", func() bool {
		return ts.metric(`usersig_calls_in_flight{class="anonymous"}`) == "256" && ts.metric(`usersig_calls_in_flight{class="anonymous_stream"}`) == "128"
	})

	health := healthpb.NewHealthClient(ts.conn)
	_, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "without credentials") {
		t.Errorf("an anonymous health check with every anonymous slot held: %v, want RESOURCE_EXHAUSTED", err)
	}
	if got := ts.metric(`usersig_calls_refused_total{limit="max_anonymous_calls"}`); got != "1" {
		t.Errorf("usersig_calls_refused_total{limit=max_anonymous_calls} = %q, want 1", got)
	}
	watch := func(ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		w, err := health.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = w.Recv()
		}
		return err
	}
	if err := watch(context.Background()); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "streaming calls") {
		t.Errorf("an anonymous Watch with every anonymous streaming slot held: %v, want RESOURCE_EXHAUSTED", err)
	}
	if err := watch(ts.as(tokOps)); err != nil {
		t.Errorf("a caller's Watch: %v", err)
	}
	if _, err := health.Check(ts.as(tokOps), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("a caller's health check: %v", err)
	}
	if _, err := ts.client.GenerateUserSig(ts.as(tokBackend), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u1"}); err != nil {
		t.Errorf("a caller's call: %v", err)
	}
	big := metadata.AppendToOutgoingContext(context.Background(), "x-pad", strings.Repeat("p", 3<<10))
	if _, err := health.Check(big, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "2 KiB of headers") {
		t.Errorf("an anonymous health check with 3 KiB of headers: %v, want RESOURCE_EXHAUSTED", err)
	}
	big = metadata.AppendToOutgoingContext(ts.as(tokOps), "x-pad", strings.Repeat("p", 3<<10))
	if _, err := health.Check(big, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("a caller's health check with 3 KiB of headers: %v", err)
	}
}

// TestTapCallerStreams: callers' streaming calls (reflection, Watch) have
// their own slots, so holding every one of them leaves UserSigService
// calls alone.
func TestTapCallerStreams(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	ts.holdStreams(128, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "Bearer "+tokOps)
	waitFor(t, "128 caller streams in flight", func() bool { return ts.metric(`usersig_calls_in_flight{class="caller_stream"}`) == "128" })
	if _, err := ts.client.GenerateUserSig(ts.as(tokBackend), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u1"}); err != nil {
		t.Errorf("a call while every caller streaming slot is held: %v", err)
	}
	if got := ts.metric(`usersig_calls_in_flight{class="caller"}`); got != "0" {
		t.Errorf("caller slots held: %s, want 0", got)
	}
}

// TestDrainEndsStreams: a health Watch open when the server drains is
// ended, so the drain does not wait for shutdown.timeout.
func TestDrainEndsStreams(t *testing.T) {
	config := strings.Replace(fixtureConfig, "reload:", "shutdown: {delay: 0s, timeout: 20s}\nreload:", 1)
	ts := startServer(t, config)
	w, err := healthpb.NewHealthClient(ts.conn).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	ts.cancel() // what SIGTERM does
	select {
	case err := <-ts.done:
		if err != nil {
			t.Errorf("Serve: %v, want a clean drain", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the drain waited on the Watch")
	}
	ts.cancel = nil
}

// TestRevokedCallerOnOpenStream: a stream opened by a caller that a
// reload then removes is not served when its request arrives: the caller
// is identified again under the policy in force.
func TestRevokedCallerOnOpenStream(t *testing.T) {
	noWatch := strings.Replace(fixtureConfig, "interval: 50ms", "interval: 0s", 1)
	ts := startServer(t, noWatch)
	ctx, cancel := context.WithTimeout(ts.as(tokWeb), 10*time.Second)
	defer cancel()
	st, err := ts.conn.NewStream(ctx, &grpc.StreamDesc{}, usersigv1.UserSigService_GenerateUserSig_FullMethodName)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stream to be admitted", func() bool { return ts.metric(`usersig_calls_in_flight{class="caller"}`) == "1" })
	i := strings.Index(noWatch, "  - name: web")
	j := strings.Index(noWatch, "  - name: ops")
	ts.writeConfig(noWatch[:i] + noWatch[j:])
	if err := ts.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(&usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u_1"}); err != nil {
		t.Fatal(err)
	}
	st.CloseSend()
	err = st.RecvMsg(&usersigv1.GenerateUserSigResponse{})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("a request on a stream opened before its caller was removed: %v, want UNAUTHENTICATED", err)
	}
}

// TestHeaderLimit: a call whose headers are just under 8 KiB is served;
// one whose headers are above it is refused by the transport before any
// of it is kept.
func TestHeaderLimit(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	pad := func(n int) context.Context {
		return metadata.AppendToOutgoingContext(ts.as(tokBackend), "x-pad", strings.Repeat("p", n))
	}
	if _, err := ts.client.GenerateUserSig(pad(7<<10), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u1"}); err != nil {
		t.Errorf("a call with 7 KiB of headers: %v", err)
	}
	r, err := streamattack.Attack{Addr: ts.srv.GRPCAddr(), Conns: 1, Streams: 1, PadBytes: 9 << 10, Authorization: "Bearer " + tokBackend}.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	<-r.Sent()
	time.Sleep(200 * time.Millisecond)
	got := r.Stop()
	if got.Answered != 0 || got.Resets+got.ConnErrors == 0 {
		t.Errorf("a stream with 9 KiB of headers: %v, want it reset or its connection closed", got)
	}
	if got := ts.metric(`usersig_calls_in_flight{class="caller"}`); got != "0" {
		t.Errorf("%s caller streams in flight after the oversized one", got)
	}
}

// TestHTTPHeaderLimit: the metrics and probe listener refuses headers
// above 8 KiB (net/http's default is 1 MiB) and serves those below.
func TestHTTPHeaderLimit(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	for _, c := range []struct {
		n    int
		want int
	}{{4 << 10, http.StatusOK}, {64 << 10, http.StatusRequestHeaderFieldsTooLarge}} {
		req, _ := http.NewRequest("GET", "http://"+ts.srv.HTTPAddr()+"/healthz", nil)
		req.Header.Set("X-Pad", strings.Repeat("p", c.n))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("/healthz with %d bytes of headers: %d, want %d", c.n, resp.StatusCode, c.want)
		}
	}
}

// TestRefusedDeadlinesFreed: grpc-go v1.85.0 keeps the timer of a refused
// call's grpc-timeout (SECURITY.md, "Known gap"). A connection that sends
// more than 64 such calls is closed, and closing it frees their timers:
// 20,000 refused calls asking for 11,000-year deadlines leave the heap
// where it was (each kept timer is about 270 bytes: 5 MB without this).
func TestRefusedDeadlinesFreed(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	const conns, perConn = 250, 80
	r, err := streamattack.Attack{Addr: ts.srv.GRPCAddr(), Conns: conns, Streams: perConn, Timeout: "99999999H"}.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Sent():
	case <-time.After(30 * time.Second):
		t.Fatal("the calls were not sent within 30s")
	}
	waitFor(t, "every connection to be closed after its 64 refusals", func() bool {
		return ts.metric(`usersig_connections_closed_total{listener="grpc",why="refusals"}`) == strconv.Itoa(conns)
	})
	res := r.Stop()
	if res.Codes[codes.Unauthenticated] < conns {
		t.Errorf("refused %v, want UNAUTHENTICATED answers on every connection", res)
	}
	waitFor(t, "the refused calls' timers to be freed", func() bool { return heap() < before+2<<20 })
}
