package server_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
	"github.com/usersig/usersig/signer"
)

// oidcConfig is the fixture with OIDC callers of the test issuer, by
// audience:
//   - usersig-test: every method, email_verified required;
//   - usersig-pattern: user ids matching ^u_, from the uid claim;
//   - usersig-groups: members of the group "im-users" only;
//   - usersig-rated: two calls per user, then none for a long while.
func oidcConfig(is *testIssuer) string {
	return fixtureConfig + `
  - name: app-users
    oidc:
      issuer: ` + is.url + `
      audience: usersig-test
      required_claims: {email_verified: true}
    apps: [1400000000]
    methods: [GenerateUserSig, VerifyUserSig, GeneratePrivateMapKey]
    max_ttl: 24h
  - name: pattern-users
    oidc:
      issuer: ` + is.url + `
      audience: usersig-pattern
      user_id_claim: uid
    apps: [1400000000]
    methods: [GenerateUserSig]
    user_id_pattern: '^u_[0-9]+$'
  - name: group-users
    oidc:
      issuer: ` + is.url + `
      audience: usersig-groups
      required_claims: {groups: im-users}
    apps: [1400000000]
    methods: [GenerateUserSig]
  - name: rated-users
    oidc:
      issuer: ` + is.url + `
      audience: usersig-rated
    apps: [1400000000]
    methods: [GenerateUserSig]
    rate_per_user: {per_second: 0.001, burst: 2}
http_api:
  listen: 127.0.0.1:0
  cors:
    allowed_origins: [https://app.example.com]
`
}

// startOIDC serves oidcConfig with an issuer publishing an RS256 and an
// ES256 key.
func startOIDC(t *testing.T) (*testServer, *testIssuer, *issuerKey, *issuerKey) {
	is := newTestIssuer(t)
	rs, es := is.newKey("rs1", jose.RS256), is.newKey("es1", jose.ES256)
	is.publish(rs, es)
	ts := startServer(t, oidcConfig(is))
	// Discovery runs in the background from the start; the tests count
	// the issuer's fetches from its end.
	waitFor(t, "the issuer's key set fetched", func() bool { return is.jwksFetches.Load() > 0 })
	return ts, is, rs, es
}

func generate(ts *testServer, token string, req *usersigv1.GenerateUserSigRequest) (*usersigv1.GenerateUserSigResponse, error) {
	return ts.client.GenerateUserSig(ts.as(token), req)
}

// wantRefusal fails unless err has the code and its message holds each of
// subs and no part of the token.
func wantRefusal(t *testing.T, name string, err error, code codes.Code, token string, subs ...string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Errorf("%s: got %v %q, want %v", name, st.Code(), st.Message(), code)
		return
	}
	for _, s := range subs {
		if !strings.Contains(st.Message(), s) {
			t.Errorf("%s: message %q does not say %q", name, st.Message(), s)
		}
	}
	for _, part := range strings.Split(token, ".") {
		if len(part) >= 8 && strings.Contains(st.Message(), part[:8]) {
			t.Errorf("%s: message %q holds part of the token", name, st.Message())
		}
	}
}

func TestOIDCExchange(t *testing.T) {
	ts, is, rs, es := startOIDC(t)
	for _, k := range []*issuerKey{rs, es} {
		t.Run(string(k.alg), func(t *testing.T) {
			sub := "user_" + strings.ToLower(string(k.alg))
			c := is.claims("usersig-test", sub)
			c["email_verified"] = true
			tok := is.sign(k, c)

			// user_id left out: the token's subject.
			r, err := generate(ts, tok, &usersigv1.GenerateUserSigRequest{})
			if err != nil {
				t.Fatalf("GenerateUserSig: %v", err)
			}
			if r.GetUserId() != sub || r.GetSdkAppId() != appA {
				t.Fatalf("answer for %q in %d, want %q in %d", r.GetUserId(), r.GetSdkAppId(), sub, appA)
			}
			key, _ := signer.NewKey([]byte(keyPrimary))
			if v := signer.Verify(r.GetUserSig(), appA, sub, []*signer.Key{key}, ts.clock.Now()); v.Status != signer.Valid {
				t.Fatalf("the UserSig does not verify for the subject: %v", v.Status)
			}
			// user_id repeated: fine; another: refused, whatever the method.
			if _, err := generate(ts, tok, &usersigv1.GenerateUserSigRequest{UserId: sub}); err != nil {
				t.Fatalf("user_id equal to the subject: %v", err)
			}
			_, err = generate(ts, tok, &usersigv1.GenerateUserSigRequest{UserId: "someone_else"})
			wantRefusal(t, "another user_id", err, codes.PermissionDenied, tok, "user_id", `"sub"`)
			_, err = ts.client.GeneratePrivateMapKey(ts.as(tok), &usersigv1.GeneratePrivateMapKeyRequest{
				UserId: "someone_else", Room: &usersigv1.GeneratePrivateMapKeyRequest_RoomId{RoomId: 1234}, PrivilegeMap: 255})
			wantRefusal(t, "another user_id, PrivateMapKey", err, codes.PermissionDenied, tok, "user_id")
			pm, err := ts.client.GeneratePrivateMapKey(ts.as(tok), &usersigv1.GeneratePrivateMapKeyRequest{
				Room: &usersigv1.GeneratePrivateMapKeyRequest_RoomId{RoomId: 1234}, PrivilegeMap: 255})
			if err != nil || pm.GetUserId() != sub {
				t.Fatalf("PrivateMapKey for the subject: %v, %q", err, pm.GetUserId())
			}
			ts.record(pm)
			v, err := ts.client.VerifyUserSig(ts.as(tok), &usersigv1.VerifyUserSigRequest{UserSig: r.GetUserSig()})
			if err != nil || !v.GetValid() {
				t.Fatalf("VerifyUserSig of its own ticket: %v %v", err, v)
			}
			_, err = ts.client.VerifyUserSig(ts.as(tok), &usersigv1.VerifyUserSigRequest{UserSig: r.GetUserSig(), UserId: "someone_else"})
			wantRefusal(t, "another user_id, VerifyUserSig", err, codes.PermissionDenied, tok, "user_id")
			ts.seen.Store(tok, true)
		})
	}

	// The audit line names the caller and the user.
	if lines := ts.logs.lines(`"ticket issued"`, `"caller":"app-users"`, `"user_id":"user_es256"`); len(lines) == 0 {
		t.Errorf("no audit line names the caller and the user: %s", ts.logs.lines(`"ticket issued"`))
	}
	// The other callers work beside them.
	if _, err := generate(ts, tokBackend, &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "backend_user"}); err != nil {
		t.Fatalf("backend: %v", err)
	}
	// The caller's user_id_pattern holds the claim, here uid.
	c := is.claims("usersig-pattern", "ignored_sub")
	c["uid"] = "u_42"
	tok := is.sign(rs, c)
	if r, err := generate(ts, tok, &usersigv1.GenerateUserSigRequest{}); err != nil || r.GetUserId() != "u_42" {
		t.Fatalf("uid claim: %v %q", err, r.GetUserId())
	}
	c["uid"] = "x_42"
	tok = is.sign(rs, c)
	_, err := generate(ts, tok, &usersigv1.GenerateUserSigRequest{})
	wantRefusal(t, "claim outside user_id_pattern", err, codes.PermissionDenied, tok, "user_id_pattern")
	// A group claim: the required value is one of its elements.
	c = is.claims("usersig-groups", "grouped")
	c["groups"] = []string{"staff", "im-users"}
	if _, err := generate(ts, is.sign(es, c), &usersigv1.GenerateUserSigRequest{}); err != nil {
		t.Fatalf("member of the group: %v", err)
	}
	c["groups"] = []string{"staff"}
	tok = is.sign(es, c)
	_, err = generate(ts, tok, &usersigv1.GenerateUserSigRequest{})
	wantRefusal(t, "not a member", err, codes.PermissionDenied, tok, `"groups"`, "required value")
	// A method the caller may not call.
	c = is.claims("usersig-pattern", "s")
	c["uid"] = "u_1"
	tok = is.sign(rs, c)
	_, err = ts.client.VerifyUserSig(ts.as(tok), &usersigv1.VerifyUserSigRequest{UserSig: "x"})
	wantRefusal(t, "method", err, codes.PermissionDenied, tok, "pattern-users", "VerifyUserSig")
}

func TestOIDCRefusedTokens(t *testing.T) {
	ts, is, rs, es := startOIDC(t)
	valid := func() map[string]any {
		c := is.claims("usersig-test", "alice")
		c["email_verified"] = true
		return c
	}
	with := func(change func(map[string]any)) map[string]any {
		c := valid()
		change(c)
		return c
	}
	stranger := is.newKey("rs1", jose.RS256) // the issuer's key id, another key
	unpublished := is.newKey("rs9", jose.RS256)
	good := is.sign(rs, valid())
	now := time.Now().Unix()
	header := map[string]any{"alg": "HS256", "kid": "rs1", "typ": "JWT"}

	type row struct {
		name  string
		token string
		code  codes.Code
		says  string
	}
	rows := []row{
		{"malformed", "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln", codes.Unauthenticated, "malformed"},
		{"tampered payload", withPayload(good, with(func(c map[string]any) { c["sub"] = "mallory" })), codes.Unauthenticated, "signature"},
		{"signed by another key with the issuer's key id", is.sign(stranger, valid()), codes.Unauthenticated, "signature"},
		{"unknown key", is.sign(unpublished, valid()), codes.Unauthenticated, "key its issuer does not publish"},
		{"wrong issuer", is.sign(rs, with(func(c map[string]any) { c["iss"] = "https://evil.example.com" })), codes.Unauthenticated, "no caller trusts"},
		{"wrong audience", is.sign(rs, with(func(c map[string]any) { c["aud"] = "another-app" })), codes.Unauthenticated, "no caller trusts"},
		{"audiences of two callers", is.sign(rs, with(func(c map[string]any) { c["aud"] = []string{"usersig-test", "usersig-groups"} })), codes.Unauthenticated, "more than one caller"},
		{"expired", is.sign(es, with(func(c map[string]any) { c["exp"] = now - 120 })), codes.Unauthenticated, "expired"},
		{"no exp", is.sign(es, with(func(c map[string]any) { delete(c, "exp") })), codes.Unauthenticated, "expired"},
		{"not yet valid", is.sign(es, with(func(c map[string]any) { c["nbf"] = now + 600 })), codes.Unauthenticated, "not yet valid"},
		{"alg none", forge(map[string]any{"alg": "none"}, valid(), nil), codes.Unauthenticated, "algorithm"},
		{"HS256 keyed with the public key (PEM)", forge(header, valid(), publicKeyBytes(t, rs)[0]), codes.Unauthenticated, "algorithm"},
		{"HS256 keyed with the public key (DER)", forge(header, valid(), publicKeyBytes(t, rs)[1]), codes.Unauthenticated, "algorithm"},
		{"required claim missing", is.sign(rs, with(func(c map[string]any) { delete(c, "email_verified") })), codes.PermissionDenied, `"email_verified" is missing`},
		{"required claim as a string", is.sign(rs, with(func(c map[string]any) { c["email_verified"] = "true" })), codes.PermissionDenied, `"email_verified" does not have the required value`},
		{"required claim false", is.sign(rs, with(func(c map[string]any) { c["email_verified"] = false })), codes.PermissionDenied, "required value"},
		{"subject not a string", is.sign(rs, with(func(c map[string]any) { c["sub"] = 12345 })), codes.PermissionDenied, "not a string"},
		{"subject missing", is.sign(rs, with(func(c map[string]any) { delete(c, "sub") })), codes.PermissionDenied, `"sub" is missing`},
		{"subject not a Tencent UserID", is.sign(rs, with(func(c map[string]any) { c["sub"] = "auth0|5f2b8c1d" })), codes.PermissionDenied, signer.RuleUserID},
		{"subject too long", is.sign(rs, with(func(c map[string]any) { c["sub"] = strings.Repeat("a", 33) })), codes.PermissionDenied, signer.RuleUserID},
	}
	for _, r := range rows {
		_, err := generate(ts, r.token, &usersigv1.GenerateUserSigRequest{})
		wantRefusal(t, r.name, err, r.code, r.token, r.says)
		ts.seen.Store(r.token, true)
	}
	// Within the clock leeway, an expired token still passes.
	if _, err := generate(ts, is.sign(es, with(func(c map[string]any) { c["exp"] = now - 5 })), &usersigv1.GenerateUserSigRequest{}); err != nil {
		t.Errorf("a token expired 5s ago, within the leeway: %v", err)
	}
	// A refused token is refused again, not cached: the tampered one twice.
	_, err := generate(ts, rows[1].token, &usersigv1.GenerateUserSigRequest{})
	wantRefusal(t, "tampered, again", err, codes.Unauthenticated, rows[1].token, "signature")
	for _, reason := range []string{"id_token_malformed", "id_token_signature", "id_token_unknown_key", "id_token_issuer",
		"id_token_expired", "id_token_not_yet_valid", "id_token_algorithm", "id_token_claims", "id_token_user_id"} {
		if reason == "id_token_user_id" {
			continue // TestOIDCExchange's
		}
		if v := ts.metric(`usersig_auth_failures_total{reason="` + reason + `"}`); v == "" || v == "0" {
			t.Errorf("usersig_auth_failures_total{reason=%q} = %q", reason, v)
		}
	}
	// A bearer token of the shape of a JWT that is a caller's token is
	// still that caller's; one that is nothing is unknown.
	_, err = generate(ts, "a.b", &usersigv1.GenerateUserSigRequest{})
	wantRefusal(t, "not a JWT", err, codes.Unauthenticated, "", "unknown bearer token")
}

func TestOIDCRatePerUser(t *testing.T) {
	ts, is, rs, _ := startOIDC(t)
	c := is.claims("usersig-rated", "rated_user")
	tok := is.sign(rs, c)
	// A refused call (another user_id) spends nothing of the budget.
	_, err := generate(ts, tok, &usersigv1.GenerateUserSigRequest{UserId: "other"})
	wantRefusal(t, "another user", err, codes.PermissionDenied, tok)
	for i := range 2 {
		if _, err := generate(ts, tok, &usersigv1.GenerateUserSigRequest{}); err != nil {
			t.Fatalf("call %d within the burst: %v", i, err)
		}
	}
	_, err = generate(ts, tok, &usersigv1.GenerateUserSigRequest{})
	wantRefusal(t, "over the burst", err, codes.ResourceExhausted, tok, "rate_per_user")
	// Another user of the same caller has its own budget.
	c["sub"] = "second_user"
	if _, err := generate(ts, is.sign(rs, c), &usersigv1.GenerateUserSigRequest{}); err != nil {
		t.Fatalf("another user: %v", err)
	}
}

func TestOIDCKeyRotation(t *testing.T) {
	ts, is, rs, _ := startOIDC(t)
	valid := func(sub string) map[string]any {
		c := is.claims("usersig-test", sub)
		c["email_verified"] = true
		return c
	}
	if _, err := generate(ts, is.sign(rs, valid("before")), &usersigv1.GenerateUserSigRequest{}); err != nil {
		t.Fatalf("before the rotation: %v", err)
	}
	// The issuer rotates: a new key, the old one withdrawn. The first
	// token of the new key fetches the key set again, at once.
	fetches := is.jwksFetches.Load()
	rs2 := is.newKey("rs2", jose.RS256)
	is.publish(rs2)
	tok := is.sign(rs2, valid("after"))
	if _, err := generate(ts, tok, &usersigv1.GenerateUserSigRequest{}); err != nil {
		t.Fatalf("the first token of the new key: %v", err)
	}
	if got := is.jwksFetches.Load() - fetches; got != 1 {
		t.Errorf("the rotation cost %d key set fetches, want 1", got)
	}
	// The old key is withdrawn: its new tokens fail (its verified ones
	// stay cached until they expire).
	_, err := generate(ts, is.sign(rs, valid("withdrawn")), &usersigv1.GenerateUserSigRequest{})
	wantRefusal(t, "withdrawn key", err, codes.Unauthenticated, "", "key its issuer does not publish")

	// A flood of made-up key ids, concurrent: a few fetches at most.
	fetches = is.jwksFetches.Load()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				forged := is.newKey(fmt.Sprintf("forged-%d-%d", w, i), jose.ES256)
				// No deadline: a connection with 64 refused calls that carry
				// one is closed (connctx.go), which is another test's.
				ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+is.sign(forged, valid("mallory")))
				_, err := ts.client.GenerateUserSig(ctx, &usersigv1.GenerateUserSigRequest{})
				if status.Code(err) != codes.Unauthenticated {
					t.Errorf("forged key id: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if got, most := is.jwksFetches.Load()-fetches, 2+int64(elapsed/(5*time.Second)); got > most {
		t.Errorf("400 tokens with made-up key ids in %v cost the issuer %d key set fetches, want at most %d", elapsed, got, most)
	}

	// A real rotation right after the flood is still seen within seconds.
	rs3 := is.newKey("rs3", jose.RS256)
	is.publish(rs2, rs3)
	tok = is.sign(rs3, valid("later"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := generate(ts, tok, &usersigv1.GenerateUserSigRequest{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new key is still refused after 30s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A reload keeps the issuer: no discovery again.
	discoveries := is.discoveries.Load()
	ts.writeConfig(strings.Replace(oidcConfig(is), "max_ttl: 24h", "max_ttl: 12h", 1))
	if err := ts.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := generate(ts, is.sign(rs3, valid("reloaded")), &usersigv1.GenerateUserSigRequest{}); err != nil {
		t.Fatalf("after a reload: %v", err)
	}
	if got := is.discoveries.Load(); got != discoveries {
		t.Errorf("a reload discovered the issuer again (%d discoveries, was %d)", got, discoveries)
	}
}

func TestOIDCUnreachableIssuer(t *testing.T) {
	is := newTestIssuer(t)
	rs := is.newKey("rs1", jose.RS256)
	is.publish(rs)
	is.down.Store(true)
	ts := startServer(t, oidcConfig(is)) // starts all the same
	// A second issuer whose key set is too large to read.
	huge := newTestIssuer(t)
	huge.bloated.Store(true)
	ts.writeConfig(strings.Replace(oidcConfig(is), "\n  - name: pattern-users", `
  - name: huge-issuer
    oidc: {issuer: "`+huge.url+`", audience: usersig-test}
    apps: [1400000000]
    methods: [GenerateUserSig]
  - name: pattern-users`, 1))
	if err := ts.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	htok := huge.sign(huge.newKey("k", jose.ES256), huge.claims("usersig-test", "u"))
	ts.seen.Store(htok, true)
	_, err := generate(ts, htok, &usersigv1.GenerateUserSigRequest{})
	wantRefusal(t, "key set too large", err, codes.Unavailable, htok, "identity provider")
	if lines := ts.logs.lines("cannot discover the identity provider", "larger than 1048576 bytes"); len(lines) != 1 {
		t.Errorf("want one warning about the key set's size, got %q", ts.logs.lines("cannot discover"))
	}

	if _, err := generate(ts, tokBackend, &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u1"}); err != nil {
		t.Fatalf("another caller, while the issuer is down: %v", err)
	}
	c := is.claims("usersig-test", "alice")
	c["email_verified"] = true
	tok := is.sign(rs, c)
	ts.seen.Store(tok, true)
	start := time.Now()
	_, err = generate(ts, tok, &usersigv1.GenerateUserSigRequest{})
	wantRefusal(t, "issuer down", err, codes.Unavailable, tok, "identity provider")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the call waited %v for an issuer known to be down", d)
	}
	// Retried with backoff (1s, 2s, ...), logged once for the streak.
	deadline := time.Now().Add(20 * time.Second)
	for is.discoveries.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := is.discoveries.Load(); n < 3 {
		t.Fatalf("discovery was tried %d times in 20s, want retries", n)
	}
	if lines := ts.logs.lines("cannot discover the identity provider", is.url+`"`); len(lines) != 1 {
		t.Errorf("%d warnings for one failure streak, want 1: %q", len(lines), lines)
	}
	// The issuer comes back: its users are served.
	is.down.Store(false)
	for {
		_, err := generate(ts, tok, &usersigv1.GenerateUserSigRequest{})
		if err == nil {
			break
		}
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline.Add(30*time.Second)) {
			t.Fatalf("after the issuer came back: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if lines := ts.logs.lines("reachable again"); len(lines) != 1 {
		t.Errorf("want one line when the issuer is back, got %q", lines)
	}
}

func TestOIDCOverHTTP(t *testing.T) {
	ts, is, _, es := startOIDC(t)
	api := newAPIClient(ts, "http", nil)
	c := is.claims("usersig-test", "browser_user")
	c["email_verified"] = true
	tok := is.sign(es, c)
	ts.seen.Store(tok, true)

	// A browser app's preflight, then its call.
	pre := api.call(http.MethodOptions, "/v1/usersig:generate", "", "Origin: https://app.example.com",
		"Access-Control-Request-Method: POST", "Access-Control-Request-Headers: authorization, content-type")
	if pre.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("preflight: %d %v", pre.code, pre.header)
	}
	a := api.post("/v1/usersig:generate", `{}`, tok, "Origin: https://app.example.com")
	if a.code != http.StatusOK || a.body["userId"] != "browser_user" || a.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("POST with an ID token: %d %s %v", a.code, a.raw, a.header)
	}
	if us, _ := a.body["userSig"].(string); us != "" {
		ts.seen.Store(us, true)
	}
	a = api.post("/v1/usersig:generate", `{"userId":"someone_else"}`, tok, "Origin: https://app.example.com")
	wantError(t, "another user over HTTP", a, http.StatusForbidden, codes.PermissionDenied, "")
	// A tampered token over HTTP: 401, refused as over gRPC.
	bad := withPayload(tok, is.claims("usersig-test", "mallory"))
	a = api.post("/v1/usersig:generate", `{}`, bad, "Origin: https://app.example.com")
	wantError(t, "tampered over HTTP", a, http.StatusUnauthorized, codes.Unauthenticated, "")
	if strings.Contains(a.raw, strings.Split(bad, ".")[1][:12]) {
		t.Errorf("the answer holds part of the token: %s", a.raw)
	}
}

// TestOIDCPrivateCA: an https issuer whose certificate chains to the
// caller's ca_file, not to the system's roots.
func TestOIDCPrivateCA(t *testing.T) {
	is := newTestIssuerOn(t, httptest.NewTLSServer)
	es := is.newKey("es1", jose.ES256)
	is.publish(es)
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.srv.Certificate().Raw}))
	config := fixtureConfig + `
  - name: app-users
    oidc:
      issuer: ` + is.url + `
      audience: usersig-test
      ca_file: {{dir}}/issuer-ca.pem
    apps: [1400000000]
    methods: [GenerateUserSig]
  - name: system-roots
    oidc:
      issuer: ` + is.url + `
      audience: usersig-system
    apps: [1400000000]
    methods: [GenerateUserSig]
`
	ts := startServer(t, config, func(ts *testServer) { ts.writeFile("issuer-ca.pem", caPEM, 0o600) })
	tok := is.sign(es, is.claims("usersig-test", "tls_user"))
	ts.seen.Store(tok, true)
	if r, err := generate(ts, tok, &usersigv1.GenerateUserSigRequest{}); err != nil || r.GetUserId() != "tls_user" {
		t.Fatalf("issuer behind a private CA: %v", err)
	}
	// Without the CA, the issuer's certificate is not trusted: the
	// caller's calls are UNAVAILABLE, the other's are served.
	tok = is.sign(es, is.claims("usersig-system", "tls_user"))
	ts.seen.Store(tok, true)
	_, err := generate(ts, tok, &usersigv1.GenerateUserSigRequest{})
	wantRefusal(t, "issuer not trusted", err, codes.Unavailable, tok, "identity provider")
	if lines := ts.logs.lines("cannot discover the identity provider", "certificate"); len(lines) != 1 {
		t.Errorf("want one warning naming the certificate problem, got %q", ts.logs.lines("cannot discover"))
	}
}
