package server_test

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
	"github.com/usersig/usersig/signer"
)

// ticketOf lays a JSON document out as a ticket (zlib, ticket base64).
func ticketOf(t *testing.T, doc string, level int) string {
	t.Helper()
	var b bytes.Buffer
	w, _ := zlib.NewWriterLevel(&b, level)
	w.Write([]byte(doc))
	w.Close()
	return ticketB64(b.Bytes())
}

func ticketB64(b []byte) string {
	return strings.NewReplacer("+", "*", "/", "-", "=", "_").Replace(base64.StdEncoding.EncodeToString(b))
}

// signedDoc is a ticket document for user u1 of app A with a correct MAC
// under key, with ver as its TLS.ver.
func signedDoc(key, ver string, t0, expire int64) string {
	k, _ := signer.NewKey([]byte(key))
	is, _ := k.UserSig(appA, "u1", time.Duration(expire)*time.Second, time.Unix(t0, 0))
	d, _ := signer.Decode(is.Ticket)
	return fmt.Sprintf(`{"TLS.ver":%q,"TLS.identifier":"u1","TLS.sdkappid":%d,"TLS.expire":%d,"TLS.time":%d,"TLS.sig":%q}`, ver, appA, expire, t0, d.Sig)
}

// TestHostileInput sends a real server everything a hostile or broken
// client might: each case wants an exact code, or for tickets an exact
// VerifyStatus. None may be INTERNAL or UNKNOWN, none may take the server
// more than 50 ms, and the server must answer a health check afterwards.
func TestHostileInput(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	c := ts.client
	t0 := ts.clock.Now().Unix()
	okTicket, err := c.GenerateUserSig(ts.as(tokBackend), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u1", Ttl: dur(60)})
	if err != nil {
		t.Fatal(err)
	}
	appBTicket, _ := c.GenerateUserSig(ts.as(tokBackend), &usersigv1.GenerateUserSigRequest{SdkAppId: appB, UserId: "u1", Ttl: dur(60)})
	otherKey := signedDoc("a-key-of-another-app-entirely-0123456789abcdef0123456789abcdef", "2.0", t0, 60)
	type call func() (any, error)
	gen := func(tok string, r *usersigv1.GenerateUserSigRequest) call {
		return func() (any, error) { return c.GenerateUserSig(ts.as(tok), r) }
	}
	genRaw := func(ctx context.Context, r *usersigv1.GenerateUserSigRequest) call {
		return func() (any, error) { return c.GenerateUserSig(ctx, r) }
	}
	pmk := func(r *usersigv1.GeneratePrivateMapKeyRequest) call {
		return func() (any, error) { return c.GeneratePrivateMapKey(ts.as(tokBackend), r) }
	}
	verify := func(ticket string) call {
		return func() (any, error) {
			return c.VerifyUserSig(ts.as(tokBackend), &usersigv1.VerifyUserSigRequest{SdkAppId: appA, UserId: "u1", UserSig: ticket})
		}
	}
	verifyAs := func(user, ticket string) call {
		return func() (any, error) {
			return c.VerifyUserSig(ts.as(tokBackend), &usersigv1.VerifyUserSigRequest{SdkAppId: appA, UserId: user, UserSig: ticket})
		}
	}
	u := func(id string) *usersigv1.GenerateUserSigRequest {
		return &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: id, Ttl: dur(60)}
	}
	withTTL := func(s int64) *usersigv1.GenerateUserSigRequest {
		return &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u1", Ttl: dur(s)}
	}
	room := func(r *usersigv1.GeneratePrivateMapKeyRequest) *usersigv1.GeneratePrivateMapKeyRequest {
		r.SdkAppId, r.UserId, r.Ttl = appA, "u1", dur(60)
		return r
	}
	valid := signedDoc(keyPrimary, "2.0", t0, 60)
	const (
		ok        = codes.OK
		invalid   = codes.InvalidArgument
		malformed = usersigv1.VerifyStatus_VERIFY_STATUS_MALFORMED
	)
	for _, tc := range []struct {
		name   string
		call   call
		code   codes.Code
		status usersigv1.VerifyStatus // for VerifyUserSig answers
	}{
		// user ids
		{"empty user id", gen(tokBackend, u("")), invalid, 0},
		{"33-byte user id", gen(tokBackend, u(strings.Repeat("a", 33))), invalid, 0},
		{"unicode user id", gen(tokBackend, u("ユーザー")), invalid, 0},
		{"NUL in user id", gen(tokBackend, u("u\x001")), invalid, 0},
		{"space in user id", gen(tokBackend, u("u 1")), invalid, 0},
		{"32-byte user id", gen(tokBackend, u(strings.Repeat("a", 32))), ok, 0},
		// lifetimes
		{"ttl 0", gen(tokBackend, withTTL(0)), invalid, 0},
		{"negative ttl", gen(tokBackend, withTTL(-1)), invalid, 0},
		{"huge ttl", gen(tokBackend, withTTL(315576000000)), invalid, 0},
		{"ttl above max_ttl", gen(tokBackend, withTTL(8761*3600)), invalid, 0},
		// apps
		{"sdk_app_id 0 with several apps", gen(tokBackend, &usersigv1.GenerateUserSigRequest{UserId: "u1"}), invalid, 0},
		{"unknown app", gen(tokBackend, &usersigv1.GenerateUserSigRequest{SdkAppId: 42, UserId: "u1"}), codes.PermissionDenied, 0},
		{"unknown app, caller with *", func() (any, error) {
			return c.VerifyUserSig(ts.as(tokOps), &usersigv1.VerifyUserSigRequest{SdkAppId: 42, UserId: "u1", UserSig: okTicket.UserSig})
		}, codes.NotFound, 0},
		{"app not allowed", gen(tokWeb, &usersigv1.GenerateUserSigRequest{SdkAppId: appB, UserId: "u_1"}), codes.PermissionDenied, 0},
		{"sdk_app_id above 32 bits", gen(tokBackend, &usersigv1.GenerateUserSigRequest{SdkAppId: 1 << 40, UserId: "u1"}), codes.PermissionDenied, 0},
		// credentials
		{"no authorization", genRaw(context.Background(), u("u1")), codes.Unauthenticated, 0},
		{"garbled authorization", genRaw(withAuth("!!garbled!!"), u("u1")), codes.Unauthenticated, 0},
		{"Basic authorization", genRaw(withAuth("Basic dXNlcjpwYXNzd29yZA=="), u("u1")), codes.Unauthenticated, 0},
		{"empty bearer", genRaw(withAuth("Bearer"), u("u1")), codes.Unauthenticated, 0},
		{"another caller's token", func() (any, error) {
			return c.GeneratePrivateMapKey(ts.as(tokWeb), room(&usersigv1.GeneratePrivateMapKeyRequest{Room: &usersigv1.GeneratePrivateMapKeyRequest_RoomId{RoomId: 1}, PrivilegeMap: 1}))
		}, codes.PermissionDenied, 0},
		{"a 4 KiB token", gen(strings.Repeat("t", 4096), u("u1")), codes.Unauthenticated, 0},
		// tickets
		{"empty ticket", verify(""), ok, malformed},
		{"3 MB ticket", verify(strings.Repeat("eJw", 1<<20)), codes.ResourceExhausted, 0},
		{"17 KiB ticket", verify(strings.Repeat("A", 17<<10)), ok, malformed},
		{"not base64", verify("this is not a ticket!"), ok, malformed},
		{"standard base64", verify(base64.StdEncoding.EncodeToString([]byte("hello, world"))), ok, malformed},
		{"base64 of non-zlib", verify(ticketB64([]byte("hello, world, not zlib at all"))), ok, malformed},
		{"zlib of non-JSON", verify(ticketOf(t, "<xml>not json</xml>", 6)), ok, malformed},
		{"JSON with wrong types", verify(ticketOf(t, `{"TLS.ver":2,"TLS.identifier":["u1"],"TLS.sdkappid":"1400000000","TLS.time":true,"TLS.sig":{}}`, 6)), ok, malformed},
		{"deeply nested JSON", verify(ticketOf(t, strings.Repeat(`{"a":`, 1000)+"1"+strings.Repeat("}", 1000), 9)), ok, malformed},
		{"zlib bomb: 10 MB of spaces", verify(ticketOf(t, `{"TLS.ver":"2.0","x":"`+strings.Repeat(" ", 10<<20)+`"}`, 9)), ok, malformed},
		{"truncated ticket", verify(okTicket.UserSig[:len(okTicket.UserSig)-9]), ok, malformed},
		{"TLS.ver 1.0, correctly signed", verify(ticketOf(t, signedDoc(keyPrimary, "1.0", t0, 60), 6)), ok, malformed},
		{"a ticket for another app", verify(appBTicket.UserSig), ok, usersigv1.VerifyStatus_VERIFY_STATUS_SIGNATURE_MISMATCH},
		{"a ticket for another user", verifyAs("u2", okTicket.UserSig), ok, usersigv1.VerifyStatus_VERIFY_STATUS_USER_ID_MISMATCH},
		{"an expired ticket", verify(ticketOf(t, signedDoc(keyPrimary, "2.0", t0-120, 60), 6)), ok, usersigv1.VerifyStatus_VERIFY_STATUS_EXPIRED},
		{"a MAC for another key", verify(ticketOf(t, otherKey, 6)), ok, usersigv1.VerifyStatus_VERIFY_STATUS_SIGNATURE_MISMATCH},
		{"a valid one, re-laid by another library", verify(ticketOf(t, valid, 1)), ok, usersigv1.VerifyStatus_VERIFY_STATUS_VALID},
		// rooms and privileges
		{"room_id 0", pmk(room(&usersigv1.GeneratePrivateMapKeyRequest{Room: &usersigv1.GeneratePrivateMapKeyRequest_RoomId{}, PrivilegeMap: 1})), invalid, 0},
		{"no room", pmk(room(&usersigv1.GeneratePrivateMapKeyRequest{PrivilegeMap: 1})), invalid, 0},
		{"65-byte room_str", pmk(room(&usersigv1.GeneratePrivateMapKeyRequest{Room: &usersigv1.GeneratePrivateMapKeyRequest_RoomStr{RoomStr: strings.Repeat("r", 65)}, PrivilegeMap: 1})), invalid, 0},
		{"room_str with a newline", pmk(room(&usersigv1.GeneratePrivateMapKeyRequest{Room: &usersigv1.GeneratePrivateMapKeyRequest_RoomStr{RoomStr: "a\nb"}, PrivilegeMap: 1})), invalid, 0},
		{"privilege 0", pmk(room(&usersigv1.GeneratePrivateMapKeyRequest{Room: &usersigv1.GeneratePrivateMapKeyRequest_RoomId{RoomId: 1}})), invalid, 0},
		{"privilege 256", pmk(room(&usersigv1.GeneratePrivateMapKeyRequest{Room: &usersigv1.GeneratePrivateMapKeyRequest_RoomId{RoomId: 1}, PrivilegeMap: 256})), invalid, 0},
		{"room_id 4294967295", pmk(room(&usersigv1.GeneratePrivateMapKeyRequest{Room: &usersigv1.GeneratePrivateMapKeyRequest_RoomId{RoomId: 4294967295}, PrivilegeMap: 255})), ok, 0},
	} {
		start := time.Now()
		resp, err := tc.call()
		elapsed := time.Since(start)
		code := status.Code(err)
		if code == codes.Internal || code == codes.Unknown {
			t.Errorf("%s: %v: a client's input must never give INTERNAL or UNKNOWN", tc.name, err)
			continue
		}
		if code != tc.code {
			t.Errorf("%s: code %v (%v), want %v", tc.name, code, err, tc.code)
			continue
		}
		if v, isVerify := resp.(*usersigv1.VerifyUserSigResponse); isVerify && err == nil && v.Status != tc.status {
			t.Errorf("%s: status %v (%s), want %v", tc.name, v.Status, v.MalformedReason, tc.status)
		}
		if elapsed > time.Second {
			t.Errorf("%s: the call took %v", tc.name, elapsed)
		}
	}
	// The server's own handling time of each call, from its call log.
	var slowest float64
	for _, line := range ts.logs.lines(`"msg":"finished call"`, `"grpc.service":"usersig.v1.UserSigService"`) {
		var l struct {
			Ms string `json:"grpc.time_ms"`
		}
		json.Unmarshal([]byte(line), &l)
		ms, _ := strconv.ParseFloat(l.Ms, 64)
		slowest = max(slowest, ms)
		if ms > 50 {
			t.Errorf("a call took the server %.1f ms: %s", ms, line)
		}
	}
	t.Logf("the slowest hostile call took the server %.2f ms", slowest)
	if resp, err := healthpb.NewHealthClient(ts.conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health after the hostile input: %v %v", resp, err)
	}
}
