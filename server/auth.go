package server

import (
	"context"
	"crypto/x509"
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
	if p := h.policy.Load(); c == nil || ci.policy != p {
		var (
			reason string
			err    error
		)
		if c, reason, err = identify(ctx, p); err != nil {
			h.metrics.authFailure(reason)
			return nil, err
		}
		ci.policy, ci.caller = p, c
	}
	if retry, ok := c.rate.allow(); !ok {
		h.metrics.rateLimited(c.name)
		return nil, errRateLimited(c.name, retry)
	}
	method, _ := grpc.Method(ctx)
	if c.methods&methodByFull[method].bit == 0 {
		h.metrics.authFailure(authMethod)
		return nil, errMethodDenied(c.name, method[strings.LastIndexByte(method, '/')+1:])
	}
	return ctx, nil
}

// identify finds the caller of a call from its authorization metadata
// and its verified client certificate (identifyBy). It needs the incoming
// metadata and the peer in ctx; a gRPC tap handle's ctx has both.
func identify(ctx context.Context, p *policy) (*caller, string, error) {
	return p.identifyBy(metadata.ValueFromIncomingContext(ctx, "authorization"), verifiedClientCert(ctx))
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
func (p *policy) identifyBy(authorization []string, cert *x509.Certificate) (*caller, string, error) {
	var byCert *caller
	if cert != nil {
		c, ambiguous := p.byCert(cert)
		if ambiguous {
			return nil, authUnknownCert, errAmbiguousCert
		}
		byCert = c
	}
	if len(authorization) == 0 {
		switch {
		case byCert != nil:
			return byCert, "", nil
		case cert != nil:
			return nil, authUnknownCert, errUnknownCert
		}
		return nil, authNoToken, errNoToken
	}
	c, reason, err := p.tokenCaller(authorization)
	if err != nil {
		return nil, reason, err
	}
	if byCert != c && (byCert != nil || len(c.certNames) > 0) {
		return nil, authCertTokenMismatch, errCertTokenMismatch
	}
	return c, "", nil
}

// tokenCaller finds the caller named by a call's authorization metadata
// values (metadata.MD's "authorization"): exactly one value, "Bearer
// <token>" (the scheme in any case), whose token is a caller's. It needs
// nothing but the metadata, so a tap handle can use it before the
// request is read; it does not bind the token to a client certificate,
// which identifyBy then does. reason is the auth failure reason, err the
// error to answer; neither holds the token.
func (p *policy) tokenCaller(authorization []string) (c *caller, reason string, err error) {
	switch len(authorization) {
	case 0:
		return nil, authNoToken, errNoToken
	case 1:
	default: // two tokens: which one would a proxy in front have checked?
		return nil, authNotBearer, errNotBearer
	}
	scheme, token, ok := strings.Cut(authorization[0], " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "bearer") || token == "" {
		return nil, authNotBearer, errNotBearer
	}
	if c := p.byToken(token); c != nil {
		return c, "", nil
	}
	return nil, authUnknownToken, errUnknownToken
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
