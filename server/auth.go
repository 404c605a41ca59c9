package server

import (
	"context"
	"crypto/x509"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
)

// callInfo is what the interceptors learn about a call, for the handler,
// the call log line and the metrics. The outermost interceptor puts an
// empty one in the context so that inner ones can fill it in where the
// outer ones (logging) can still read it.
type callInfo struct {
	policy *policy
	caller *caller
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

// The UserSigService methods by full name, as caller.methods bits.
var fullMethodBits = map[string]uint8{
	usersigv1.UserSigService_GenerateUserSig_FullMethodName:       methodBits[MethodGenerateUserSig],
	usersigv1.UserSigService_VerifyUserSig_FullMethodName:         methodBits[MethodVerifyUserSig],
	usersigv1.UserSigService_GeneratePrivateMapKey_FullMethodName: methodBits[MethodGeneratePrivateMapKey],
}

// authenticate is the auth interceptor's AuthFunc for UserSigService
// calls: it names the caller from the bearer token (or the verified client
// certificate), spends one token of the caller's rate, and checks the
// method. The app and the user id are checked by the handler, which knows
// the request.
func (s *Server) authenticate(ctx context.Context) (context.Context, error) {
	ci := callInfoFrom(ctx)
	if ci == nil { // the call-info interceptor always runs first
		return nil, errInternal
	}
	p := s.policy.Load()
	c, reason, err := identify(ctx, p)
	if err != nil {
		s.metrics.authFailure(reason)
		return nil, err
	}
	ci.policy, ci.caller = p, c
	if c.limiter != nil {
		now := time.Now() // the wall clock, whatever clock tickets use
		r := c.limiter.ReserveN(now, 1)
		if d := r.DelayFrom(now); d > 0 {
			r.CancelAt(now)
			s.metrics.rateLimited(c.name)
			return nil, rateLimited(c.name, d)
		}
	}
	method, _ := grpc.Method(ctx)
	if c.methods&fullMethodBits[method] == 0 {
		s.metrics.authFailure(authMethod)
		return nil, errMethodDenied(c.name, method[strings.LastIndexByte(method, '/')+1:])
	}
	return ctx, nil
}

// identify finds the caller: by bearer token when the call carries one,
// else by a verified client certificate.
func identify(ctx context.Context, p *policy) (*caller, string, error) {
	if vals := metadata.ValueFromIncomingContext(ctx, "authorization"); len(vals) > 0 {
		scheme, token, ok := strings.Cut(vals[0], " ")
		if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
			return nil, authNotBearer, errNotBearer
		}
		if c := p.byToken(strings.TrimSpace(token)); c != nil {
			return c, "", nil
		}
		return nil, authUnknownToken, errUnknownToken
	}
	if cert := verifiedClientCert(ctx); cert != nil {
		if c := p.byCert(cert); c != nil {
			return c, "", nil
		}
		return nil, authUnknownCert, errUnknownCert
	}
	return nil, authNoToken, errNoToken
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
