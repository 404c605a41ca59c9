package server

// An OpenID Connect issuer that OIDC callers trust (oidc.go): its
// discovery document and its key set, fetched in the background and kept
// across reloads. Calls never wait on an issuer that is known to be down,
// and nothing a client sends can make the server fetch more than once
// per minKeyRefetch.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
)

const (
	// minKeyRefetch spaces out the key set fetches an unknown key id
	// causes: a flood of tokens with made-up key ids costs the issuer one
	// fetch per minKeyRefetch, and a real rotation is seen within it.
	minKeyRefetch = 5 * time.Second
	// keyRefresh is how often the key set is fetched regardless, so that
	// keys the issuer withdrew stop verifying.
	keyRefresh = time.Hour
	// fetchTimeout bounds one discovery or key set fetch.
	fetchTimeout = 10 * time.Second
	// A call waits at most this long for the issuer's first discovery,
	// or for a key set fetch its token caused; the fetch itself goes on.
	maxDiscoveryWait = time.Second
	maxKeyWait       = 2 * time.Second
	// maxIssuerDocument bounds a discovery document or a key set.
	maxIssuerDocument = 1 << 20
	// Discovery is retried after a failure, with backoff.
	minDiscoveryBackoff = time.Second
	maxDiscoveryBackoff = time.Minute
)

// allowedAlgs are the signature algorithms an ID token may use: asymmetric
// only, never none or HMAC (with HMAC, anyone holding the issuer's public
// key could sign).
var allowedAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// keySet is one fetch of an issuer's keys, by key id.
type keySet struct {
	byID map[string][]jose.JSONWebKey
	all  []jose.JSONWebKey
}

// issuer is one issuer URL (and CA) and what is known of it. It
// implements oidc.KeySet for go-oidc's verifier.
type issuer struct {
	url     string
	client  *http.Client
	log     *zap.Logger
	metrics *metrics

	keys      atomic.Pointer[keySet] // nil until discovery succeeds
	waiting   *slots                 // calls waiting for it (tap.go), at most maxUnverifiedPerIssuer
	jwksURL   string                 // set before keys is first stored
	firstDone chan struct{}          // closed when the first discovery attempt ends
	stop      context.CancelFunc

	mu        sync.Mutex
	fetching  chan struct{} // non-nil while a key set fetch runs
	lastAsked time.Time     // when an unknown key id last caused a fetch
	fetchErr  error         // the last key set fetch's
}

// newIssuer starts discovering url in the background. caPEM, if not
// empty, is the only CA its certificate may chain to.
func newIssuer(url string, caPEM []byte, m *metrics, log *zap.Logger) *issuer {
	tr := http.DefaultTransport.(*http.Transport).Clone() // HTTPS_PROXY and NO_PROXY apply
	if len(caPEM) > 0 {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM) // checked by the config (checker.oidc)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	is := &issuer{
		url: url,
		client: &http.Client{Transport: cappedBodies{tr}, Timeout: fetchTimeout,
			// A redirect could leave https; the documents are where they are.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		log:       log.With(zap.String("issuer", url)),
		metrics:   m,
		firstDone: make(chan struct{}),
		waiting:   newSlots(maxUnverifiedPerIssuer, refusedMaxUnverified, errIssuerBusy),
	}
	ctx, cancel := context.WithCancel(context.Background())
	is.stop = cancel
	go is.run(ctx)
	return is
}

// run discovers the issuer, retrying with backoff and logging once per
// failure streak, then refreshes its keys every keyRefresh.
func (is *issuer) run(ctx context.Context) {
	backoff, failing := minDiscoveryBackoff, false
	// firstDone closes once the first attempt is over and logged.
	first := sync.OnceFunc(func() { close(is.firstDone) })
	defer first()
	for {
		err := is.discover(ctx)
		if err == nil {
			if failing {
				is.log.Info("the identity provider is reachable again")
			} else {
				is.log.Info("identity provider discovered")
			}
			first()
			break
		}
		if ctx.Err() != nil {
			return
		}
		if !failing {
			is.log.Warn("cannot discover the identity provider; its callers' calls are UNAVAILABLE until it answers (retried with backoff)",
				zap.String("error", brief(err.Error())))
			failing = true
		}
		first()
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, maxDiscoveryBackoff)
	}
	for sleep(ctx, keyRefresh) {
		if err := is.refetch(ctx, true); err != nil && ctx.Err() == nil {
			is.log.Warn("cannot refresh the identity provider's keys; the keys fetched before stay", zap.String("error", brief(err.Error())))
		}
	}
}

// brief is an issuer's error on one line and at most 300 bytes: it may
// quote the answer's body.
func brief(s string) string {
	s = oneLine(s)
	if len(s) > 300 {
		s = strings.ToValidUTF8(s[:300], "") + "..."
	}
	return s
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// discover fetches the discovery document (go-oidc checks that its issuer
// is ours) and then the key set.
func (is *issuer) discover(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, is.client), is.url)
	is.metrics.oidcFetched(is.url, "discovery", err)
	if err != nil {
		return fmt.Errorf("discovery: %s", oneLine(err.Error()))
	}
	var doc struct {
		JWKSURL string `json:"jwks_uri"`
	}
	if err := p.Claims(&doc); err != nil || doc.JWKSURL == "" {
		return errors.New("discovery: the document has no jwks_uri")
	}
	if err := checkIssuerURL(doc.JWKSURL); err != nil {
		return fmt.Errorf("discovery: jwks_uri %s", err)
	}
	is.mu.Lock()
	is.jwksURL = doc.JWKSURL
	is.mu.Unlock()
	return is.refetch(ctx, true)
}

// ready waits, within ctx and maxDiscoveryWait, for the first discovery
// attempt, and reports whether the issuer's keys are loaded.
func (is *issuer) ready(ctx context.Context) bool {
	if is.keys.Load() != nil {
		return true
	}
	t := time.NewTimer(maxDiscoveryWait)
	defer t.Stop()
	select {
	case <-is.firstDone:
	case <-ctx.Done():
	case <-t.C:
	}
	return is.keys.Load() != nil
}

// attempted reports whether the first discovery attempt has ended.
func (is *issuer) attempted() bool {
	select {
	case <-is.firstDone:
		return true
	default:
		return false
	}
}

// kick starts a key set fetch that a token asks for, as refetch does, but
// does not wait for it; it reports whether a fetch is now under way.
func (is *issuer) kick() bool {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.fetching != nil {
		return true
	}
	if time.Since(is.lastAsked) < minKeyRefetch {
		return false
	}
	is.lastAsked = time.Now()
	is.fetching = make(chan struct{})
	go is.fetchKeys(is.fetching, true)
	return true
}

// refetch fetches the key set again. Unless forced (discovery, the hourly
// refresh), it is a token's unknown key id that asks, and such fetches
// are at least minKeyRefetch apart. Concurrent callers share one fetch,
// which runs to its own timeout whatever their contexts.
func (is *issuer) refetch(ctx context.Context, force bool) error {
	is.mu.Lock()
	done := is.fetching
	if done == nil {
		if !force {
			if time.Since(is.lastAsked) < minKeyRefetch {
				is.mu.Unlock()
				return errRefetchTooSoon
			}
			is.lastAsked = time.Now()
		}
		done = make(chan struct{})
		is.fetching = done
		go is.fetchKeys(done, !force)
	}
	is.mu.Unlock()
	select {
	case <-done:
		return is.lastFetchErr()
	case <-ctx.Done():
		return ctx.Err()
	}
}

var errRefetchTooSoon = errors.New("the key set was fetched moments ago")

func (is *issuer) lastFetchErr() error {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.fetchErr
}

// fetchKeys fetches the key set and closes done. A fetch a token asked
// for counts minKeyRefetch from its end, so that an issuer slower than
// that is still asked at most once per minKeyRefetch of idle time.
func (is *issuer) fetchKeys(done chan struct{}, asked bool) {
	ks, err := is.getKeySet()
	is.metrics.oidcFetched(is.url, "jwks", err)
	is.mu.Lock()
	if asked {
		is.lastAsked = time.Now()
	}
	is.fetchErr = err
	if err == nil {
		is.keys.Store(ks)
	}
	is.fetching = nil
	is.mu.Unlock()
	close(done)
}

func (is *issuer) getKeySet() (*keySet, error) {
	is.mu.Lock()
	u := is.jwksURL
	is.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := is.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks: %s", oneLine(err.Error()))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks: %s", resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("jwks: %s", oneLine(err.Error()))
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("jwks: not a JSON Web Key Set: %s", oneLine(err.Error()))
	}
	ks := &keySet{byID: map[string][]jose.JSONWebKey{}}
	for _, k := range set.Keys {
		if !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
			continue
		}
		ks.all = append(ks.all, k)
		ks.byID[k.KeyID] = append(ks.byID[k.KeyID], k)
	}
	if len(ks.all) == 0 {
		return nil, errors.New("jwks: no public signing key")
	}
	return ks, nil
}

// cappedBodies fails the reading of an answer past maxIssuerDocument
// bytes: go-oidc reads a discovery document whole, whatever its size.
type cappedBodies struct{ base http.RoundTripper }

func (c cappedBodies) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(r)
	if err == nil {
		resp.Body = &cappedBody{ReadCloser: resp.Body, left: maxIssuerDocument}
	}
	return resp, err
}

type cappedBody struct {
	io.ReadCloser
	left int64
}

var errDocumentTooLarge = fmt.Errorf("the document is larger than %d bytes", maxIssuerDocument)

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errDocumentTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left+1] // one byte more tells a document of exactly the cap from a larger one
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, errDocumentTooLarge
	}
	return n, err
}

// candidates are the keys that may have signed a token with key id kid.
func (ks *keySet) candidates(kid string) []jose.JSONWebKey {
	if kid == "" {
		return ks.all
	}
	return ks.byID[kid]
}

// VerifySignature is oidc.KeySet's: it verifies the token's signature with
// the issuer's keys of its key id (all of them without one). When none
// verifies, the issuer may have rotated its keys (a new key id, or a new key
// under an old id): the key set is fetched again, at most once every
// minKeyRefetch whatever tokens ask, and the token tried once more. The
// class of a failure is recorded in the context's verdict, as go-oidc's
// errors do not keep it; a verdict that may not wait (the tap's) starts
// the fetch and comes back pending.
func (is *issuer) VerifySignature(ctx context.Context, token string) ([]byte, error) {
	v, _ := ctx.Value(verdictKey{}).(*verdict)
	if v == nil {
		v = &verdict{mayWait: true}
	}
	jws, err := jose.ParseSignedCompact(token, allowedAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		v.reason = authIDTokenMalformed
		return nil, errors.New("malformed")
	}
	sig := jws.Signatures[0]
	for attempt := 0; ; attempt++ {
		ks := is.keys.Load()
		keys := ks.candidates(sig.Header.KeyID)
		for i := range keys {
			k := &keys[i]
			if k.Algorithm != "" && k.Algorithm != sig.Header.Algorithm {
				continue
			}
			if payload, err := jws.Verify(k); err == nil {
				v.payload = payload
				return payload, nil
			}
		}
		failed := authIDTokenUnknownKey
		if len(keys) > 0 {
			failed = authIDTokenSignature
		}
		if is.lastFetchErr() != nil {
			// The keys in hand are old: the issuer did not answer the
			// last fetch, so the token's key may be one it has now.
			failed = authIssuerUnavailable
		}
		if attempt > 0 {
			v.reason = failed
			return nil, errors.New(failed)
		}
		if !v.mayWait {
			if is.kick() {
				v.reason = reasonPending
				return nil, errors.New("pending")
			}
			v.reason = failed
			return nil, errors.New(failed)
		}
		wctx, cancel := context.WithTimeout(ctx, maxKeyWait)
		err := is.refetch(wctx, false)
		cancel()
		switch {
		case err == nil:
		case errors.Is(err, errRefetchTooSoon):
			// Fetched moments ago, maybe for this very token in the tap:
			// the keys in hand are the issuer's latest.
			if ks2 := is.keys.Load(); ks2 == ks {
				v.reason = failed
				return nil, errors.New(failed)
			}
		default:
			v.reason = authIssuerUnavailable
			return nil, errors.New("key set unavailable")
		}
	}
}

// verdict carries into go-oidc whether the verification may wait for the
// issuer, and out of it the class of a signature failure, or the payload
// whose signature verified.
type verdict struct {
	mayWait bool
	reason  string
	payload []byte
}

// reasonPending: the token needs keys being fetched; the auth interceptor
// finishes it.
const reasonPending = "pending"

type verdictKey struct{}

// issuers are the issuers the policy in force trusts, kept across reloads
// by URL and CA so that a reload neither refetches nor drops their keys.
type issuers struct {
	mu      sync.Mutex
	m       map[string]*issuer
	metrics *metrics
	log     *zap.Logger
}

func issuerKey(url string, caPEM []byte) string { return url + "\x00" + string(caPEM) }

// get is the issuer for url and caPEM, started if new.
func (r *issuers) get(url string, caPEM []byte) *issuer {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := issuerKey(url, caPEM)
	if is := r.m[k]; is != nil {
		return is
	}
	if r.m == nil {
		r.m = map[string]*issuer{}
	}
	is := newIssuer(url, caPEM, r.metrics, r.log)
	r.m[k] = is
	return is
}

// keep stops the issuers p's callers no longer use.
func (r *issuers) keep(p *policy) {
	used := map[*issuer]bool{}
	for _, c := range p.oidcCallers {
		used[c.oidc.issuer] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, is := range r.m {
		if !used[is] {
			is.stop()
			delete(r.m, k)
		}
	}
}

// close stops them all.
func (r *issuers) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, is := range r.m {
		is.stop()
		delete(r.m, k)
	}
}
