package server

import (
	"context"
	"strings"
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
//     calls health or reflection, which stay open;
//   - admitted streams hold a slot until they end: callers' streams one of
//     grpc.max_concurrent_calls, open streams without credentials one of
//     maxAnonymousCalls, so a flood of either is refused with
//     RESOURCE_EXHAUSTED rather than held in memory, and callers keep
//     their health and reflection calls while anonymous ones are refused;
//   - every unary call, request included, must end within
//     grpc.max_call_duration of its headers: a stream that sends headers
//     and never its request is cancelled then and its slot freed.
//
// The listener's other limits are in buildGRPC. docs/benchmarks.md has
// what the stream attacks of issue 11 cost with and without them.
const (
	// maxHeaderListSize bounds a stream's headers, as HTTP/2 counts them
	// (each field's name and value plus 32 bytes). A call needs a few
	// hundred bytes; grpc-go decodes all of them before anything else
	// sees the stream, and its default is 16 MiB.
	maxHeaderListSize = 8 << 10
	// maxAnonymousCalls bounds the health and reflection streams without
	// credentials in flight at once.
	maxAnonymousCalls = 256
	// anonymousStreamDuration ends a streaming call without credentials
	// (a health Watch, a reflection session) after this long; clients
	// reconnect. Callers' streams are bounded by the connection's age.
	anonymousStreamDuration = time.Minute
)

// slots counts the streams of one class in flight against a limit.
type slots struct {
	n       atomic.Int64
	limit   int64
	release func() // n.Add(-1), made once: a method value per call would allocate
}

func newSlots(limit int64) *slots {
	s := &slots{limit: limit}
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
	slots  *slots
	stop   func() bool // stops the release registered with the context
	cancel context.CancelFunc
}

// end releases the slot and the deadline's timer; the interceptors call
// it when the call is over.
func (a *admitted) end() {
	if a.slots == nil {
		return
	}
	if a.stop() {
		a.slots.release()
	}
	a.cancel()
}

// admission is the tap handle and what it needs: the policy in force to
// identify callers, the slots, the call duration and its metrics.
type admission struct {
	policy           *atomic.Pointer[policy]
	metrics          *metrics
	maxCallDuration  time.Duration
	calls, anonymous *slots
	// streaming marks the streaming methods served, by full name.
	streaming map[string]bool
	refused   *prometheus.CounterVec
	refusals  refusalLog
}

// refusalLog logs the streams the tap refuses at most once every
// refusalLogEvery, with how many there were since the last line: a line
// per refused stream would let anyone without credentials flood the log.
// usersig_auth_failures_total and usersig_calls_refused_total count each.
type refusalLog struct {
	log   *zap.Logger
	count atomic.Int64
	last  atomic.Int64 // Unix nanoseconds of the last line
}

const refusalLogEvery = 10 * time.Second

func (l *refusalLog) refused(ctx context.Context, reason string) {
	n := l.count.Add(1)
	now, last := time.Now().UnixNano(), l.last.Load()
	if now-last < int64(refusalLogEvery) || !l.last.CompareAndSwap(last, now) {
		return
	}
	l.count.Add(-n)
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
	refusedMaxCalls     = "max_concurrent_calls"
	refusedMaxAnonymous = "max_anonymous_calls"
)

var errAnonymousOverloaded = status.Error(codes.ResourceExhausted,
	"the server is at its limit of calls without credentials; retry with backoff, or send your credentials")

// openServices need no credentials.
var openServices = map[string]bool{
	healthpb.Health_ServiceDesc.ServiceName:                    true,
	reflectionv1.ServerReflection_ServiceDesc.ServiceName:      true,
	reflectionv1alpha.ServerReflection_ServiceDesc.ServiceName: true,
}

func newAdmission(p *atomic.Pointer[policy], g GRPCConfig, m *metrics, log *zap.Logger) *admission {
	maxCalls := g.MaxConcurrentCalls
	a := &admission{
		policy:          p,
		metrics:         m,
		maxCallDuration: g.MaxCallDuration.d,
		refusals:        refusalLog{log: log},
		streaming:       map[string]bool{},
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usersig_calls_refused_total",
			Help: "Streams refused on arrival because the server was at a limit, by limit: max_concurrent_calls (callers) or max_anonymous_calls (health and reflection without credentials).",
		}, []string{"limit"}),
	}
	a.calls, a.anonymous = newSlots(int64(maxCalls)), newSlots(maxAnonymousCalls)
	inFlight := func(class string, sl *slots) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "usersig_calls_in_flight",
			Help:        "Streams admitted and not yet ended, by class: caller (counted against grpc.max_concurrent_calls) or anonymous (health and reflection without credentials).",
			ConstLabels: prometheus.Labels{"class": class},
		}, func() float64 { return float64(sl.n.Load()) })
	}
	m.registry.MustRegister(a.refused, inFlight("caller", a.calls), inFlight("anonymous", a.anonymous))
	a.refused.WithLabelValues(refusedMaxCalls)
	a.refused.WithLabelValues(refusedMaxAnonymous)
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
	sl := a.calls
	c, reason, err := identify(ctx, p)
	switch {
	case err == nil:
		ci.policy, ci.caller = p, c
	case !openServices[serviceOf(info.FullMethodName)]:
		a.metrics.authFailure(reason)
		a.refusals.refused(ctx, reason)
		return nil, err
	default:
		// Health and reflection need no credentials; wrong ones make the
		// call anonymous, not refused.
		sl = a.anonymous
	}
	if !sl.take() {
		if sl == a.calls {
			a.refused.WithLabelValues(refusedMaxCalls).Inc()
			a.refusals.refused(ctx, refusedMaxCalls)
			return nil, errOverloaded
		}
		a.refused.WithLabelValues(refusedMaxAnonymous).Inc()
		a.refusals.refused(ctx, refusedMaxAnonymous)
		return nil, errAnonymousOverloaded
	}
	var limit time.Duration
	switch {
	case !a.streaming[info.FullMethodName]:
		limit = a.maxCallDuration
	case sl == a.anonymous:
		limit = anonymousStreamDuration
	}
	// grpc-go cancels a stream's context when the stream ends, and a
	// deadline set here ends the stream.
	ad := &ci.admitted
	ad.slots, ad.cancel = sl, noCancel
	ad.stop = context.AfterFunc(ctx, sl.release)
	if d := time.Now().Add(limit); limit > 0 {
		if cur, ok := ctx.Deadline(); !ok || cur.After(d) {
			ctx, ad.cancel = context.WithDeadline(ctx, d)
		}
	}
	return context.WithValue(ctx, callInfoKey{}, ci), nil
}

func noCancel() {}

// serviceOf is the service of a full method name, /service/method.
func serviceOf(fullMethod string) string {
	if i := strings.LastIndexByte(fullMethod, '/'); i > 0 {
		return fullMethod[1:i]
	}
	return ""
}
