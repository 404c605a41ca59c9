package server

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
)

// BenchmarkLogLine measures what logging costs each call, apart from the
// rest: the call log line (callLog, as buildGRPC installs it) around a
// handler that does nothing, the same line from go-grpc-middleware's
// logging interceptor with a zap adapter (what callLog replaced, for
// comparison), and the audit line of a minted ticket. All write with zap's
// production JSON encoder to io.Discard, so no I/O is counted.
func BenchmarkLogLine(b *testing.B) {
	log := discardLogger()
	info := &grpc.UnaryServerInfo{FullMethod: "/usersig.v1.UserSigService/GenerateUserSig"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	ctx, ci := withCallInfo(context.Background())
	ci.caller = &caller{name: "backend"}
	ctx = peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 41234}})
	ctx, cancel := context.WithTimeout(ctx, time.Minute) // clients send a deadline
	defer cancel()
	calls := &callLog{log: log}
	srv := grpc.NewServer()
	usersigv1.RegisterUserSigServiceServer(srv, &service{})
	calls.learn(srv)
	for _, bc := range []struct {
		name string
		ic   grpc.UnaryServerInterceptor
	}{
		{"call", calls.unary},
		{"call-go-grpc-middleware", logging.UnaryServerInterceptor(middlewareZap(log),
			logging.WithLogOnEvents(logging.FinishCall),
			logging.WithFieldsFromContext(func(ctx context.Context) logging.Fields {
				return logging.Fields{"caller", callInfoFrom(ctx).callerName()}
			}),
			logging.WithDisableLoggingFields(logging.SystemTag[0], logging.ComponentFieldKey, logging.MethodTypeFieldKey))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bc.ic(ctx, nil, info, handler)
			}
		})
	}
	b.Run("audit", func(b *testing.B) {
		m := newMetrics("bench")
		r := &reloader{metrics: m, audit: log}
		h := &service{metrics: m}
		c := &caller{name: "backend", allApps: true}
		a := &app{id: 1400000000, keyIDs: []string{"primary"}}
		r.bind(&policy{appList: []*app{a}, callers: []*caller{c}})
		ci := &callInfo{caller: c}
		b.ReportAllocs()
		for b.Loop() {
			h.issued(ci, a, kindUserSig, "user_0001", time.Hour)
		}
	})
}

// discardLogger logs as usersigd does, with zap's production JSON encoder,
// to io.Discard: the encoding is measured, no I/O.
func discardLogger() *zap.Logger {
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.InfoLevel))
}

// middlewareZap adapts zap to go-grpc-middleware's logging, as its
// examples do.
func middlewareZap(l *zap.Logger) logging.Logger {
	return logging.LoggerFunc(func(_ context.Context, lvl logging.Level, msg string, fields ...any) {
		f := make([]zap.Field, 0, len(fields)/2)
		for i := 0; i+1 < len(fields); i += 2 {
			key, _ := fields[i].(string)
			f = append(f, zap.Any(key, fields[i+1]))
		}
		if ce := l.Check(zapLevel(lvl), msg); ce != nil {
			ce.Write(f...)
		}
	})
}
