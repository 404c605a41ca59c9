package server_test

// Attacks on the OIDC callers (issue 14), from an adversarial review:
// made-up tokens, one app user's stalled calls, an issuer that never
// answers, rotations without a key id, and tokens that try to bring
// their own key.

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/usersig/usersig/bench/silent"
	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
)

// madeUp is a token anyone can make: the caller's public issuer and
// audience, the issuer's key id, and a signature that is not one.
func madeUp(is *testIssuer, aud string) string {
	now := time.Now().Unix()
	return forge(map[string]any{"alg": "RS256", "kid": "rs1"},
		map[string]any{"iss": is.url, "aud": aud, "sub": "x", "email_verified": true, "exp": now + 3600}, nil) + "c2lnbmF0dXJl"
}

// TestOIDCAttackMadeUpTokens: made-up tokens are refused from the
// headers, as unknown tokens are, over gRPC and HTTP. A bad signature may
// mean the issuer has rotated its keys, so one of them may cause a key set
// fetch (one per 5 s), and while it runs such tokens wait for it: 256
// stalled streams of them hold no caller's or app user's slot and at most
// the issuer's 64 of the waiting ones, and a genuine fresh token is
// served beside them.
func TestOIDCAttackMadeUpTokens(t *testing.T) {
	ts, is, rs, _ := startOIDC(t)
	forged := madeUp(is, "usersig-test")
	ts.seen.Store(forged, true)
	fetches := is.jwksFetches.Load()
	ts.holdStreams(256, "", "Bearer "+forged)
	for _, class := range []string{"app_user", "caller"} {
		if v := ts.metric(`usersig_calls_in_flight{class="` + class + `"}`); v != "0" {
			t.Errorf("%s calls in flight with 256 made-up tokens stalled: %s, want 0", class, v)
		}
	}
	if v, _ := strconv.Atoi(ts.metric(`usersig_calls_in_flight{class="unverified_id_token"}`)); v > 64 {
		t.Errorf("made-up tokens waiting for the issuer: %d, want at most 64", v)
	}
	if got := is.jwksFetches.Load() - fetches; got > 1 {
		t.Errorf("256 made-up tokens cost the issuer %d key set fetches, want at most 1", got)
	}
	if v := ts.metric(`usersig_auth_failures_total{reason="id_token_signature"}`); v == "" || v == "0" {
		t.Errorf("the made-up tokens were not refused for their signature: %q", v)
	}
	c := is.claims("usersig-test", "alice")
	c["email_verified"] = true
	tok := is.sign(rs, c)
	ts.seen.Store(tok, true)
	if _, err := generate(ts, tok, &usersigv1.GenerateUserSigRequest{}); err != nil {
		t.Fatalf("a fresh genuine token beside the made-up ones: %v", err)
	}

	// Over HTTP: refused from the headers, before the body is read.
	conn, err := net.Dial("tcp", ts.srv.APIAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.Write([]byte("POST /v1/usersig:generate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + forged +
		"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")) // and never the body
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a made-up token whose body never comes: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("HTTP answer to a made-up token: %d, want 401", resp.StatusCode)
	}
}

// TestOIDCAttackOneAppUser: one app user, with a genuine token, cannot
// hold the callers' slots, or more than 8 of the app users' own.
func TestOIDCAttackOneAppUser(t *testing.T) {
	ts, is, rs, _ := startOIDC(t)
	c := is.claims("usersig-test", "mallory")
	c["email_verified"] = true
	tok := is.sign(rs, c)
	ts.seen.Store(tok, true)
	if _, err := generate(ts, tok, &usersigv1.GenerateUserSigRequest{}); err != nil {
		t.Fatal(err)
	}
	ts.holdStreams(64, "", "Bearer "+tok)
	waitFor(t, "mallory's 8 calls in flight", func() bool {
		return ts.metric(`usersig_calls_in_flight{class="app_user"}`) == "8"
	})
	if v := ts.metric(`usersig_calls_refused_total{limit="max_calls_per_app_user"}`); v != "56" {
		t.Errorf("refused beyond 8 calls of one user: %q, want 56", v)
	}
	if v := ts.metric(`usersig_calls_in_flight{class="caller"}`); v != "0" {
		t.Errorf("an app user's calls took callers' slots: %s", v)
	}
	// The backend and another app user are served.
	if _, err := generate(ts, tokBackend, &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "backend_user"}); err != nil {
		t.Fatalf("backend: %v", err)
	}
	c["sub"] = "alice"
	other := is.sign(rs, c)
	ts.seen.Store(other, true)
	if _, err := generate(ts, other, &usersigv1.GenerateUserSigRequest{}); err != nil {
		t.Fatalf("another app user: %v", err)
	}
}

// TestOIDCAttackIssuerNeverAnswers: an issuer whose address takes
// connections and never answers makes its users' calls UNAVAILABLE after a
// short wait, at most 64 of them waiting, and another issuer's users are
// served meanwhile.
func TestOIDCAttackIssuerNeverAnswers(t *testing.T) {
	holeURL := "http://" + silent.Listen(t)
	good := newTestIssuer(t)
	es := good.newKey("es1", jose.ES256)
	good.publish(es)
	ts := startServer(t, fixtureConfig+`
  - name: down-users
    oidc: {issuer: "`+holeURL+`", audience: usersig-down}
    apps: [1400000000]
    methods: [GenerateUserSig]
  - name: good-users
    oidc: {issuer: "`+good.url+`", audience: usersig-good}
    apps: [1400000000]
    methods: [GenerateUserSig]
`)
	now := time.Now().Unix()
	downTok := forge(map[string]any{"alg": "RS256", "kid": "k"},
		map[string]any{"iss": holeURL, "aud": "usersig-down", "sub": "d", "exp": now + 3600}, nil) + "c2ln"
	ts.seen.Store(downTok, true)
	// 300 calls at once for the silent issuer, as at a busy start.
	var wg sync.WaitGroup
	codesSeen := map[codes.Code]int{}
	var cmu sync.Mutex
	start := time.Now()
	for range 10 {
		client := usersigv1.NewUserSigServiceClient(ts.dial())
		for range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := client.GenerateUserSig(ts.as(downTok), &usersigv1.GenerateUserSigRequest{})
				cmu.Lock()
				codesSeen[status.Code(err)]++
				cmu.Unlock()
			}()
		}
	}
	time.Sleep(200 * time.Millisecond)
	if v, _ := strconv.Atoi(ts.metric(`usersig_calls_in_flight{class="unverified_id_token"}`)); v > 64 {
		t.Errorf("calls waiting for the silent issuer: %d, want at most 64", v)
	}
	tok := good.sign(es, good.claims("usersig-good", "good_user"))
	ts.seen.Store(tok, true)
	if _, err := generate(ts, tok, &usersigv1.GenerateUserSigRequest{}); err != nil {
		t.Errorf("a healthy issuer's user while another issuer never answers: %v", err)
	}
	wg.Wait()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the silent issuer's calls took %v to be answered", d)
	}
	if codesSeen[codes.Unavailable] != 300 {
		t.Errorf("the silent issuer's calls: %v, want 300 UNAVAILABLE", codesSeen)
	}
}

// TestOIDCAttackBringYourOwnKey: a token that carries its own key (jwk),
// or points at one (jku, x5u), is verified with the issuer's keys only;
// a key set with symmetric or private keys, or keys of another algorithm,
// lends none of them to a token.
func TestOIDCAttackBringYourOwnKey(t *testing.T) {
	ts, is, rs, _ := startOIDC(t)
	mine, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	claims := is.claims("usersig-test", "mallory")
	claims["email_verified"] = true
	payload, _ := json.Marshal(claims)
	for _, h := range []struct {
		name string
		opts *jose.SignerOptions
	}{
		{"embedded jwk", (&jose.SignerOptions{EmbedJWK: true}).WithHeader("kid", "es1")},
		{"jku", (&jose.SignerOptions{}).WithHeader("kid", "es1").WithHeader("jku", "http://127.0.0.1:1/keys")},
		{"x5u", (&jose.SignerOptions{}).WithHeader("kid", "es1").WithHeader("x5u", "http://127.0.0.1:1/cert")},
	} {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: mine}, h.opts)
		if err != nil {
			t.Fatal(err)
		}
		jws, err := s.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := jws.CompactSerialize()
		ts.seen.Store(tok, true)
		_, err = generate(ts, tok, &usersigv1.GenerateUserSigRequest{})
		wantRefusal(t, h.name, err, codes.Unauthenticated, tok, "signature")
	}

	// The issuer's key set now also holds a symmetric key and a private
	// key under new ids, and its RSA key under an ES256 id: none verifies.
	secret := []byte("0123456789abcdef0123456789abcdef")
	priv := is.newKey("priv1", jose.ES256)
	is.mu.Lock()
	is.extra = []jose.JSONWebKey{
		{Key: secret, KeyID: "oct1", Algorithm: "HS256", Use: "sig"},
		{Key: priv.priv, KeyID: "priv1", Algorithm: "ES256", Use: "sig"},
		{Key: rs.priv.Public(), KeyID: "mixed", Algorithm: "ES256", Use: "sig"},
	}
	is.mu.Unlock()
	for _, tc := range []struct{ name, tok string }{
		{"HS256 with a symmetric key of the key set", forge(map[string]any{"alg": "HS256", "kid": "oct1"}, claims, secret)},
		{"a private key of the key set", is.sign(priv, claims)},
		{"an RS256 token under a key id whose key says ES256", is.sign(&issuerKey{kid: "mixed", alg: jose.RS256, priv: rs.priv}, claims)},
	} {
		ts.seen.Store(tc.tok, true)
		_, err := generate(ts, tc.tok, &usersigv1.GenerateUserSigRequest{})
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: %v, want UNAUTHENTICATED", tc.name, err)
		}
	}
}

// TestOIDCRotationWithoutNewKeyID: an issuer that signs without a key id,
// or puts a new key under an old id, is still followed within seconds.
func TestOIDCRotationWithoutNewKeyID(t *testing.T) {
	ts, is, _, _ := startOIDC(t)
	c := is.claims("usersig-test", "after")
	c["email_verified"] = true
	for _, tc := range []struct {
		name string
		key  *issuerKey
	}{
		{"no key id", is.newKey("", jose.RS256)},
		{"the old key id, a new key", is.newKey("rs1", jose.RS256)},
	} {
		is.publish(tc.key)
		tok := is.sign(tc.key, c)
		ts.seen.Store(tok, true)
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, err := generate(ts, tok, &usersigv1.GenerateUserSigRequest{})
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: 20 s after the rotation its tokens are still refused: %v", tc.name, err)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
}

// TestOIDCTimesAndReload: nbf within the 30 s leeway passes, beyond it
// not; a cached token stops working once a reload removes its caller; an
// unknown key while the issuer is down is UNAVAILABLE.
func TestOIDCTimesAndReload(t *testing.T) {
	ts, is, rs, _ := startOIDC(t)
	now := time.Now().Unix()
	c := is.claims("usersig-test", "alice")
	c["email_verified"] = true
	c["nbf"] = now + 10
	soon := is.sign(rs, c)
	ts.seen.Store(soon, true)
	if _, err := generate(ts, soon, &usersigv1.GenerateUserSigRequest{}); err != nil {
		t.Errorf("nbf 10 s ahead, within the leeway: %v", err)
	}
	c["nbf"] = now + 120
	later := is.sign(rs, c)
	ts.seen.Store(later, true)
	_, err := generate(ts, later, &usersigv1.GenerateUserSigRequest{})
	wantRefusal(t, "nbf 2 minutes ahead", err, codes.Unauthenticated, later, "not yet valid")

	// The cached token's caller goes away.
	ts.writeConfig(strings.Replace(oidcConfig(is), "audience: usersig-test", "audience: usersig-renamed", 1))
	if err := ts.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	_, err = generate(ts, soon, &usersigv1.GenerateUserSigRequest{})
	wantRefusal(t, "a cached token after its caller went", err, codes.Unauthenticated, soon, "no caller trusts")

	// The issuer goes down; a token of a key it has not published yet.
	is.down.Store(true)
	c = is.claims("usersig-renamed", "bob")
	c["email_verified"] = true
	time.Sleep(5 * time.Second) // past the refetch spacing, so that the token asks
	tok := is.sign(is.newKey("rs-new", jose.RS256), c)
	ts.seen.Store(tok, true)
	_, err = generate(ts, tok, &usersigv1.GenerateUserSigRequest{})
	wantRefusal(t, "an unknown key while the issuer is down", err, codes.Unavailable, tok, "identity provider")
	if v := ts.metric(`usersig_auth_failures_total{reason="issuer_unavailable"}`); v == "" || v == "0" {
		t.Errorf("usersig_auth_failures_total{reason=\"issuer_unavailable\"} = %q", v)
	}
}
