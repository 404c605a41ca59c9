package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/usersig/usersig/signer"
)

// policy is one loaded config, compiled: what the server enforces. A
// policy never changes once built; a reload swaps in a new one, and calls
// in flight finish under the one they started with.
type policy struct {
	apps    map[uint64]*app
	appList []*app // by SDKAppID
	callers []*caller
	// oidcCallers are the callers with an oidc section; verified caches
	// the ID tokens verified for them (oidc.go).
	oidcCallers []*caller
	verified    verifiedTokens
	generation  uint64
	hash        string
	// inputs digests the files the policy was loaded from (inputDigest).
	inputs [sha256.Size]byte
}

// app is one SDKAppID with its keys: keys[0] signs, all verify.
type app struct {
	id                 uint64
	defaultTTL, maxTTL time.Duration
	keys               []*signer.Key
	keyIDs             []string
	// verified counts VerifyUserSig outcomes by signer.Status, resolved
	// once per config rather than by label on every call.
	verified [signer.Malformed + 1]prometheus.Counter
}

// caller is one authenticated client and what it may do.
type caller struct {
	name          string
	tokenHash     [sha256.Size]byte
	hasToken      bool
	certNames     []string
	allApps       bool
	apps          map[uint64]bool
	methods       methodSet
	maxTTL        time.Duration
	userIDPattern *regexp.Regexp
	rate          *callerRate // nil when the caller has no rate (ratelimit.go)
	userRate      *userRate   // nil when the caller has no rate_per_user (ratelimit.go)
	oidc          *oidcCaller // nil but for an OIDC caller (oidc.go)
	pmk           *pmkPolicy  // nil without a private_map_key section (pmk.go)
	// issued records the tickets it mints, by app and kind.
	issued map[uint64]*[numKinds]issuance
}

// ticketKind is the kind of ticket a call mints; it indexes caller.issued.
type ticketKind int

const (
	kindUserSig ticketKind = iota
	kindPrivateMapKey
	numKinds
)

// String is the kind as the audit log and the metrics name it.
func (k ticketKind) String() string { return [numKinds]string{"usersig", "private_map_key"}[k] }

// issuance is where a minted ticket of one caller, app and kind is
// recorded: its counter, and the audit logger with the caller, app, key
// id and kind already encoded, so that a call encodes only the user id
// and the lifetime.
type issuance struct {
	count prometheus.Counter
	audit *zap.Logger
}

// byToken finds the caller whose token hashes to sum, the token's SHA-256.
// Every caller's hash is compared, in constant time, whatever matches.
func (p *policy) byToken(sum [sha256.Size]byte) *caller {
	var found *caller
	for _, c := range p.callers {
		if c.hasToken && subtle.ConstantTimeCompare(sum[:], c.tokenHash[:]) == 1 && found == nil {
			found = c
		}
	}
	return found
}

// byCert finds the caller a verified client certificate names. A
// certificate names a caller by a DNS or URI SAN; by its subject common
// name only when it has no SAN of any kind (DNS, URI, IP or email), as
// TLS clients ignore the CN of a certificate that has SANs. A certificate
// whose names pick two callers is ambiguous and names none of them
// (names are unique to a caller, but one certificate may carry several).
func (p *policy) byCert(cert *x509.Certificate) (c *caller, ambiguous bool) {
	var names []string
	if len(cert.DNSNames) == 0 && len(cert.URIs) == 0 && len(cert.IPAddresses) == 0 && len(cert.EmailAddresses) == 0 {
		names = append(names, cert.Subject.CommonName)
	}
	names = append(names, cert.DNSNames...)
	for _, u := range cert.URIs {
		names = append(names, u.String())
	}
	for _, cl := range p.callers {
		if !cl.namedBy(names) {
			continue
		}
		if c != nil && c != cl {
			return nil, true
		}
		c = cl
	}
	return c, false
}

// namedBy reports whether one of names is one of the caller's
// client_cert_names.
func (c *caller) namedBy(names []string) bool {
	for _, want := range c.certNames {
		for _, got := range names {
			if got != "" && got == want {
				return true
			}
		}
	}
	return false
}

// mayUse reports whether the caller may use the app id (configured or not).
func (c *caller) mayUse(id uint64) bool { return c.allApps || c.apps[id] }

// usableApps are the configured apps the caller may use.
func (p *policy) usableApps(c *caller) []*app {
	var out []*app
	for _, a := range p.appList {
		if c.mayUse(a.id) {
			out = append(out, a)
		}
	}
	return out
}
