package server

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// callLog is the call log: one line per finished call (buildGRPC leaves
// health checks out: a probe every few seconds would flood it), with the service,
// method, caller, code, error message, duration, peer and, when traced,
// the trace id; never the request or the response. It keeps the field
// names and code-to-level mapping of go-grpc-middleware's logging
// interceptor, which it replaces on the hot path: that one builds its
// fields as []any and merges them on every call; this one writes zap's
// typed fields directly, several times cheaper (BenchmarkLogLine compares
// the two; docs/benchmarks.md has the figures).
type callLog struct {
	log *zap.Logger
	// methods holds, for each method served, a child of log with the
	// service and method already encoded.
	methods map[string]*zap.Logger
}

// learn makes the method loggers of the services registered on srv; call
// it before srv serves.
func (l *callLog) learn(srv *grpc.Server) {
	l.methods = map[string]*zap.Logger{}
	for service, info := range srv.GetServiceInfo() {
		for _, m := range info.Methods {
			full := "/" + service + "/" + m.Name
			l.methods[full] = l.methodLogger(full)
		}
	}
}

// methodLogger is the child of log with a method's service and name.
func (l *callLog) methodLogger(fullMethod string) *zap.Logger {
	service, method, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	return l.log.With(zap.String("grpc.service", service), zap.String("grpc.method", method))
}

func (l *callLog) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	l.write(ctx, info.FullMethod, start, err)
	return resp, err
}

func (l *callLog) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	l.write(ss.Context(), info.FullMethod, start, err)
	return err
}

// callLogFields is the most fields a call log line adds to its method's
// logger.
const callLogFields = 6

func (l *callLog) write(ctx context.Context, fullMethod string, start time.Time, err error) {
	elapsed := time.Since(start)
	st, _ := status.FromError(err) // a plain error is UNKNOWN, as gRPC answers it
	code := st.Code()
	log := l.methods[fullMethod]
	if log == nil { // a service registered after learn ran
		log = l.methodLogger(fullMethod)
	}
	ce := log.Check(zapLevel(logging.DefaultServerCodeToLevel(code)), "finished call")
	if ce == nil {
		return
	}
	f := make([]zapcore.Field, 0, callLogFields)
	if name := callInfoFrom(ctx).callerName(); name != "" {
		f = append(f, zap.String("caller", name))
	}
	f = append(f, zap.String("grpc.code", code.String()))
	if err != nil {
		// Our errors name a field and a rule, never a key, token or ticket.
		f = append(f, zap.String("grpc.error", st.Message()))
	}
	f = append(f, zap.Float64("grpc.time_ms", float64(elapsed.Microseconds())/1000))
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		f = append(f, peerAddress(p.Addr))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		f = append(f, zap.Stringer("trace_id", sc.TraceID()))
	}
	ce.Write(f...)
}

// zapLevel is zap's level for one of go-grpc-middleware's.
func zapLevel(l logging.Level) zapcore.Level {
	switch l {
	case logging.LevelDebug:
		return zapcore.DebugLevel
	case logging.LevelInfo:
		return zapcore.InfoLevel
	case logging.LevelWarn:
		return zapcore.WarnLevel
	default:
		return zapcore.ErrorLevel
	}
}

// peerAddress is the peer.address field: a TCP address makes one string
// instead of the three net.TCPAddr.String makes.
func peerAddress(a net.Addr) zapcore.Field {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return zap.Stringer("peer.address", a)
	}
	ap := ta.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	var b [len("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%zone]:65535")]byte
	return zap.String("peer.address", string(ap.AppendTo(b[:0])))
}
