package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
)

// BenchmarkHandlerPath measures one call's whole path through the server
// above the transport, as grpc-go runs it: decoding the request, the
// interceptor chain as buildGRPC installs it (call info, metrics, the call
// log, recovery, limits, authentication), the handler with its audit line,
// and encoding the response; logs go through zap's production JSON encoder
// to io.Discard. Health/Check, the floor of bench/run.sh, runs the same
// chain. What a method costs over Health is what this service adds to a
// call; BenchmarkRPC adds the client and the loopback transport.
func BenchmarkHandlerPath(b *testing.B) {
	const token = "bench-token-6c1f0e9d8b7a"
	dir := b.TempDir()
	keyFile := filepath.Join(dir, "primary.key")
	if err := os.WriteFile(keyFile, []byte("5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3f0123456789abcd"), 0o600); err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256([]byte(token))
	cfg, err := ParseConfig([]byte(`
grpc: {listen: "127.0.0.1:0"}
apps:
  - sdk_app_id: 1400000000
    keys: [{id: primary, file: "` + keyFile + `"}]
callers:
  - name: bench
    token_sha256: ` + hex.EncodeToString(sum[:]) + `
    apps: [1400000000]
    methods: [GenerateUserSig, VerifyUserSig, GeneratePrivateMapKey]
`))
	if err != nil {
		b.Fatal(err)
	}
	l, err := Compile(cfg)
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(l, Options{Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	s.setReady(true)
	chain := chainUnary(s.unary)
	impl := s.svc
	minted, err := impl.policy.Load().apps[1400000000].keys[0].UserSig(1400000000, "user_0001", 24*time.Hour, time.Now())
	if err != nil {
		b.Fatal(err)
	}

	// The context grpc-go gives a call: the peer, the client's deadline,
	// its metadata and the method.
	base := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 41234}})
	base, cancel := context.WithTimeout(base, time.Hour)
	defer cancel()
	authed := metadata.NewIncomingContext(base, metadata.Pairs("authorization", "Bearer "+token))

	for _, bc := range []struct {
		name string
		desc *grpc.ServiceDesc
		impl any
		ctx  context.Context
		req  proto.Message
	}{
		{"Health", &healthpb.Health_ServiceDesc, s.health, base, &healthpb.HealthCheckRequest{}},
		{"GenerateUserSig", &usersigv1.UserSigService_ServiceDesc, impl, authed,
			&usersigv1.GenerateUserSigRequest{SdkAppId: 1400000000, UserId: "user_0001", Ttl: durationpb.New(24 * time.Hour)}},
		{"VerifyUserSig", &usersigv1.UserSigService_ServiceDesc, impl, authed,
			&usersigv1.VerifyUserSigRequest{SdkAppId: 1400000000, UserId: "user_0001", UserSig: minted.Ticket}},
		{"GeneratePrivateMapKey", &usersigv1.UserSigService_ServiceDesc, impl, authed,
			&usersigv1.GeneratePrivateMapKeyRequest{SdkAppId: 1400000000, UserId: "user_0001", Ttl: durationpb.New(time.Hour),
				Room: &usersigv1.GeneratePrivateMapKeyRequest_RoomId{RoomId: 1234}, PrivilegeMap: 255}},
	} {
		method := bc.name
		if method == "Health" {
			method = "Check"
		}
		var handler grpc.MethodHandler
		for _, m := range bc.desc.Methods {
			if m.MethodName == method {
				handler = m.Handler
			}
		}
		in, err := proto.Marshal(bc.req)
		if err != nil {
			b.Fatal(err)
		}
		ctx := grpc.NewContextWithServerTransportStream(bc.ctx, methodStream("/"+bc.desc.ServiceName+"/"+method))
		dec := func(m any) error { return proto.Unmarshal(in, m.(proto.Message)) }
		call := func() error {
			resp, err := handler(bc.impl, ctx, dec, chain)
			if err != nil {
				return err
			}
			_, err = proto.Marshal(resp.(proto.Message))
			return err
		}
		if err := call(); err != nil {
			b.Fatalf("%s: %v", bc.name, err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := call(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// chainUnary chains interceptors as grpc.ChainUnaryInterceptor does.
func chainUnary(ics []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return ics[0](ctx, req, info, chainedHandler(ics, 0, info, handler))
	}
}

func chainedHandler(ics []grpc.UnaryServerInterceptor, i int, info *grpc.UnaryServerInfo, final grpc.UnaryHandler) grpc.UnaryHandler {
	if i == len(ics)-1 {
		return final
	}
	return func(ctx context.Context, req any) (any, error) {
		return ics[i+1](ctx, req, info, chainedHandler(ics, i+1, info, final))
	}
}

// methodStream is the grpc.ServerTransportStream that grpc.Method reads.
type methodStream string

func (m methodStream) Method() string             { return string(m) }
func (methodStream) SetHeader(metadata.MD) error  { return nil }
func (methodStream) SendHeader(metadata.MD) error { return nil }
func (methodStream) SetTrailer(metadata.MD) error { return nil }
