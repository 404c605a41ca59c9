package server

import (
	"context"

	"google.golang.org/grpc/stats"
)

// connContext is a stats.Handler that gives each gRPC connection a
// context that ends with it. grpc-go derives every stream's context from
// its connection's, and arms a timer for a call's grpc-timeout before the
// tap sees the call; when the tap refuses the call, grpc-go v1.85.0 does
// not cancel that context, so its timer would live until the deadline the
// client chose (SECURITY.md, "Known gap"). Ended with the connection, the
// timers go with it; the tap closes a connection that piles them up
// (maxRefusalsPerConn). It does nothing per call.
type connContext struct{}

type connCancelKey struct{}

func (connContext) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	return context.WithValue(ctx, connCancelKey{}, cancel)
}

func (connContext) HandleConn(ctx context.Context, s stats.ConnStats) {
	if _, end := s.(*stats.ConnEnd); end {
		if cancel, ok := ctx.Value(connCancelKey{}).(context.CancelFunc); ok {
			cancel()
		}
	}
}

func (connContext) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (connContext) HandleRPC(context.Context, stats.RPCStats) {}
