package server_test

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
	"github.com/usersig/usersig/signer"
)

// The requests, by the method they are for.
type (
	generateReq = usersigv1.GenerateUserSigRequest
	pmkReq      = usersigv1.GeneratePrivateMapKeyRequest
	verifyReq   = usersigv1.VerifyUserSigRequest
)

// callTimeout only detects a hang: how fast a call is answered is for the
// benchmarks (bench_test.go, bench/).
const callTimeout = 10 * time.Second

// TestErrorsAndHostileInput is what the API answers a broken or hostile
// client: every error code it documents, the edges of every limit, and
// tickets laid out wrong in every way the format allows. Each case wants an
// exact code, with the field an INVALID_ARGUMENT's BadRequest names, or
// for a ticket the exact VerifyStatus. None may be INTERNAL or UNKNOWN, no
// answer may hold a key, token or ticket, and the server serves on
// afterwards. (startServer checks the logs for secrets when the test ends.)
func TestErrorsAndHostileInput(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	t0 := ts.clock.Now()
	// Tickets as the server mints them (its clock stands at t0), made here
	// so that each case is one call.
	okTicket := mintUserSig(t, keyPrimary, appA, "u1", time.Minute, t0)
	appBTicket := mintUserSig(t, keyB, appB, "u1", time.Minute, t0)
	const (
		valid             = usersigv1.VerifyStatus_VERIFY_STATUS_VALID
		expired           = usersigv1.VerifyStatus_VERIFY_STATUS_EXPIRED
		malformed         = usersigv1.VerifyStatus_VERIFY_STATUS_MALFORMED
		signatureMismatch = usersigv1.VerifyStatus_VERIFY_STATUS_SIGNATURE_MISMATCH
		userIDMismatch    = usersigv1.VerifyStatus_VERIFY_STATUS_USER_ID_MISMATCH
	)
	ticket := func(s string) *verifyReq { return &verifyReq{SdkAppId: appA, UserId: "u1", UserSig: s} }
	for _, tc := range []struct {
		name string
		// auth is the call's authorization metadata, "" for none.
		auth string
		// req is the request; its type names the method called.
		req        proto.Message
		wantCode   codes.Code
		wantField  string                 // the field an INVALID_ARGUMENT names
		wantStatus usersigv1.VerifyStatus // a VerifyUserSig answer's status
	}{
		// Credentials.
		{name: "no authorization", req: &generateReq{SdkAppId: appA, UserId: "u1", Ttl: dur(60)}, wantCode: codes.Unauthenticated},
		{name: "unknown token", auth: bearer("not-a-token"), req: &generateReq{SdkAppId: appA, UserId: "u1", Ttl: dur(60)}, wantCode: codes.Unauthenticated},
		{name: "a 4 KiB token", auth: bearer(strings.Repeat("t", 4096)), req: &generateReq{SdkAppId: appA, UserId: "u1", Ttl: dur(60)}, wantCode: codes.Unauthenticated},
		{name: "a caller's token hash as token", auth: bearer(tokenHash(tokBackend)), req: &generateReq{SdkAppId: appA, UserId: "u1", Ttl: dur(60)}, wantCode: codes.Unauthenticated},
		{name: "Basic scheme", auth: "Basic dXNlcjpwYXNz", req: &generateReq{SdkAppId: appA, UserId: "u1", Ttl: dur(60)}, wantCode: codes.Unauthenticated},
		{name: "Bearer and a space, no token", auth: "Bearer ", req: &generateReq{SdkAppId: appA, UserId: "u1", Ttl: dur(60)}, wantCode: codes.Unauthenticated},
		{name: "Bearer alone", auth: "Bearer", req: &generateReq{SdkAppId: appA, UserId: "u1", Ttl: dur(60)}, wantCode: codes.Unauthenticated},
		{name: "garbled", auth: "%%garbage!@#", req: &generateReq{SdkAppId: appA, UserId: "u1", Ttl: dur(60)}, wantCode: codes.Unauthenticated},
		{name: "lowercase bearer works", auth: "bearer " + tokBackend, req: &generateReq{SdkAppId: appA, UserId: "u1", Ttl: dur(60)}, wantCode: codes.OK},

		// What a caller may do.
		{name: "method not allowed: VerifyUserSig", auth: bearer(tokWeb), req: &verifyReq{SdkAppId: appA, UserId: "u_1", UserSig: "x"}, wantCode: codes.PermissionDenied},
		{name: "method not allowed: GeneratePrivateMapKey", auth: bearer(tokWeb), req: &pmkReq{SdkAppId: appA, UserId: "u_1", Ttl: dur(60), Room: roomID(1), PrivilegeMap: 1}, wantCode: codes.PermissionDenied},
		{name: "app not allowed", auth: bearer(tokWeb), req: &generateReq{SdkAppId: appB, UserId: "u_1"}, wantCode: codes.PermissionDenied},
		{name: "app not allowed and not configured", auth: bearer(tokWeb), req: &generateReq{SdkAppId: 1499999999, UserId: "u_1"}, wantCode: codes.PermissionDenied},
		{name: "sdk_app_id above 32 bits", auth: bearer(tokBackend), req: &generateReq{SdkAppId: 1 << 40, UserId: "u1"}, wantCode: codes.PermissionDenied},
		{name: "app allowed by * but not configured", auth: bearer(tokOps), req: &verifyReq{SdkAppId: 1499999999, UserId: "u1", UserSig: okTicket}, wantCode: codes.NotFound},
		{name: "user id outside the caller's pattern", auth: bearer(tokWeb), req: &generateReq{SdkAppId: appA, UserId: "admin"}, wantCode: codes.PermissionDenied},
		{name: "sdk_app_id omitted with two apps", auth: bearer(tokBackend), req: &generateReq{UserId: "u1"}, wantCode: codes.InvalidArgument, wantField: "sdk_app_id"},

		// User ids.
		{name: "empty user id", auth: bearer(tokBackend), req: &generateReq{SdkAppId: appA}, wantCode: codes.InvalidArgument, wantField: "user_id"},
		{name: "32-byte user id", auth: bearer(tokBackend), req: &generateReq{SdkAppId: appA, UserId: strings.Repeat("u", 32), Ttl: dur(60)}, wantCode: codes.OK},
		{name: "33-byte user id", auth: bearer(tokBackend), req: &generateReq{SdkAppId: appA, UserId: strings.Repeat("u", 33)}, wantCode: codes.InvalidArgument, wantField: "user_id"},
		{name: "unicode user id", auth: bearer(tokBackend), req: &generateReq{SdkAppId: appA, UserId: "用户"}, wantCode: codes.InvalidArgument, wantField: "user_id"},
		{name: "NUL in user id", auth: bearer(tokBackend), req: &generateReq{SdkAppId: appA, UserId: "u\x001"}, wantCode: codes.InvalidArgument, wantField: "user_id"},
		{name: "space in user id", auth: bearer(tokBackend), req: &generateReq{SdkAppId: appA, UserId: "u 1"}, wantCode: codes.InvalidArgument, wantField: "user_id"},
		{name: "invalid user id to verify", auth: bearer(tokBackend), req: &verifyReq{SdkAppId: appA, UserId: "a b", UserSig: "x"}, wantCode: codes.InvalidArgument, wantField: "user_id"},

		// Lifetimes.
		{name: "ttl 0", auth: bearer(tokBackend), req: &generateReq{SdkAppId: appA, UserId: "u1", Ttl: dur(0)}, wantCode: codes.InvalidArgument, wantField: "ttl"},
		{name: "negative ttl", auth: bearer(tokBackend), req: &generateReq{SdkAppId: appA, UserId: "u1", Ttl: dur(-60)}, wantCode: codes.InvalidArgument, wantField: "ttl"},
		{name: "fractional ttl", auth: bearer(tokBackend), req: &generateReq{SdkAppId: appA, UserId: "u1", Ttl: &durationpb.Duration{Seconds: 60, Nanos: 5e8}}, wantCode: codes.InvalidArgument, wantField: "ttl"},
		{name: "invalid duration", auth: bearer(tokBackend), req: &generateReq{SdkAppId: appA, UserId: "u1", Ttl: &durationpb.Duration{Seconds: 60, Nanos: -5}}, wantCode: codes.InvalidArgument, wantField: "ttl"},
		{name: "ttl above the app's max_ttl", auth: bearer(tokBackend), req: &generateReq{SdkAppId: appB, UserId: "u1", Ttl: dur(49 * 3600)}, wantCode: codes.InvalidArgument, wantField: "ttl"},
		{name: "huge ttl", auth: bearer(tokBackend), req: &generateReq{SdkAppId: appA, UserId: "u1", Ttl: dur(315576000000)}, wantCode: codes.InvalidArgument, wantField: "ttl"},
		{name: "ttl above the caller's max_ttl", auth: bearer(tokWeb), req: &generateReq{SdkAppId: appA, UserId: "u_1", Ttl: dur(721 * 3600)}, wantCode: codes.InvalidArgument, wantField: "ttl"},

		// Rooms and privileges.
		{name: "no room", auth: bearer(tokBackend), req: &pmkReq{SdkAppId: appA, UserId: "u1", PrivilegeMap: 1}, wantCode: codes.InvalidArgument, wantField: "room"},
		{name: "room_id 0", auth: bearer(tokBackend), req: &pmkReq{SdkAppId: appA, UserId: "u1", Room: roomID(0), PrivilegeMap: 1}, wantCode: codes.InvalidArgument, wantField: "room_id"},
		{name: "room_id 4294967295", auth: bearer(tokBackend), req: &pmkReq{SdkAppId: appA, UserId: "u1", Ttl: dur(60), Room: roomID(4294967295), PrivilegeMap: 255}, wantCode: codes.OK},
		// Wider than 32 bits: a truncating client's 4294967303 would be room 7.
		{name: "room_id 4294967296", auth: bearer(tokBackend), req: &pmkReq{SdkAppId: appA, UserId: "u1", Ttl: dur(60), Room: roomID(4294967296), PrivilegeMap: 255}, wantCode: codes.InvalidArgument, wantField: "room_id"},
		{name: "room_id 4294967303", auth: bearer(tokBackend), req: &pmkReq{SdkAppId: appA, UserId: "u1", Ttl: dur(60), Room: roomID(4294967303), PrivilegeMap: 255}, wantCode: codes.InvalidArgument, wantField: "room_id"},
		{name: "room_id 2^64-1", auth: bearer(tokBackend), req: &pmkReq{SdkAppId: appA, UserId: "u1", Ttl: dur(60), Room: roomID(1<<64 - 1), PrivilegeMap: 255}, wantCode: codes.InvalidArgument, wantField: "room_id"},
		{name: "privilege_map 2^32+42", auth: bearer(tokBackend), req: &pmkReq{SdkAppId: appA, UserId: "u1", Ttl: dur(60), Room: roomID(1), PrivilegeMap: 1<<32 + 42}, wantCode: codes.InvalidArgument, wantField: "privilege_map"},
		{name: "empty room_str", auth: bearer(tokBackend), req: &pmkReq{SdkAppId: appA, UserId: "u1", Room: roomStr(""), PrivilegeMap: 1}, wantCode: codes.InvalidArgument, wantField: "room_str"},
		{name: "65-byte room_str", auth: bearer(tokBackend), req: &pmkReq{SdkAppId: appA, UserId: "u1", Room: roomStr(strings.Repeat("r", 65)), PrivilegeMap: 1}, wantCode: codes.InvalidArgument, wantField: "room_str"},
		{name: "room_str with a quote", auth: bearer(tokBackend), req: &pmkReq{SdkAppId: appA, UserId: "u1", Room: roomStr(`a"b`), PrivilegeMap: 1}, wantCode: codes.InvalidArgument, wantField: "room_str"},
		{name: "room_str with a newline", auth: bearer(tokBackend), req: &pmkReq{SdkAppId: appA, UserId: "u1", Room: roomStr("a\nb"), PrivilegeMap: 1}, wantCode: codes.InvalidArgument, wantField: "room_str"},
		{name: "privilege 0", auth: bearer(tokBackend), req: &pmkReq{SdkAppId: appA, UserId: "u1", Room: roomID(7)}, wantCode: codes.InvalidArgument, wantField: "privilege_map"},
		{name: "privilege 256", auth: bearer(tokBackend), req: &pmkReq{SdkAppId: appA, UserId: "u1", Room: roomID(7), PrivilegeMap: 256}, wantCode: codes.InvalidArgument, wantField: "privilege_map"},

		// Tickets: a ticket that fails is an answer, not an error.
		{name: "empty ticket", auth: bearer(tokBackend), req: ticket(""), wantStatus: malformed},
		{name: "3 MB ticket", auth: bearer(tokBackend), req: ticket(strings.Repeat("eJw", 1<<20)), wantCode: codes.ResourceExhausted},
		{name: "17 KiB ticket", auth: bearer(tokBackend), req: ticket(strings.Repeat("A", 17<<10)), wantStatus: malformed},
		{name: "21 KiB request", auth: bearer(tokBackend), req: ticket(strings.Repeat("A", 21<<10)), wantCode: codes.ResourceExhausted},
		{name: "not base64", auth: bearer(tokBackend), req: ticket("this is not a ticket!"), wantStatus: malformed},
		{name: "standard base64", auth: bearer(tokBackend), req: ticket(base64.StdEncoding.EncodeToString([]byte("hello, world"))), wantStatus: malformed},
		{name: "base64 of non-zlib", auth: bearer(tokBackend), req: ticket(ticketB64([]byte("hello, world, not zlib at all"))), wantStatus: malformed},
		{name: "zlib of non-JSON", auth: bearer(tokBackend), req: ticket(ticketOf(t, "<xml>not json</xml>", 6)), wantStatus: malformed},
		{name: "JSON with wrong types", auth: bearer(tokBackend), req: ticket(ticketOf(t, `{"TLS.ver":2,"TLS.identifier":["u1"],"TLS.sdkappid":"1400000000","TLS.time":true,"TLS.sig":{}}`, 6)), wantStatus: malformed},
		{name: "deeply nested JSON", auth: bearer(tokBackend), req: ticket(ticketOf(t, strings.Repeat(`{"a":`, 1000)+"1"+strings.Repeat("}", 1000), 9)), wantStatus: malformed},
		{name: "zlib bomb: 10 MB of spaces", auth: bearer(tokBackend), req: ticket(ticketOf(t, `{"TLS.ver":"2.0","x":"`+strings.Repeat(" ", 10<<20)+`"}`, 9)), wantStatus: malformed},
		{name: "truncated ticket", auth: bearer(tokBackend), req: ticket(okTicket[:len(okTicket)-9]), wantStatus: malformed},
		{name: "TLS.ver 1.0, correctly signed", auth: bearer(tokBackend), req: ticket(ticketOf(t, signedDoc(keyPrimary, "1.0", t0.Unix(), 60), 6)), wantStatus: malformed},
		{name: "another app's ticket", auth: bearer(tokBackend), req: ticket(appBTicket), wantStatus: signatureMismatch},
		{name: "another user's ticket", auth: bearer(tokBackend), req: &verifyReq{SdkAppId: appA, UserId: "u2", UserSig: okTicket}, wantStatus: userIDMismatch},
		{name: "an expired ticket", auth: bearer(tokBackend), req: ticket(ticketOf(t, signedDoc(keyPrimary, "2.0", t0.Unix()-120, 60), 6)), wantStatus: expired},
		{name: "a MAC for another key", auth: bearer(tokBackend), req: ticket(ticketOf(t, signedDoc("a-key-of-another-app-entirely-0123456789abcdef0123456789abcdef", "2.0", t0.Unix(), 60), 6)), wantStatus: signatureMismatch},
		{name: "a valid one, re-laid by another library", auth: bearer(tokBackend), req: ticket(ticketOf(t, signedDoc(keyPrimary, "2.0", t0.Unix(), 60), 1)), wantStatus: valid},

		{name: "ok", auth: bearer(tokBackend), req: &generateReq{SdkAppId: appA, UserId: "user_0001", Ttl: dur(60)}, wantCode: codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			if tc.auth != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", tc.auth)
			}
			method := methodOf(tc.req)
			call := fmt.Sprintf("%s(%v) with %s", method, shortRequest(tc.req), describeAuth(tc.auth))
			caller := callerOf(tc.auth)
			logged := len(ts.logs.lines(finishedCall(method, tc.wantCode, caller)...))

			resp, err := invoke(ctx, ts.client, tc.req)

			if code := status.Code(err); code == codes.Internal || code == codes.Unknown {
				t.Fatalf("%s = %v; a client's input must never give INTERNAL or UNKNOWN", call, err)
			}
			wantCode(t, call, err, tc.wantCode, tc.wantField)
			if v, ok := resp.(*usersigv1.VerifyUserSigResponse); ok && err == nil && v.Status != tc.wantStatus {
				t.Errorf("%s = status %v (%q); want %v", call, v.Status, v.MalformedReason, tc.wantStatus)
			}
			// What goes back to the client names a field and a rule, never
			// a secret: not the fixture's, nor the token or ticket sent.
			answer := status.Convert(err).Message()
			if v, ok := resp.(*usersigv1.VerifyUserSigResponse); ok && err == nil {
				answer = v.MalformedReason
			}
			if what := secretIn(answer, tc.auth, tc.req); what != "" {
				t.Errorf("%s: the answer %q holds %s", call, answer, what)
			}
			// A call from a known caller is in the call log with its
			// method, code and caller (a refused call is how an operator
			// finds a misconfigured client).
			if caller != "" && tc.wantCode != codes.ResourceExhausted {
				if n := len(ts.logs.lines(finishedCall(method, tc.wantCode, caller)...)) - logged; n != 1 {
					t.Errorf("%s: %d call log lines with caller %q and code %v, want 1", call, n, caller, tc.wantCode)
				}
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if resp, err := healthpb.NewHealthClient(ts.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("Health.Check after the cases = %v, %v; want SERVING", resp, err)
	}
}

// invoke calls the method that takes req.
func invoke(ctx context.Context, c usersigv1.UserSigServiceClient, req proto.Message) (proto.Message, error) {
	switch r := req.(type) {
	case *generateReq:
		return c.GenerateUserSig(ctx, r)
	case *pmkReq:
		return c.GeneratePrivateMapKey(ctx, r)
	case *verifyReq:
		return c.VerifyUserSig(ctx, r)
	}
	panic(fmt.Sprintf("no method takes a %T", req))
}

// methodOf is the name of the method that takes req.
func methodOf(req proto.Message) string {
	return strings.TrimSuffix(string(req.ProtoReflect().Descriptor().Name()), "Request")
}

// finishedCall is what a call log line of the method, code and caller
// contains.
func finishedCall(method string, code codes.Code, caller string) []string {
	return []string{`"msg":"finished call"`, `"grpc.method":"` + method + `"`, `"grpc.code":"` + code.String() + `"`, `"caller":"` + caller + `"`}
}

func bearer(token string) string { return "Bearer " + token }

func roomID(id uint64) *usersigv1.GeneratePrivateMapKeyRequest_RoomId {
	return &usersigv1.GeneratePrivateMapKeyRequest_RoomId{RoomId: id}
}

func roomStr(s string) *usersigv1.GeneratePrivateMapKeyRequest_RoomStr {
	return &usersigv1.GeneratePrivateMapKeyRequest_RoomStr{RoomStr: s}
}

// fixtureCallers names the fixture's callers by their tokens.
var fixtureCallers = map[string]string{tokBackend: "backend", tokWeb: "web", tokOps: "ops", tokLimited: "limited"}

// callerOf is the fixture caller an authorization value names, or "".
func callerOf(auth string) string {
	scheme, token, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "bearer") {
		return ""
	}
	return fixtureCallers[token]
}

// describeAuth says what authorization a call carried, without a
// fixture's token.
func describeAuth(auth string) string {
	switch {
	case auth == "":
		return "no authorization"
	case callerOf(auth) != "":
		scheme, _, _ := strings.Cut(auth, " ")
		return fmt.Sprintf("%s <%s's token>", scheme, callerOf(auth))
	case len(auth) > 40:
		return fmt.Sprintf("authorization %q… (%d bytes)", auth[:20], len(auth))
	}
	return fmt.Sprintf("authorization %q", auth)
}

// shortRequest is req for a failure message: a ticket or a long string
// shows as its length.
func shortRequest(req proto.Message) proto.Message {
	m := proto.Clone(req)
	r := m.ProtoReflect()
	r.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if s := v.String(); fd.Kind() == protoreflect.StringKind && (fd.Name() == "user_sig" && len(s) > 16 || len(s) > 64) {
			r.Set(fd, protoreflect.ValueOfString(fmt.Sprintf("<%d bytes>", len(s))))
		}
		return true
	})
	return m
}

// secretIn says which secret, if any, answer holds (whole, or its first or
// last 16 bytes): a fixture key or token, the call's token or its ticket.
func secretIn(answer, auth string, req proto.Message) string {
	if answer == "" {
		return ""
	}
	holds := func(s string) bool {
		if len(s) < 16 {
			return false
		}
		return strings.Contains(answer, s) || strings.Contains(answer, s[:16]) || strings.Contains(answer, s[len(s)-16:])
	}
	for _, s := range fixtureSecrets {
		if holds(s) {
			return "a fixture key or token"
		}
	}
	if _, token, _ := strings.Cut(auth, " "); holds(token) {
		return "the call's token"
	}
	if v, ok := req.(*verifyReq); ok && holds(v.UserSig) {
		return "the ticket sent"
	}
	return ""
}

// mintUserSig is the UserSig the server mints with key at now.
func mintUserSig(t *testing.T, key string, app uint64, user string, ttl time.Duration, now time.Time) string {
	t.Helper()
	k, err := signer.NewKey([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	is, err := k.UserSig(app, user, ttl, now)
	if err != nil {
		t.Fatal(err)
	}
	return is.Ticket
}

// ticketOf lays a JSON document out as a ticket (zlib, ticket base64).
func ticketOf(t *testing.T, doc string, level int) string {
	t.Helper()
	var b bytes.Buffer
	w, err := zlib.NewWriterLevel(&b, level)
	if err != nil {
		t.Fatal(err)
	}
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
