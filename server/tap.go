package server

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// Stream admission. grpc-go decodes a stream's headers, then hands them to
// the server's tap handle (tapHandle below) before it starts a goroutine
// for the stream or reads its request. Everything a stream holds from then
// on (its goroutine, its decoded headers, its buffers) is paid only for
// streams admitted here, so:
//
//   - a stream without credentials is refused here, for nothing, unless it
//     calls health or reflection, which stay open; such a stream may carry
//     at most maxAnonymousHeaderBytes of headers;
//   - admitted streams hold a slot until they end, in one of four pools:
//     callers' unary calls (grpc.max_concurrent_calls), unary calls without
//     credentials (maxAnonymousCalls), and callers' and anonymous streaming
//     calls, health Watch and reflection (maxStreamingCalls each). A flood
//     is refused with RESOURCE_EXHAUSTED rather than held in memory, and
//     fills only its own pool: callers keep their calls, health and
//     reflection while anonymous ones are refused, and streams cannot take
//     the slots of UserSigService calls;
//   - every unary call, request included, must end within
//     grpc.max_call_duration of its headers: a stream that sends headers
//     and never its request is cancelled then and its slot freed; an
//     anonymous streaming call ends after anonymousStreamDuration;
//   - when the server drains, streaming calls are ended and new ones
//     refused, so that a Watch does not hold the drain to its timeout.
//
// The listener's other limits are in buildGRPC and conns.go.
// docs/benchmarks.md has what the stream attacks of issue 11 cost.
const (
	// maxHeaderListSize bounds a stream's headers, as HTTP/2 counts them
	// (each field's name and value plus 32 bytes). A call needs a few
	// hundred bytes; grpc-go decodes all of them before anything else
	// sees the stream, and its default is 16 MiB.
	maxHeaderListSize = 8 << 10
	// maxAnonymousHeaderBytes bounds, the same way, the headers of a call
	// without credentials. A health check or a reflection call sends a few
	// hundred bytes; grpc-go may keep a finished stream's headers until
	// the client reads the answer, which a client that never reads
	// delays to the connection's end.
	maxAnonymousHeaderBytes = 2 << 10
	// maxAnonymousCalls bounds the unary calls without credentials (health
	// checks) in flight at once.
	maxAnonymousCalls = 256
	// maxUnverifiedCalls bounds the calls in flight whose ID token waits
	// for its issuer (its first discovery, or a key set fetch), and
	// maxUnverifiedPerIssuer those of one issuer, so that an issuer that
	// never answers cannot take the others' share.
	maxUnverifiedCalls     = 256
	maxUnverifiedPerIssuer = 64
	// DefaultMaxCallsPerUser bounds an app user's calls in flight (the
	// user of an OIDC caller, by its ID token; oidc.max_calls_per_user):
	// anyone who can sign in to an app is an app user, and must not hold
	// the slots of the app's other users. App users' calls take a pool of
	// their own (grpc.max_concurrent_calls again), never the callers' one.
	DefaultMaxCallsPerUser = 8
	// maxStreamingCalls bounds the streaming calls (health Watch,
	// reflection) in flight at once, for callers and for anonymous
	// clients each.
	maxStreamingCalls = 128
	// anonymousStreamDuration ends a streaming call without credentials
	// (a health Watch, a reflection session) after this long; clients
	// reconnect. Callers' streams are bounded by the connection's age.
	anonymousStreamDuration = time.Minute
)

// slots counts the streams of one pool in flight against a limit.
type slots struct {
	n       atomic.Int64
	limit   int64
	refused string // the limit, as usersig_calls_refused_total names it
	err     error  // what a refused stream is answered
	release func() // n.Add(-1), made once: a method value per call would allocate
}

func newSlots(limit int64, refused string, err error) *slots {
	s := &slots{limit: limit, refused: refused, err: err}
	s.release = func() { s.n.Add(-1) }
	return s
}

func (s *slots) take() bool {
	if s.n.Add(1) > s.limit {
		s.n.Add(-1)
		return false
	}
	return true
}

// admitted is an admitted stream's hold on a slot; the zero value holds
// none. The slot is released exactly once: by end when the call's
// interceptors finish, or, for a stream that ends before they run (a
// request that never came, a client that reset the stream), when grpc-go
// cancels the stream's context.
type admitted struct {
	release func()      // the slot's release, and for a stream leaving the set
	stop    func() bool // stops the release registered with the context
	cancel  context.CancelFunc
}

// end releases the slot and the deadline's timer; the interceptors call
// it when the call is over.
func (a *admitted) end() {
	if a.release == nil {
		return
	}
	if a.stop() {
		a.release()
	}
	a.cancel()
}

// streamSet holds the streaming calls in flight, so that a drain can end
// them.
type streamSet struct {
	mu       sync.Mutex
	draining bool
	m        map[*admitted]struct{}
}

// add registers a streaming call; false once the server drains.
func (s *streamSet) add(a *admitted) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.m[a] = struct{}{}
	return true
}

func (s *streamSet) remove(a *admitted) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, a)
}

// drain ends every streaming call in flight and refuses new ones.
func (s *streamSet) drain() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.draining = true
	for a := range s.m {
		a.cancel()
	}
}

// admission is the tap handle and what it needs: the policy in force to
// identify callers, the pools, the call duration and its metrics.
type admission struct {
	policy          *atomic.Pointer[policy]
	metrics         *metrics
	conns           *connLimit // set by Listen; a caller's call marks its connection
	maxCallDuration time.Duration
	// The pools, by [anonymous][streaming]; app users' unary calls, each
	// user at most its caller's max_calls_per_user of them; and those with an ID token
	// waiting for its issuer (oidc.go).
	pools      [2][2]*slots
	appUsers   *slots
	perUser    perUser
	unverified *slots
	streams    streamSet
	// streaming marks the streaming methods served, by full name.
	streaming    map[string]bool
	refusedTotal *prometheus.CounterVec // usersig_calls_refused_total
	refusals     refusalLog
}

// sampler spaces out the lines of a log that anyone could otherwise
// flood: at most one every sampleEvery, each counting the events since
// the last.
type sampler struct {
	count atomic.Int64
	last  atomic.Int64 // Unix nanoseconds of the last line
}

const sampleEvery = 10 * time.Second

// due counts an event and reports whether a line is due for it, and how
// many events that line covers.
func (s *sampler) due() (n int64, ok bool) {
	n = s.count.Add(1)
	now, last := time.Now().UnixNano(), s.last.Load()
	if now-last < int64(sampleEvery) || !s.last.CompareAndSwap(last, now) {
		return 0, false
	}
	s.count.Add(-n)
	return n, true
}

// refusalLog logs the streams the tap refuses, sampled: a line per
// refused stream would let anyone without credentials flood the log.
// usersig_auth_failures_total and usersig_calls_refused_total count each.
type refusalLog struct {
	log *zap.Logger
	sampler
}

func (l *refusalLog) refused(ctx context.Context, reason string) {
	n, ok := l.due()
	if !ok {
		return
	}
	addr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	l.log.Warn("calls refused on arrival", zap.Int64("count", n), zap.String("last_reason", reason),
		zap.String("last_peer.address", addr))
}

// Why the tap refused a stream, as usersig_calls_refused_total counts it;
// streams refused for their credentials are counted in
// usersig_auth_failures_total instead.
const (
	refusedMaxCalls         = "max_concurrent_calls"
	refusedMaxAnonymous     = "max_anonymous_calls"
	refusedMaxStreaming     = "max_streaming_calls"
	refusedMaxUnverified    = "max_unverified_id_token_calls"
	refusedMaxAppUsers      = "max_app_user_calls"
	refusedMaxPerAppUser    = "max_calls_per_app_user"
	refusedAnonymousHeaders = "anonymous_header_size"
	refusedDraining         = "draining"
)

var (
	errAnonymousOverloaded = status.Error(codes.ResourceExhausted,
		"the server is at its limit of calls without credentials; retry with backoff, or send your credentials")
	errStreamsOverloaded = status.Error(codes.ResourceExhausted,
		"the server is at its limit of streaming calls (health Watch, reflection); retry with backoff")
	errAnonymousHeaders = status.Error(codes.ResourceExhausted,
		"a call without credentials may carry at most 2 KiB of headers")
	errDraining             = status.Error(codes.Unavailable, "the server is shutting down; reconnect")
	errUnverifiedOverloaded = withRetryInfo(status.New(codes.ResourceExhausted,
		"the server is at its limit of calls whose ID token waits for its identity provider; retry with backoff"), time.Second)
	errAppUsersOverloaded = withRetryInfo(status.New(codes.ResourceExhausted,
		"the server is at its limit of app users' calls; retry with backoff"), time.Second)
	errPerAppUser = withRetryInfo(status.New(codes.ResourceExhausted,
		"this user has its caller's max_calls_per_user calls in flight already; wait for their answers"), time.Second)
)

// openServices need no credentials.
var openServices = map[string]bool{
	healthpb.Health_ServiceDesc.ServiceName:                    true,
	reflectionv1.ServerReflection_ServiceDesc.ServiceName:      true,
	reflectionv1alpha.ServerReflection_ServiceDesc.ServiceName: true,
}

func newAdmission(p *atomic.Pointer[policy], g GRPCConfig, m *metrics, log *zap.Logger) *admission {
	a := &admission{
		policy:          p,
		metrics:         m,
		maxCallDuration: g.MaxCallDuration.d,
		refusals:        refusalLog{log: log},
		streams:         streamSet{m: map[*admitted]struct{}{}},
		streaming:       map[string]bool{},
		refusedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usersig_calls_refused_total",
			Help: "Streams refused on arrival for a limit: max_concurrent_calls (callers' calls), max_anonymous_calls (health checks without credentials), max_streaming_calls (health Watch and reflection), max_unverified_id_token_calls (calls whose ID token is being verified), anonymous_header_size, draining.",
		}, []string{"limit"}),
	}
	a.pools = [2][2]*slots{
		{newSlots(int64(g.MaxConcurrentCalls), refusedMaxCalls, errOverloaded), newSlots(maxStreamingCalls, refusedMaxStreaming, errStreamsOverloaded)},
		{newSlots(maxAnonymousCalls, refusedMaxAnonymous, errAnonymousOverloaded), newSlots(maxStreamingCalls, refusedMaxStreaming, errStreamsOverloaded)},
	}
	inFlight := func(class string, sl *slots) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "usersig_calls_in_flight",
			Help:        "Streams admitted and not yet ended, by pool: caller (callers' unary calls, against grpc.max_concurrent_calls), anonymous (health checks without credentials), caller_stream and anonymous_stream (health Watch and reflection), unverified_id_token (calls whose ID token is being verified).",
			ConstLabels: prometheus.Labels{"class": class},
		}, func() float64 { return float64(sl.n.Load()) })
	}
	a.unverified = newSlots(maxUnverifiedCalls, refusedMaxUnverified, errUnverifiedOverloaded)
	a.appUsers = newSlots(int64(g.MaxConcurrentCalls), refusedMaxAppUsers, errAppUsersOverloaded)
	a.perUser = perUser{m: map[string]int{}}
	m.registry.MustRegister(a.refusedTotal,
		inFlight("caller", a.pools[0][0]), inFlight("caller_stream", a.pools[0][1]),
		inFlight("anonymous", a.pools[1][0]), inFlight("anonymous_stream", a.pools[1][1]),
		inFlight("app_user", a.appUsers), inFlight("unverified_id_token", a.unverified))
	for _, r := range []string{refusedMaxCalls, refusedMaxAnonymous, refusedMaxStreaming, refusedMaxUnverified, refusedMaxAppUsers, refusedMaxPerAppUser,
		refusedAnonymousHeaders, refusedDraining} {
		a.refusedTotal.WithLabelValues(r)
	}
	return a
}

// learn records which of the methods srv serves are streaming.
func (a *admission) learn(srv *grpc.Server) {
	for service, info := range srv.GetServiceInfo() {
		for _, m := range info.Methods {
			a.streaming["/"+service+"/"+m.Name] = m.IsClientStream || m.IsServerStream
		}
	}
}

// tapHandle admits or refuses a stream from its headers (see above). It
// runs on the connection's reader with the transport locked: it only
// hashes a token and counts. The context it returns is the stream's.
func (a *admission) tapHandle(ctx context.Context, info *tap.Info) (context.Context, error) {
	p := a.policy.Load()
	ci := &callInfo{}
	anonymous := false
	id, reason, err := identify(ctx, p)
	switch {
	case err == nil && id.caller.oidc != nil:
		// An app user: never a caller's slot, nor a caller's connection.
		ci.policy, ci.caller, ci.userID, ci.unverified = p, id.caller, id.userID, id.unverified
		anonymous = true
	case err == nil:
		ci.policy, ci.caller = p, id.caller
		if pr, ok := peer.FromContext(ctx); ok && a.conns != nil {
			a.conns.callerCalled(pr.LocalAddr, pr.Addr)
		}
	case !openServices[serviceOf(info.FullMethodName)]:
		a.metrics.authFailure(reason)
		a.refused(ctx, reason)
		return nil, err
	case headerBytes(info.Header) > maxAnonymousHeaderBytes:
		return nil, a.refuse(ctx, refusedAnonymousHeaders, errAnonymousHeaders)
	default:
		// Health and reflection need no credentials; wrong ones make the
		// call anonymous, not refused.
		anonymous = true
	}
	streaming := a.streaming[info.FullMethodName]
	sl := a.pools[index(anonymous)][index(streaming)]
	// An app user's unary call takes a slot of the app users' pool and
	// one of its own, or, with an ID token waiting for its issuer, one of
	// the unverified pool and one of the issuer's share.
	var also *slots
	userKey := ""
	switch {
	case streaming || ci.caller == nil || ci.caller.oidc == nil:
	case ci.unverified:
		sl, also = a.unverified, ci.caller.oidc.issuer.waiting
	default:
		sl, userKey = a.appUsers, appUserKey(ci.caller, ci.userID)
	}
	if !sl.take() {
		return nil, a.refuse(ctx, sl.refused, sl.err)
	}
	if also != nil && !also.take() {
		sl.release()
		return nil, a.refuse(ctx, refusedMaxUnverified, errIssuerBusy)
	}
	if userKey != "" && !a.perUser.take(userKey, ci.caller.oidc.maxCallsPerUser) {
		sl.release()
		return nil, a.refuse(ctx, refusedMaxPerAppUser, errPerAppUser)
	}
	var limit time.Duration
	switch {
	case !streaming:
		limit = a.maxCallDuration
	case anonymous:
		limit = anonymousStreamDuration
	}
	// grpc-go cancels a stream's context when the stream ends, and a
	// deadline set here ends the stream.
	ad := &ci.admitted
	ad.release, ad.cancel = sl.release, noCancel
	derived := false
	if d := time.Now().Add(limit); limit > 0 {
		if cur, ok := ctx.Deadline(); !ok || cur.After(d) {
			ctx, ad.cancel = context.WithDeadline(ctx, d)
			derived = true
		}
	}
	switch {
	case also != nil:
		ad.release = func() {
			also.release()
			sl.release()
		}
	case userKey != "":
		ad.release = func() {
			a.perUser.release(userKey)
			sl.release()
		}
	}
	if streaming {
		// Streams are few: a cancelable context and a closure each is fine.
		if !derived {
			ctx, ad.cancel = context.WithCancel(ctx)
		}
		if !a.streams.add(ad) {
			ad.cancel()
			sl.release()
			return nil, a.refuse(ctx, refusedDraining, errDraining)
		}
		ad.release = func() {
			a.streams.remove(ad)
			sl.release()
		}
	}
	ad.stop = context.AfterFunc(ctx, ad.release)
	return context.WithValue(ctx, callInfoKey{}, ci), nil
}

// appUserKey names an app user in perUser: its caller and user id.
func appUserKey(c *caller, userID string) string { return c.name + "\x00" + userID }

// perUser counts the calls in flight of each app user, by caller and user
// id. Only users with calls in flight have an entry.
type perUser struct {
	mu sync.Mutex
	m  map[string]int
}

// take counts a call of the user key, unless it has limit in flight.
func (u *perUser) take(key string, limit int) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m[key] >= limit {
		return false
	}
	u.m[key]++
	return true
}

func (u *perUser) release(key string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m[key] <= 1 {
		delete(u.m, key)
		return
	}
	u.m[key]--
}

// refuse counts a stream refused for a limit, and answers err.
func (a *admission) refuse(ctx context.Context, limit string, err error) error {
	a.refusedTotal.WithLabelValues(limit).Inc()
	a.refused(ctx, limit)
	return err
}

// refused is what every refusal does, whatever counted it: the sampled
// log line, and for a call that carries a deadline a count against its
// connection, which is closed past maxRefusalsPerConn: grpc-go keeps
// such a call's timer until the connection ends (connctx.go).
func (a *admission) refused(ctx context.Context, reason string) {
	a.refusals.refused(ctx, reason)
	if _, ok := ctx.Deadline(); !ok || a.conns == nil {
		return
	}
	if pr, ok := peer.FromContext(ctx); ok {
		a.conns.callRefused(pr.LocalAddr, pr.Addr)
	}
}

// index is 1 for true: the pools are indexed [anonymous][streaming].
func index(b bool) int {
	if b {
		return 1
	}
	return 0
}

// headerBytes is the size of a stream's headers as HTTP/2 counts it.
func headerBytes(md map[string][]string) int {
	n := 0
	for k, vs := range md {
		for _, v := range vs {
			n += len(k) + len(v) + 32
		}
	}
	return n
}

func noCancel() {}

// serviceOf is the service of a full method name, /service/method.
func serviceOf(fullMethod string) string {
	if i := strings.LastIndexByte(fullMethod, '/'); i > 0 {
		return fullMethod[1:i]
	}
	return ""
}
