package server_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
)

const tokPerUser = "tok-peruser-5e6f7a8b9c0d1e2f3a4b"

// perUserCaller has a budget of 2 calls per user id, refilled at one
// token every 1000 s: no test waits for a refill.
var perUserCaller = `
  - name: peruser
    token_sha256: ` + tokenHash(tokPerUser) + `
    apps: [1400000000]
    methods: [GenerateUserSig, VerifyUserSig, GeneratePrivateMapKey]
    max_ttl: 720h
    user_id_pattern: '^u_[0-9]{1,16}$'
    rate_per_user: {per_second: 0.001, burst: 2{{max_users}}}
`

func perUserConfig(base, maxUsers string) string {
	return base + strings.ReplaceAll(perUserCaller, "{{max_users}}", maxUsers)
}

// startPerUser is startServer for a config with perUserCaller, checking
// the logs for its token too.
func startPerUser(t *testing.T, config string) *testServer {
	ts := startServer(t, config)
	t.Cleanup(func() {
		if strings.Contains(ts.logs.String(), tokPerUser[:16]) {
			t.Errorf("the server's logs hold part of peruser's token")
		}
	})
	return ts
}

// perUserCalls are the caller's three methods for one user id, each one
// valid but for what bad changes.
func perUserCalls(ts *testServer, user string) map[string]func() error {
	return map[string]func() error{
		"GenerateUserSig": func() error {
			_, err := ts.client.GenerateUserSig(ts.as(tokPerUser), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: user, Ttl: dur(60)})
			return err
		},
		"VerifyUserSig": func() error {
			_, err := ts.client.VerifyUserSig(ts.as(tokPerUser), &usersigv1.VerifyUserSigRequest{SdkAppId: appA, UserId: user, UserSig: "x"})
			return err
		},
		"GeneratePrivateMapKey": func() error {
			_, err := ts.client.GeneratePrivateMapKey(ts.as(tokPerUser), &usersigv1.GeneratePrivateMapKeyRequest{SdkAppId: appA, UserId: user, Ttl: dur(60),
				Room: &usersigv1.GeneratePrivateMapKeyRequest_RoomId{RoomId: 7}, PrivilegeMap: 255})
			return err
		},
	}
}

// wantUserRateLimited checks a refusal for rate_per_user: RESOURCE_EXHAUSTED
// naming the caller, with a RetryInfo of at most one refill (1000 s).
func wantUserRateLimited(t *testing.T, name string, err error) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), `caller "peruser" is over its rate_per_user`) {
		t.Fatalf("%s: %v, want RESOURCE_EXHAUSTED for caller peruser's rate_per_user", name, err)
	}
	for _, d := range st.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok && r.RetryDelay.AsDuration() > 0 && r.RetryDelay.AsDuration() <= 1000*time.Second {
			return
		}
	}
	t.Errorf("%s: details %v, want a RetryInfo of at most 1000s", name, st.Details())
}

// TestRatePerUser: each user id of a caller has its own budget, shared by
// the caller's methods; another user id, and another caller, are not
// affected.
func TestRatePerUser(t *testing.T) {
	ts := startPerUser(t, perUserConfig(fixtureConfig, ""))
	calls := perUserCalls(ts, "u_1")
	wantCode(t, "u_1's first call", calls["GenerateUserSig"](), codes.OK, "")
	wantCode(t, "u_1's second call", calls["GeneratePrivateMapKey"](), codes.OK, "")
	for _, m := range []string{"GenerateUserSig", "VerifyUserSig", "GeneratePrivateMapKey"} {
		wantUserRateLimited(t, "u_1's "+m+" over burst 2", calls[m]())
	}
	for i := range 2 {
		wantCode(t, fmt.Sprintf("u_2's call %d", i+1), perUserCalls(ts, "u_2")["VerifyUserSig"](), codes.OK, "")
	}
	for i := range 5 { // backend has no rate_per_user
		_, err := ts.client.GenerateUserSig(ts.as(tokBackend), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u_1", Ttl: dur(60)})
		wantCode(t, fmt.Sprintf("backend's call %d for u_1", i+1), err, codes.OK, "")
	}
	if n := len(ts.logs.lines(`"logger":"audit"`, `"caller":"peruser"`)); n != 2 {
		t.Errorf("peruser: %d tickets issued, want 2 (u_1's burst; u_2 only verified)", n)
	}
	_, body := ts.httpGet("/metrics")
	if want := `usersig_rate_per_user_limited_total{caller="peruser"} 3`; !strings.Contains(body, want) {
		t.Errorf("metrics lack %s:\n%s", want, grepLines(body, "usersig_rate"))
	}
	if strings.Contains(body, `"u_1"`) || strings.Contains(body, "u_2") {
		t.Errorf("a user id is in the metrics")
	}
}

// TestRatePerUserRefusedCallsSpendNothing: a call refused for its app,
// user id, ttl or request spends no budget: the user still has its burst.
func TestRatePerUserRefusedCallsSpendNothing(t *testing.T) {
	ts := startPerUser(t, perUserConfig(fixtureConfig, ""))
	refused := []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"app denied", func() error {
			_, err := ts.client.GenerateUserSig(ts.as(tokPerUser), &usersigv1.GenerateUserSigRequest{SdkAppId: appB, UserId: "u_3"})
			return err
		}, codes.PermissionDenied},
		{"ttl above the caller's max_ttl", func() error {
			_, err := ts.client.GenerateUserSig(ts.as(tokPerUser), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u_3", Ttl: dur(721 * 3600)})
			return err
		}, codes.InvalidArgument},
		{"no room", func() error {
			_, err := ts.client.GeneratePrivateMapKey(ts.as(tokPerUser), &usersigv1.GeneratePrivateMapKeyRequest{SdkAppId: appA, UserId: "u_3", PrivilegeMap: 255})
			return err
		}, codes.InvalidArgument},
		{"verify for another app", func() error {
			_, err := ts.client.VerifyUserSig(ts.as(tokPerUser), &usersigv1.VerifyUserSigRequest{SdkAppId: appB, UserId: "u_3", UserSig: "x"})
			return err
		}, codes.PermissionDenied},
		// Refused user ids never reach a bucket: refused again and again,
		// they stay refused for what they are.
		{"outside user_id_pattern", func() error {
			_, err := ts.client.GenerateUserSig(ts.as(tokPerUser), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "admin"})
			return err
		}, codes.PermissionDenied},
		{"invalid user id", func() error {
			_, err := ts.client.GenerateUserSig(ts.as(tokPerUser), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u 3"})
			return err
		}, codes.InvalidArgument},
	}
	for _, tc := range refused {
		for i := range 4 {
			err := tc.call()
			if status.Code(err) != tc.code {
				t.Fatalf("%s, call %d: %v, want %v", tc.name, i+1, err, tc.code)
			}
		}
	}
	calls := perUserCalls(ts, "u_3")
	wantCode(t, "u_3's first call after the refused ones", calls["GenerateUserSig"](), codes.OK, "")
	wantCode(t, "u_3's second call after the refused ones", calls["GenerateUserSig"](), codes.OK, "")
	wantUserRateLimited(t, "u_3's third call", calls["GenerateUserSig"]())
}

// TestRatePerUserHTTP: over the HTTP API the refusal is 429 with the
// RetryInfo in the body and Retry-After in whole seconds.
func TestRatePerUserHTTP(t *testing.T) {
	ts := startPerUser(t, perUserConfig(fixtureConfig, "")+"http_api:\n  listen: 127.0.0.1:0\n")
	c := newAPIClient(ts, "http", nil)
	body := `{"sdk_app_id": 1400000000, "user_id": "u_1", "ttl": "60s"}`
	for i := range 2 {
		if a := c.post("/v1/usersig:generate", body, tokPerUser); a.code != 200 {
			t.Fatalf("call %d: %d %s", i+1, a.code, a.raw)
		}
	}
	a := c.post("/v1/usersig:generate", body, tokPerUser)
	wantError(t, "u_1 over its rate_per_user", a, 429, codes.ResourceExhausted, "")
	var delay string
	for _, d := range a.body["details"].([]any) {
		if d := d.(map[string]any); d["@type"] == "type.googleapis.com/google.rpc.RetryInfo" {
			delay, _ = d["retryDelay"].(string)
		}
	}
	if d, err := time.ParseDuration(delay); err != nil || d <= 0 || d > 1000*time.Second {
		t.Errorf("429 without a RetryInfo of at most 1000s: %s", a.raw)
	}
	if s, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || s <= 0 || s > 1000 {
		t.Errorf("Retry-After %q, want 1 to 1000 seconds", a.header.Get("Retry-After"))
	}
	if a := c.post("/v1/usersig:generate", `{"sdk_app_id": 1400000000, "user_id": "u_2"}`, tokPerUser); a.code != 200 {
		t.Errorf("u_2 after u_1 was limited: %d %s", a.code, a.raw)
	}
}

// TestRatePerUserReload: as rate, an unchanged rate_per_user keeps its
// buckets across a reload (a reload refills nobody) and a changed one
// starts afresh.
func TestRatePerUserReload(t *testing.T) {
	ts := startPerUser(t, perUserConfig(fixtureConfig, ""))
	calls := perUserCalls(ts, "u_1")
	calls["GenerateUserSig"]()
	calls["GenerateUserSig"]()
	wantUserRateLimited(t, "before the reloads", calls["GenerateUserSig"]())

	ts.writeConfig(strings.Replace(perUserConfig(fixtureConfig, ""), "max_ttl: 720h", "max_ttl: 700h", 1))
	waitFor(t, "a reload with rate_per_user unchanged", func() bool {
		return len(ts.logs.lines(`"msg":"config in force"`, `"generation":2`)) == 1
	})
	wantUserRateLimited(t, "after a reload that kept rate_per_user", calls["GenerateUserSig"]())

	ts.writeConfig(perUserConfig(fixtureConfig, ", max_users: 1000"))
	waitFor(t, "a reload with rate_per_user changed", func() bool {
		return len(ts.logs.lines(`"msg":"config in force"`, `"generation":3`)) == 1
	})
	wantCode(t, "after a reload that changed rate_per_user", calls["GenerateUserSig"](), codes.OK, "")
}
