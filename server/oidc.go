package server

// OIDC callers: a caller backed by an OpenID Connect issuer. An app sends
// its user's ID token as the bearer token; the token is routed to the
// caller whose issuer and audience it names, verified (go-oidc, with the
// issuer's keys from issuer.go), and its user id claim becomes the call's
// user id: the request's user_id may only repeat it.
//
// Verification happens once per token: a verified token is cached, keyed
// by its SHA-256 (which the token lookup computes anyway), until it
// expires. The tap (tap.go) identifies a cached token's caller and user
// at once; an uncached token is admitted into a pool of its own and
// verified by the auth interceptor, so that tokens nobody has verified
// can neither take callers' slots nor make the connection's reader wait.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/usersig/usersig/signer"
)

const (
	// idTokenLeeway is the clock skew allowed between the issuer and this
	// server, on exp and nbf.
	idTokenLeeway = 30 * time.Second
	// maxVerifiedTokens bounds the cache of verified ID tokens; a token
	// beyond it is verified again on its next call.
	maxVerifiedTokens = 16384
	// maxMaxCallsPerUser bounds oidc.max_calls_per_user.
	maxMaxCallsPerUser = 1024
	// maxIDTokenBytes bounds the tokens read as ID tokens: whatever fits
	// in a call's headers.
	maxIDTokenBytes = maxHeaderListSize
)

// oidcCaller is a caller's oidc section, compiled.
type oidcCaller struct {
	issuerURL string
	audience  string
	claim     string // the user id claim
	required  []requiredClaim
	caPEM     []byte
	// maxCallsPerUser bounds each user's calls in flight (tap.go).
	maxCallsPerUser int
	issuer          *issuer // bound by the reloader
	verifier        *oidc.IDTokenVerifier
}

// requiredClaim is a claim the token must carry with a value: a JSON
// scalar, as encoding/json decodes one.
type requiredClaim struct {
	name  string
	value any
}

func (c *checker) oidcCaller(field string, oc *OIDCConfig) *oidcCaller {
	o := &oidcCaller{issuerURL: oc.Issuer, audience: oc.Audience, claim: oc.UserIDClaim}
	if err := checkIssuerURL(oc.Issuer); err != nil {
		c.addf(field+".issuer", "%s", err)
	}
	if oc.Audience == "" {
		c.addf(field+".audience", "is required: the client id the tokens are issued to (their aud)")
	}
	if o.claim == "" {
		o.claim = "sub"
	}
	switch o.maxCallsPerUser = oc.MaxCallsPerUser; {
	case o.maxCallsPerUser == 0:
		o.maxCallsPerUser = DefaultMaxCallsPerUser
	case o.maxCallsPerUser < 1 || o.maxCallsPerUser > maxMaxCallsPerUser:
		c.addf(field+".max_calls_per_user", "must be 1 to %d", maxMaxCallsPerUser)
	}
	names := make([]string, 0, len(oc.RequiredClaims))
	for name := range oc.RequiredClaims {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v := oc.RequiredClaims[name]
		switch v.(type) {
		case string, bool, int, int64, uint64, float64:
		default:
			c.addf(fmt.Sprintf("%s.required_claims.%s", field, name), "must be a string, a number or a boolean")
			continue
		}
		b, err := json.Marshal(v)
		var jv any
		if err == nil {
			err = json.Unmarshal(b, &jv)
		}
		if err != nil {
			c.addf(fmt.Sprintf("%s.required_claims.%s", field, name), "must be a JSON value")
			continue
		}
		o.required = append(o.required, requiredClaim{name, jv})
	}
	if oc.CAFile != "" {
		pem, problems := readTrusted(oc.CAFile, false)
		for _, p := range problems {
			c.addf(field+".ca_file", "%s", p)
		}
		if problems == nil {
			if !x509.NewCertPool().AppendCertsFromPEM(pem) {
				c.addf(field+".ca_file", "%s holds no PEM certificate", oc.CAFile)
			}
			c.digest.add(oc.CAFile, pem)
			o.caPEM = pem
		}
	}
	return o
}

// checkIssuerURL: https, or http on a loopback address (development and
// tests); no query or fragment, as discovery appends to the path.
func checkIssuerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return errors.New("must be an https URL with a host and no query, fragment or user")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); (ip != nil && ip.IsLoopback()) || h == "localhost" {
			return nil
		}
		return errors.New("must be https (http only on a loopback address)")
	}
	return errors.New("must be an https URL")
}

// bindOIDC gives the policy's OIDC callers their issuers and verifiers.
func (p *policy) bindOIDC(r *issuers) {
	for _, c := range p.oidcCallers {
		o := c.oidc
		o.issuer = r.get(o.issuerURL, o.caPEM)
		o.verifier = oidc.NewVerifier(o.issuerURL, o.issuer, &oidc.Config{
			ClientID:             o.audience,
			SupportedSigningAlgs: algNames,
			// go-oidc has no leeway on exp: its clock runs idTokenLeeway late.
			Now: func() time.Time { return time.Now().Add(-idTokenLeeway) },
		})
	}
}

var algNames = func() []string {
	out := make([]string, len(allowedAlgs))
	for i, a := range allowedAlgs {
		out[i] = string(a)
	}
	return out
}()

// Errors of ID tokens: the class of problem, never the token or its claims.
var (
	errIDTokenMalformed   = status.Error(codes.Unauthenticated, "ID token: malformed (want a signed JWT: header.payload.signature)")
	errIDTokenAlgorithm   = status.Error(codes.Unauthenticated, "ID token: its signing algorithm is not allowed; allowed: "+strings.Join(algNames, ", "))
	errIDTokenSignature   = status.Error(codes.Unauthenticated, "ID token: the signature does not verify")
	errIDTokenUnknownKey  = status.Error(codes.Unauthenticated, "ID token: signed with a key its issuer does not publish")
	errIDTokenNoCaller    = status.Error(codes.Unauthenticated, "ID token: no caller trusts its issuer (iss) and audience (aud)")
	errIDTokenAmbiguous   = status.Error(codes.Unauthenticated, "ID token: its audiences (aud) match more than one caller")
	errIDTokenExpired     = status.Error(codes.Unauthenticated, "ID token: expired (exp)")
	errIDTokenNotYetValid = status.Error(codes.Unauthenticated, "ID token: not yet valid (nbf)")
	errIssuerUnavailable  = withRetryInfo(status.New(codes.Unavailable, "the ID token's identity provider cannot be reached (discovery or keys); retry later"), 5*time.Second)
	errIssuerBusy         = withRetryInfo(status.New(codes.Unavailable, "too many calls wait for the ID token's identity provider already; retry later"), 5*time.Second)
)

// idTokenErrors answers each signature failure class.
var idTokenErrors = map[string]error{
	authIDTokenMalformed:  errIDTokenMalformed,
	authIDTokenSignature:  errIDTokenSignature,
	authIDTokenUnknownKey: errIDTokenUnknownKey,
	authIssuerUnavailable: errIssuerUnavailable,
}

// looksLikeJWT: three base64url segments, of a size an ID token has.
func looksLikeJWT(token string) bool {
	if len(token) > maxIDTokenBytes || strings.Count(token, ".") != 2 {
		return false
	}
	for i := 0; i < len(token); i++ {
		switch b := token[i]; {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9', b == '-', b == '_', b == '.', b == '=':
		default:
			return false
		}
	}
	return true
}

// segment decodes one of a JWT's segments.
func segment(token string, i int) ([]byte, bool) {
	parts := strings.SplitN(token, ".", 3)
	if len(parts) != 3 || parts[i] == "" {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[i], "="))
	return b, err == nil
}

// audiences is aud: a string or an array of them.
type audiences []string

func (a *audiences) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = audiences{one}
		return nil
	}
	var many []string
	err := json.Unmarshal(b, &many)
	*a = many
	return err
}

// routeIDToken finds the OIDC caller a token names by its unverified iss
// and aud: the one whose issuer is iss and whose audience aud contains.
func (p *policy) routeIDToken(token string) (*caller, string, error) {
	payload, ok := segment(token, 1)
	var claims struct {
		Iss string    `json:"iss"`
		Aud audiences `json:"aud"`
	}
	if !ok || json.Unmarshal(payload, &claims) != nil {
		return nil, authIDTokenMalformed, errIDTokenMalformed
	}
	if claims.Iss == "accounts.google.com" {
		// Google's tokens may name their issuer without the scheme; go-oidc
		// accepts that for Google alone, and so does the routing.
		claims.Iss = "https://accounts.google.com"
	}
	var found *caller
	for _, c := range p.oidcCallers {
		if c.oidc.issuerURL != claims.Iss || !slices.Contains(claims.Aud, c.oidc.audience) {
			continue
		}
		if found != nil {
			return nil, authIDTokenIssuer, errIDTokenAmbiguous
		}
		found = c
	}
	if found == nil {
		return nil, authIDTokenIssuer, errIDTokenNoCaller
	}
	return found, "", nil
}

// errPending: the token cannot be verified without waiting for its
// issuer (its first discovery, or a key set fetch under way); only the
// auth interceptor may wait.
var errPending = errors.New("the ID token waits for its issuer")

// verifyIDToken verifies a token routed to the OIDC caller c and caches
// it. userID is its user id claim; reason and err are as identifyBy's.
// Unless mayWait, it never waits on the network: a token that needs the
// issuer's answer is errPending (the tap admits it to be finished by the
// auth interceptor). With mayWait, ctx bounds the wait.
func (p *policy) verifyIDToken(ctx context.Context, c *caller, token string, mayWait bool) (userID, reason string, err error) {
	o := c.oidc
	header, ok := segment(token, 0)
	var h struct {
		Alg string `json:"alg"`
	}
	if !ok || json.Unmarshal(header, &h) != nil {
		return "", authIDTokenMalformed, errIDTokenMalformed
	}
	if !slices.Contains(algNames, h.Alg) {
		return "", authIDTokenAlgorithm, errIDTokenAlgorithm
	}
	switch {
	case o.issuer.keys.Load() != nil:
	case !mayWait && !o.issuer.attempted():
		return "", reasonPending, errPending
	case !mayWait || !o.issuer.ready(ctx):
		return "", authIssuerUnavailable, errIssuerUnavailable
	}
	v := &verdict{mayWait: mayWait}
	tok, err := o.verifier.Verify(context.WithValue(ctx, verdictKey{}, v), token)
	var expired *oidc.TokenExpiredError
	switch {
	case errors.As(err, &expired):
		return "", authIDTokenExpired, errIDTokenExpired
	case v.reason == reasonPending:
		return "", reasonPending, errPending
	case v.reason != "":
		return "", v.reason, idTokenErrors[v.reason]
	case v.payload == nil:
		return "", authIDTokenMalformed, errIDTokenMalformed
	}
	// The signature verified: the claims are the issuer's, and what
	// go-oidc refused in them (if it did) is named below.
	var claims map[string]json.RawMessage
	if json.Unmarshal(v.payload, &claims) != nil {
		return "", authIDTokenMalformed, errIDTokenMalformed
	}
	now := time.Now()
	if raw, ok := claims["nbf"]; ok {
		var nbf float64
		if json.Unmarshal(raw, &nbf) != nil {
			return "", authIDTokenMalformed, errIDTokenMalformed
		}
		if now.Add(idTokenLeeway).Before(time.Unix(int64(nbf), 0)) {
			return "", authIDTokenNotYetValid, errIDTokenNotYetValid
		}
	}
	if userID, err = o.userID(claims); err != nil {
		return "", authIDTokenClaims, err
	}
	if tok == nil { // refused for something else: a claim of the wrong type
		return "", authIDTokenMalformed, errIDTokenMalformed
	}
	p.verified.put(sha256.Sum256([]byte(token)), verifiedToken{caller: c, userID: userID,
		until: tok.Expiry.Add(idTokenLeeway).UnixNano()})
	return userID, "", nil
}

// userID checks the token's required claims and returns its user id claim,
// or PERMISSION_DENIED naming the claim and the rule (never its value).
func (o *oidcCaller) userID(claims map[string]json.RawMessage) (string, error) {
	for _, rc := range o.required {
		raw, ok := claims[rc.name]
		if !ok {
			return "", status.Errorf(codes.PermissionDenied, "ID token: the required claim %q is missing", rc.name)
		}
		if !claimHas(raw, rc.value) {
			return "", status.Errorf(codes.PermissionDenied, "ID token: the claim %q does not have the required value", rc.name)
		}
	}
	raw, ok := claims[o.claim]
	if !ok {
		return "", status.Errorf(codes.PermissionDenied, "ID token: the user id claim %q is missing", o.claim)
	}
	var id string
	if bytes.HasPrefix(bytes.TrimSpace(raw), []byte(`"`)) {
		if json.Unmarshal(raw, &id) != nil {
			return "", status.Errorf(codes.PermissionDenied, "ID token: the user id claim %q is not a string", o.claim)
		}
	} else {
		return "", status.Errorf(codes.PermissionDenied, "ID token: the user id claim %q is not a string", o.claim)
	}
	if signer.ValidateUserID(id) != nil {
		return "", status.Errorf(codes.PermissionDenied, "ID token: the user id claim %q is not a valid Tencent UserID: %s", o.claim, signer.RuleUserID)
	}
	return id, nil
}

// claimHas: the claim is the value, or an array with the value among its
// elements. JSON values compare exactly: the string "true" is not true.
func claimHas(raw json.RawMessage, want any) bool {
	var got any
	if json.Unmarshal(raw, &got) != nil {
		return false
	}
	if arr, ok := got.([]any); ok {
		for _, e := range arr {
			if reflect.DeepEqual(e, want) {
				return true
			}
		}
		return false
	}
	return reflect.DeepEqual(got, want)
}

// verifiedTokens caches verified ID tokens by their SHA-256, until they
// expire, at most maxVerifiedTokens of them. A policy has its own: a
// reload verifies tokens again under the new callers.
type verifiedTokens struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]verifiedToken
}

type verifiedToken struct {
	caller *caller
	userID string
	until  int64 // Unix nanoseconds
}

func (v *verifiedTokens) get(sum [sha256.Size]byte) (verifiedToken, bool) {
	v.mu.Lock()
	t, ok := v.m[sum]
	v.mu.Unlock()
	if !ok || time.Now().UnixNano() >= t.until {
		return verifiedToken{}, false
	}
	return t, true
}

func (v *verifiedTokens) put(sum [sha256.Size]byte, t verifiedToken) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = map[[sha256.Size]byte]verifiedToken{}
	}
	if len(v.m) >= maxVerifiedTokens {
		now := time.Now().UnixNano()
		for k, e := range v.m {
			if now >= e.until {
				delete(v.m, k)
			}
		}
		// Still full: drop entries at random (map order) until a sixteenth is free.
		for k := range v.m {
			if len(v.m) < maxVerifiedTokens-maxVerifiedTokens/16 {
				break
			}
			delete(v.m, k)
		}
	}
	v.m[sum] = t
}

func (v *verifiedTokens) len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.m)
}
