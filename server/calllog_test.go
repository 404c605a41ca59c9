package server_test

import (
	"encoding/json"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
)

// TestCallLog checks the call log's lines field by field: one line per
// call with the service, method, caller, code, error message, level,
// duration and the client's address; streams too; health checks never.
// A call refused on arrival for its credentials has no line of its own: a
// line at most every 10 s counts such refusals.
func TestCallLog(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	ctx := ts.as(tokBackend)
	if _, err := ts.client.GenerateUserSig(ctx, &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "user_0001"}); err != nil {
		t.Fatal(err)
	}
	_, err := ts.client.GenerateUserSig(ctx, &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "no spaces"})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("GenerateUserSig with a bad user id: %v", err)
	}
	_, err = ts.client.GenerateUserSig(ts.as(""), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "user_0001"})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("GenerateUserSig without a token: %v", err)
	}
	if _, err := healthpb.NewHealthClient(ts.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	// gRPC answers an unknown method itself, before any interceptor: no line.
	if err := ts.conn.Invoke(ctx, "/usersig.v1.UserSigService/NoSuchMethod", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("an unknown method: %v", err)
	}
	rs, err := rpb.NewServerReflectionClient(ts.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.Recv(); err != nil {
		t.Fatal(err)
	}
	rs.CloseSend()
	if _, err := rs.Recv(); err == nil {
		t.Fatal("the reflection stream did not end")
	}
	ts.stop() // every line is written

	type line map[string]any
	var got []line
	for _, l := range ts.logs.lines(`"msg":"finished call"`) {
		var m line
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("a call log line is not JSON: %v: %s", err, l)
		}
		if ms, ok := m["grpc.time_ms"].(float64); !ok || ms < 0 || ms > 10000 {
			t.Errorf("grpc.time_ms = %v in %s", m["grpc.time_ms"], l)
		}
		host, port, err := net.SplitHostPort(m["peer.address"].(string))
		if n, _ := strconv.Atoi(port); err != nil || host != "127.0.0.1" || n == 0 {
			t.Errorf("peer.address = %v, want 127.0.0.1:<port>", m["peer.address"])
		}
		for _, k := range []string{"ts", "grpc.time_ms", "peer.address"} {
			delete(m, k)
		}
		got = append(got, m)
	}
	want := []line{
		{"level": "info", "logger": "grpc", "msg": "finished call", "grpc.service": "usersig.v1.UserSigService",
			"grpc.method": "GenerateUserSig", "caller": "backend", "grpc.code": "OK"},
		{"level": "info", "logger": "grpc", "msg": "finished call", "grpc.service": "usersig.v1.UserSigService",
			"grpc.method": "GenerateUserSig", "caller": "backend", "grpc.code": "InvalidArgument",
			"grpc.error": "user_id: must be 1 to 32 bytes of a-z A-Z 0-9 _ -"},
		{"level": "info", "logger": "grpc", "msg": "finished call", "grpc.service": "grpc.reflection.v1.ServerReflection",
			"grpc.method": "ServerReflectionInfo", "caller": "backend", "grpc.code": "OK"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("call log lines (ts, grpc.time_ms and peer.address left out):\n got %v\nwant %v\nlog:\n%s", got, want, ts.logs)
	}
	refused := ts.logs.lines(`"msg":"calls refused on arrival"`)
	if len(refused) != 1 || !strings.Contains(refused[0], `"count":1,"last_reason":"no_token","last_peer.address":"127.0.0.1:`) {
		t.Errorf("want one line for the call refused on arrival, got %q", refused)
	}
}
