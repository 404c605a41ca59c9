package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
	"github.com/usersig/usersig/signer"
)

func dur(s int64) *durationpb.Duration { return durationpb.New(time.Duration(s) * time.Second) }

// wantCode checks an RPC error's code and, for INVALID_ARGUMENT, that its
// google.rpc.BadRequest names field.
func wantCode(t *testing.T, name string, err error, code codes.Code, field string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Errorf("%s: code %v (%q), want %v", name, st.Code(), st.Message(), code)
		return
	}
	if code == codes.OK {
		return
	}
	if st.Message() == "" {
		t.Errorf("%s: %v with an empty message", name, code)
	}
	if code == codes.InvalidArgument {
		var br *errdetails.BadRequest
		for _, d := range st.Details() {
			if b, ok := d.(*errdetails.BadRequest); ok {
				br = b
			}
		}
		if br == nil || len(br.FieldViolations) != 1 || br.FieldViolations[0].Field != field || br.FieldViolations[0].Description == "" {
			t.Errorf("%s: INVALID_ARGUMENT details %v, want a BadRequest naming %q", name, st.Details(), field)
		} else if !strings.HasPrefix(st.Message(), field+": ") {
			t.Errorf("%s: message %q does not start with the field %q", name, st.Message(), field)
		}
	}
}

func TestGenerateUserSig(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	resp, err := ts.client.GenerateUserSig(ts.as(tokBackend), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "user_0001", Ttl: dur(86400)})
	if err != nil {
		t.Fatal(err)
	}
	now := ts.clock.Now()
	if resp.SdkAppId != appA || resp.UserId != "user_0001" || resp.KeyId != "primary" ||
		!resp.IssueTime.AsTime().Equal(now) || !resp.ExpireTime.AsTime().Equal(now.Add(86400*time.Second)) {
		t.Errorf("GenerateUserSig = %v", resp)
	}
	// The ticket is Tencent's: the signer verifies it with the primary key
	// (an independent HMAC check of the format is in package signer).
	primary, _ := signer.NewKey([]byte(keyPrimary))
	if r := signer.Verify(resp.UserSig, appA, "user_0001", []*signer.Key{primary}, now); r.Status != signer.Valid {
		t.Errorf("the minted ticket verifies as %v (%s)", r.Status, r.Reason)
	}
	// The audit trail holds the issue, but never the ticket (the log check
	// at cleanup covers that for every line).
	audit := ts.logs.lines(`"logger":"audit"`, `"caller":"backend"`, `"user_id":"user_0001"`)
	if len(audit) != 1 || !strings.Contains(audit[0], `"kind":"usersig"`) || !strings.Contains(audit[0], `"key_id":"primary"`) ||
		!strings.Contains(audit[0], `"sdk_app_id":1400000000`) || !strings.Contains(audit[0], `"ttl_seconds":86400`) {
		t.Errorf("audit lines %q, want one for the ticket", audit)
	}
}

func TestDefaultTTLAndOmittedApp(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	for _, tc := range []struct {
		name  string
		token string
		req   *usersigv1.GenerateUserSigRequest
		app   uint64
		ttl   time.Duration
	}{
		{"app's default_ttl", tokBackend, &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u1"}, appA, 4320 * time.Hour},
		{"caller's max_ttl below the default", tokWeb, &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u_1"}, appA, 720 * time.Hour},
		{"the one app the caller may use", tokWeb, &usersigv1.GenerateUserSigRequest{UserId: "u_1", Ttl: dur(60)}, appA, time.Minute},
		{"another app's default", tokBackend, &usersigv1.GenerateUserSigRequest{SdkAppId: appB, UserId: "u1"}, appB, 24 * time.Hour},
	} {
		resp, err := ts.client.GenerateUserSig(ts.as(tc.token), tc.req)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := resp.ExpireTime.AsTime().Sub(resp.IssueTime.AsTime()); resp.SdkAppId != tc.app || got != tc.ttl {
			t.Errorf("%s: app %d ttl %v, want app %d ttl %v", tc.name, resp.SdkAppId, got, tc.app, tc.ttl)
		}
	}
}

func TestGeneratePrivateMapKey(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	for _, tc := range []struct {
		name string
		req  *usersigv1.GeneratePrivateMapKeyRequest
		want *usersigv1.PrivateMapKey
	}{
		{"numeric room", &usersigv1.GeneratePrivateMapKeyRequest{SdkAppId: appA, UserId: "host-1", Ttl: dur(300),
			Room: &usersigv1.GeneratePrivateMapKeyRequest_RoomId{RoomId: 4294967295}, PrivilegeMap: 255},
			&usersigv1.PrivateMapKey{Room: &usersigv1.PrivateMapKey_RoomId{RoomId: 4294967295}, PrivilegeMap: 255}},
		{"string room", &usersigv1.GeneratePrivateMapKeyRequest{SdkAppId: appA, UserId: "viewer_9", Ttl: dur(300),
			Room: &usersigv1.GeneratePrivateMapKeyRequest_RoomStr{RoomStr: "live room #42"}, PrivilegeMap: 42},
			&usersigv1.PrivateMapKey{Room: &usersigv1.PrivateMapKey_RoomStr{RoomStr: "live room #42"}, PrivilegeMap: 42}},
	} {
		resp, err := ts.client.GeneratePrivateMapKey(ts.as(tokBackend), tc.req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if resp.KeyId != "primary" || resp.SdkAppId != appA || resp.UserId != tc.req.UserId ||
			resp.ExpireTime.AsTime().Sub(resp.IssueTime.AsTime()) != 300*time.Second {
			t.Errorf("%s: response %v", tc.name, resp)
		}
		v, err := ts.client.VerifyUserSig(ts.as(tokBackend), &usersigv1.VerifyUserSigRequest{SdkAppId: appA, UserId: tc.req.UserId, UserSig: resp.PrivateMapKey})
		if err != nil {
			t.Fatal(err)
		}
		tc.want.ExpireTime = resp.ExpireTime // one clock reading: the userbuf's expiry is the ticket's
		if !v.Valid || !proto.Equal(v.PrivateMapKey, tc.want) {
			t.Errorf("%s: VerifyUserSig = %v, want valid with %v", tc.name, v, tc.want)
		}
		if len(ts.logs.lines(`"logger":"audit"`, `"kind":"private_map_key"`, `"user_id":"`+tc.req.UserId+`"`)) != 1 {
			t.Errorf("%s: no audit line for the PrivateMapKey", tc.name)
		}
	}
}

func TestVerifyUserSig(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	mint := func(app uint64, user string, ttl int64) string {
		t.Helper()
		resp, err := ts.client.GenerateUserSig(ts.as(tokBackend), &usersigv1.GenerateUserSigRequest{SdkAppId: app, UserId: user, Ttl: dur(ttl)})
		if err != nil {
			t.Fatal(err)
		}
		return resp.UserSig
	}
	t0 := ts.clock.Now().Unix()
	ticket := mint(appA, "user_0001", 3600)
	ticketB := mint(appB, "user_0001", 3600)
	old, _ := signer.NewKey([]byte(keyOld))
	oldTicket, _ := old.UserSig(appA, "user_0001", time.Hour, ts.clock.Now())
	for _, tc := range []struct {
		name   string
		token  string
		app    uint64
		user   string
		ticket string
		at     int64
		status usersigv1.VerifyStatus
		code   int32
		keyID  string
	}{
		{"valid", tokBackend, appA, "user_0001", ticket, t0, usersigv1.VerifyStatus_VERIFY_STATUS_VALID, 0, "primary"},
		{"valid through its last second", tokBackend, appA, "user_0001", ticket, t0 + 3600, usersigv1.VerifyStatus_VERIFY_STATUS_VALID, 0, "primary"},
		{"expired", tokBackend, appA, "user_0001", ticket, t0 + 3601, usersigv1.VerifyStatus_VERIFY_STATUS_EXPIRED, 70001, "primary"},
		{"another user", tokBackend, appA, "user_0002", ticket, t0, usersigv1.VerifyStatus_VERIFY_STATUS_USER_ID_MISMATCH, 70013, "primary"},
		{"signed by an old key", tokBackend, appA, "user_0001", oldTicket.Ticket, t0, usersigv1.VerifyStatus_VERIFY_STATUS_VALID, 0, "old"},
		{"another app's ticket", tokBackend, appA, "user_0001", ticketB, t0, usersigv1.VerifyStatus_VERIFY_STATUS_SIGNATURE_MISMATCH, 70009, ""},
		{"malformed", tokBackend, appA, "user_0001", "not-a-ticket", t0, usersigv1.VerifyStatus_VERIFY_STATUS_MALFORMED, 70003, ""},
		{"empty", tokBackend, appA, "user_0001", "", t0, usersigv1.VerifyStatus_VERIFY_STATUS_MALFORMED, 70003, ""},
		{"truncated", tokBackend, appA, "user_0001", ticket[:len(ticket)/2], t0, usersigv1.VerifyStatus_VERIFY_STATUS_MALFORMED, 70003, ""},
		{"ops may verify any app", tokOps, appB, "user_0001", ticketB, t0, usersigv1.VerifyStatus_VERIFY_STATUS_VALID, 0, "b1"},
	} {
		ts.clock.Set(tc.at)
		resp, err := ts.client.VerifyUserSig(ts.as(tc.token), &usersigv1.VerifyUserSigRequest{SdkAppId: tc.app, UserId: tc.user, UserSig: tc.ticket})
		if err != nil {
			t.Errorf("%s: %v (a failed verification is an answer, not an error)", tc.name, err)
			continue
		}
		if resp.Status != tc.status || resp.Valid != (tc.status == usersigv1.VerifyStatus_VERIFY_STATUS_VALID) ||
			resp.TencentErrorCode != tc.code || resp.KeyId != tc.keyID {
			t.Errorf("%s: VerifyUserSig = %v, want %v code %d key %q", tc.name, resp, tc.status, tc.code, tc.keyID)
		}
		if (resp.KeyId != "") != (resp.IssueTime != nil) {
			t.Errorf("%s: times %v..%v with key %q", tc.name, resp.IssueTime, resp.ExpireTime, resp.KeyId)
		}
		if (tc.status == usersigv1.VerifyStatus_VERIFY_STATUS_MALFORMED) != (resp.MalformedReason != "") {
			t.Errorf("%s: malformed_reason %q", tc.name, resp.MalformedReason)
		}
	}
}

func TestRateLimit(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	req := &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u1", Ttl: dur(60)}
	var limited error
	start := time.Now()
	for i := 0; i < 10 && limited == nil; i++ {
		_, limited = ts.client.GenerateUserSig(ts.as(tokLimited), req)
	}
	st := status.Convert(limited)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("10 calls at burst 2: last error %v, want RESOURCE_EXHAUSTED", limited)
	}
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if retry == nil || retry.RetryDelay.AsDuration() <= 0 || retry.RetryDelay.AsDuration() > time.Second {
		t.Errorf("RESOURCE_EXHAUSTED details %v, want a RetryInfo of at most 1s", st.Details())
	}
	// Another caller is not affected, and the limited caller's refused
	// calls issued nothing.
	for i := 0; i < 20; i++ {
		if _, err := ts.client.GenerateUserSig(ts.as(tokBackend), req); err != nil {
			t.Fatalf("backend's call %d: %v", i, err)
		}
	}
	// The burst of 2, plus one per second the loop took (normally none).
	if n, most := len(ts.logs.lines(`"logger":"audit"`, `"caller":"limited"`)), 2+int(time.Since(start)/time.Second); n < 2 || n > most {
		t.Errorf("limited caller: %d tickets issued, want its burst of 2 (at most %d)", n, most)
	}
	// Every UserSigService call counts, denied or not.
	time.Sleep(1100 * time.Millisecond)
	_, err := ts.client.VerifyUserSig(ts.as(tokLimited), &usersigv1.VerifyUserSigRequest{SdkAppId: appA, UserId: "u1", UserSig: "x"})
	wantCode(t, "after a second the bucket has a token", err, codes.OK, "")
}

func TestHealthAndReflectionNeedNoToken(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	resp, err := healthpb.NewHealthClient(ts.conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("Health.Check = %v, %v; want SERVING", resp, err)
	}
	resp, err = healthpb.NewHealthClient(ts.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "usersig.v1.UserSigService"})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("Health.Check(usersig.v1.UserSigService) = %v, %v; want SERVING", resp, err)
	}
	if lines := ts.logs.lines(`"grpc.service":"grpc.health.v1.Health"`); len(lines) != 0 {
		t.Errorf("health checks were logged: %q", lines)
	}
	stream, err := grpc.NewClientStream(context.Background(), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, ts.conn,
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
	if err != nil {
		t.Fatal(err)
	}
	stream.CloseSend()
	if err := stream.RecvMsg(&healthpb.HealthCheckResponse{}); status.Code(err) == codes.Unauthenticated {
		t.Errorf("reflection wants a token: %v", err)
	}
}
