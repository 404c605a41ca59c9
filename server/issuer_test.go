package server_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// testIssuer is a real OpenID Connect issuer on loopback: a discovery
// document and a JSON Web Key Set over HTTP, and real signatures.
type testIssuer struct {
	t   testing.TB
	srv *httptest.Server
	url string // the issuer, as tokens name it

	mu        sync.Mutex
	published []*issuerKey
	extra     []jose.JSONWebKey // published as they are, beside

	discoveries, jwksFetches atomic.Int64
	down                     atomic.Bool // answer 503 to everything
	bloated                  atomic.Bool // answer a key set of 2 MiB
}

// issuerKey is one signing key of the issuer.
type issuerKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func newTestIssuer(t testing.TB) *testIssuer { return newTestIssuerOn(t, httptest.NewServer) }

// newTestIssuerOn is newTestIssuer served by start: httptest.NewTLSServer
// for an https issuer.
func newTestIssuerOn(t testing.TB, start func(http.Handler) *httptest.Server) *testIssuer {
	t.Helper()
	is := &testIssuer{t: t}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		is.discoveries.Add(1)
		if is.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                is.url,
			"jwks_uri":                              is.url + "/keys",
			"authorization_endpoint":                is.url + "/authorize",
			"token_endpoint":                        is.url + "/token",
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		is.jwksFetches.Add(1)
		if is.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if is.bloated.Load() {
			w.Write([]byte(`{"keys":[],"padding":"` + strings.Repeat("x", 2<<20) + `"}`))
			return
		}
		is.mu.Lock()
		var set jose.JSONWebKeySet
		for _, k := range is.published {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
		}
		set.Keys = append(set.Keys, is.extra...)
		is.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(set)
	})
	is.srv = start(mux)
	is.url = is.srv.URL
	t.Cleanup(is.srv.Close)
	return is
}

// newKey makes a key, not yet published.
func (is *testIssuer) newKey(kid string, alg jose.SignatureAlgorithm) *issuerKey {
	is.t.Helper()
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case jose.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		is.t.Fatalf("test bug: no key for %s", alg)
	}
	if err != nil {
		is.t.Fatal(err)
	}
	return &issuerKey{kid: kid, alg: alg, priv: priv}
}

// publish makes keys the issuer's key set, in place of the ones before.
func (is *testIssuer) publish(keys ...*issuerKey) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.published = keys
}

// claims are a valid ID token's for the audience and subject, expiring
// in an hour; change them before signing.
func (is *testIssuer) claims(aud, sub string) map[string]any {
	now := time.Now().Unix()
	return map[string]any{"iss": is.url, "aud": aud, "sub": sub, "iat": now, "exp": now + 3600}
}

// sign signs claims with k, as the issuer does.
func (is *testIssuer) sign(k *issuerKey, claims map[string]any) string {
	is.t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.kid))
	if err != nil {
		is.t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		is.t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		is.t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		is.t.Fatal(err)
	}
	return tok
}

// forge builds a token with any header and a signature made by hand:
// HMAC-SHA256 keyed with hmacKey, or none when hmacKey is nil.
func forge(header, claims map[string]any, hmacKey []byte) string {
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(claims)
	signing := b64(h) + "." + b64(p)
	if hmacKey == nil {
		return signing + "."
	}
	m := hmac.New(sha256.New, hmacKey)
	m.Write([]byte(signing))
	return signing + "." + b64(m.Sum(nil))
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// publicKeyBytes are the encodings of k's public key an alg-confusion
// attacker would try as an HMAC key: PEM and DER.
func publicKeyBytes(t *testing.T, k *issuerKey) [][]byte {
	der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pem := "-----BEGIN PUBLIC KEY-----\n" + base64.StdEncoding.EncodeToString(der) + "\n-----END PUBLIC KEY-----\n"
	return [][]byte{[]byte(pem), der}
}

// withPayload swaps a signed token's payload for claims, keeping its
// header and signature: a tampered token.
func withPayload(token string, claims map[string]any) string {
	parts := strings.Split(token, ".")
	p, _ := json.Marshal(claims)
	return parts[0] + "." + b64(p) + "." + parts[2]
}
