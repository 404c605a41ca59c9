package server

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// callInfo is what the interceptors learn about a call, for the handler,
// the call log line and the metrics. The outermost interceptor puts an
// empty one in the context so that inner ones can fill it in where the
// outer ones (logging) can still read it.
type callInfo struct {
	policy *policy
	caller *caller
	// userID is, for an OIDC caller, its verified ID token's user id:
	// the only one its calls may name.
	userID string
	// unverified marks an OIDC caller's call whose ID token the tap
	// routed but has not verified (not yet in the cache).
	unverified bool
	// admitted is the slot the tap (tap.go) holds for the stream, if it
	// admitted it, until the call's end.
	admitted admitted
}

type callInfoKey struct{}

func withCallInfo(ctx context.Context) (context.Context, *callInfo) {
	ci := &callInfo{}
	return context.WithValue(ctx, callInfoKey{}, ci), ci
}

func callInfoFrom(ctx context.Context) *callInfo {
	ci, _ := ctx.Value(callInfoKey{}).(*callInfo)
	return ci
}

// callerName is the authenticated caller's name, or "".
func (ci *callInfo) callerName() string {
	if ci == nil || ci.caller == nil {
		return ""
	}
	return ci.caller.name
}

// authenticate is the auth interceptor's AuthFunc for UserSigService
// calls: it names the caller from the bearer token (or the verified client
// certificate), spends one token of the caller's rate, and checks the
// method. The app and the user id are checked by the handler, which knows
// the request.
func (h *service) authenticate(ctx context.Context) (context.Context, error) {
	ci := callInfoFrom(ctx)
	if ci == nil { // the call-info interceptor always runs first
		return nil, errInternal
	}
	// The tap identified the caller from the same headers, under the
	// policy then in force; a reload since (a caller removed, a token
	// changed) means identifying it again under the one in force now.
	c := ci.caller
	if p := h.policy.Load(); c == nil || ci.policy != p || ci.unverified {
		// The tap routed an ID token under this very policy: only its
		// issuer's answer is missing, not the caller.
		id, reason, err := identity{caller: c, unverified: true}, "", error(nil)
		if c == nil || ci.policy != p {
			id, reason, err = identify(ctx, p)
		}
		if err == nil && id.unverified {
			// An ID token that needs its issuer's answer: wait for it now,
			// within the call's deadline and maxKeyWait.
			id.userID, reason, err = p.verifyIDToken(ctx, id.caller, bearerOf(ctx), true)
		}
		if err != nil {
			ci.caller = nil // the call log names no caller for a refused call
			h.metrics.authFailure(reason)
			return nil, err
		}
		ci.policy, ci.caller, ci.userID, ci.unverified = p, id.caller, id.userID, false
		c = id.caller
	}
	if err := h.spendCallerRate(ctx, c); err != nil {
		return nil, err
	}
	method, _ := grpc.Method(ctx)
	if c.methods&methodByFull[method].bit == 0 {
		h.metrics.authFailure(authMethod)
		return nil, errMethodDenied(c.name, method[strings.LastIndexByte(method, '/')+1:])
	}
	return ctx, nil
}

// identity is who a call's credentials name.
type identity struct {
	caller *caller
	// userID is an OIDC caller's user id, from its verified ID token.
	userID string
	// unverified: an ID token routed to its OIDC caller by its claims, and
	// not verified yet (verifyIDToken does that).
	unverified bool
}

// identify finds the caller of a call from its authorization metadata
// and its verified client certificate (identifyBy). It needs the incoming
// metadata and the peer in ctx; a gRPC tap handle's ctx has both.
func identify(ctx context.Context, p *policy) (identity, string, error) {
	return p.identifyBy(metadata.ValueFromIncomingContext(ctx, "authorization"), verifiedClientCert(ctx))
}

// bearerOf is the call's bearer token, which identify has accepted.
func bearerOf(ctx context.Context) string {
	token, _, _ := bearer(metadata.ValueFromIncomingContext(ctx, "authorization"))
	return token
}

// bearer is the token of authorization values: exactly one, "Bearer
// <token>", the scheme in any case. reason and err are as tokenCaller's.
func bearer(authorization []string) (token, reason string, err error) {
	switch len(authorization) {
	case 0:
		return "", authNoToken, errNoToken
	case 1:
	default: // two tokens: which one would a proxy in front have checked?
		return "", authNotBearer, errNotBearer
	}
	scheme, token, ok := strings.Cut(authorization[0], " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "bearer") || token == "" {
		return "", authNotBearer, errNotBearer
	}
	return token, "", nil
}

// identifyBy finds the caller named by a call's authorization values and
// its verified client certificate (nil without mutual TLS); on failure it
// returns the reason, as usersig_auth_failures_total counts it, and the
// error to answer. A token is checked first: a bad one is refused
// whatever the certificate says. Then:
//   - a certificate alone names its caller;
//   - a token and a certificate that names a caller must name the same
//     one, so a stolen token does not work beside another caller's
//     certificate;
//   - a caller that lists client_cert_names is bound to them: its token
//     is refused over a certificate that does not name it;
//   - otherwise (a certificate that names no caller, as a mesh's workload
//     certificates may) the token decides.
//
// It never waits: an ID token that is not in the cache of verified ones
// comes back unverified.
func (p *policy) identifyBy(authorization []string, cert *x509.Certificate) (identity, string, error) {
	var byCert *caller
	if cert != nil {
		c, ambiguous := p.byCert(cert)
		if ambiguous {
			return identity{}, authUnknownCert, errAmbiguousCert
		}
		byCert = c
	}
	if len(authorization) == 0 {
		switch {
		case byCert != nil:
			return identity{caller: byCert}, "", nil
		case cert != nil:
			return identity{}, authUnknownCert, errUnknownCert
		}
		return identity{}, authNoToken, errNoToken
	}
	id, reason, err := p.tokenCaller(authorization)
	if err != nil {
		return identity{}, reason, err
	}
	if c := id.caller; byCert != c && (byCert != nil || len(c.certNames) > 0) {
		return identity{}, authCertTokenMismatch, errCertTokenMismatch
	}
	return id, "", nil
}

// tokenCaller finds the caller named by a call's authorization metadata
// values (metadata.MD's "authorization"): exactly one value, "Bearer
// <token>" (the scheme in any case), whose token is a caller's, or else an
// ID token for an OIDC caller (oidc.go). It needs
// nothing but the metadata, so a tap handle can use it before the
// request is read; it does not bind the token to a client certificate,
// which identifyBy then does. reason is the auth failure reason, err the
// error to answer; neither holds the token.
func (p *policy) tokenCaller(authorization []string) (id identity, reason string, err error) {
	token, reason, err := bearer(authorization)
	if err != nil {
		return identity{}, reason, err
	}
	sum := sha256.Sum256([]byte(token))
	if c := p.byToken(sum); c != nil {
		return identity{caller: c}, "", nil
	}
	if len(p.oidcCallers) == 0 || !looksLikeJWT(token) {
		return identity{}, authUnknownToken, errUnknownToken
	}
	if t, ok := p.verified.get(sum); ok {
		return identity{caller: t.caller, userID: t.userID}, "", nil
	}
	c, reason, err := p.routeIDToken(token)
	if err != nil {
		return identity{}, reason, err
	}
	// Verified here when the issuer's keys are in hand: a made-up token
	// is refused from the headers, as an unknown token is.
	userID, reason, err := p.verifyIDToken(context.Background(), c, token, false)
	switch {
	case errors.Is(err, errPending):
		return identity{caller: c, unverified: true}, "", nil
	case err != nil:
		return identity{}, reason, err
	}
	return identity{caller: c, userID: userID}, "", nil
}

// verifiedClientCert is the leaf of the call's verified client certificate
// chain, or nil.
func verifiedClientCert(ctx context.Context) *x509.Certificate {
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	ti, ok := pr.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return ti.State.VerifiedChains[0][0]
}
