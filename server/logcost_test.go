package server

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
)

// BenchmarkLogLine measures what logging costs each call, apart from the
// rest: the call log line (go-grpc-middleware's logging interceptor with
// the zap adapter, as configured in buildGRPC) around a handler that does
// nothing, and the audit line of a minted ticket. Both write with zap's
// production JSON encoder to io.Discard, so no I/O is counted.
func BenchmarkLogLine(b *testing.B) {
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.InfoLevel))
	b.Run("call", func(b *testing.B) {
		s := &Server{}
		ic := logging.UnaryServerInterceptor(zapLogger(log), callLogOptions(s.callLogFields)...)
		info := &grpc.UnaryServerInfo{FullMethod: "/usersig.v1.UserSigService/GenerateUserSig"}
		handler := func(context.Context, any) (any, error) { return nil, nil }
		ctx, ci := withCallInfo(context.Background())
		ci.caller = &caller{name: "backend"}
		ctx, cancel := context.WithTimeout(ctx, time.Minute) // clients send a deadline, which is logged
		defer cancel()
		b.ReportAllocs()
		for b.Loop() {
			ic(ctx, nil, info, handler)
		}
	})
	b.Run("audit", func(b *testing.B) {
		s := &Server{audit: log}
		c := &caller{name: "backend", allApps: true}
		a := &app{id: 1400000000, keyIDs: []string{"primary"}}
		newMetrics("bench").bind(&policy{appList: []*app{a}, callers: []*caller{c}})
		ci := &callInfo{caller: c}
		b.ReportAllocs()
		for b.Loop() {
			s.issued(ci, a, kindUserSig, "user_0001", time.Hour)
		}
	})
}
