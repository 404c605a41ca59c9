// Command bare is the reference bench/run.sh measures usersigd against: a
// bare grpc-go server (default options, no interceptors, no auth, no logs)
// that serves grpc.health.v1.Health, server reflection and a
// usersig.v1.UserSigService whose methods do no work at all: each returns
// one answer made at start, of the size and shape usersigd's are (a real
// ticket, its times, the key id).
//
//	bare -listen 127.0.0.1:0
//
// It prints "listening ADDR" on stdout once it serves, and stops on SIGTERM
// or SIGINT. Its Health/Check is the "bare grpc-go health server" the
// performance goal speaks of; its GenerateUserSig against its own
// Health/Check is what this API costs on the wire when the server adds
// nothing, which bounds the ratio any implementation can reach on the
// machine (see docs/benchmarks.md).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/types/known/timestamppb"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
	"github.com/usersig/usersig/signer"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve gRPC on")
	flag.Parse()
	if err := run(*listen); err != nil {
		fmt.Fprintln(os.Stderr, "bare:", err)
		os.Exit(1)
	}
}

func run(listen string) error {
	svc, err := newService()
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	usersigv1.RegisterUserSigServiceServer(srv, svc)
	healthpb.RegisterHealthServer(srv, health.NewServer()) // SERVING
	reflection.Register(srv)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		srv.Stop()
	}()
	fmt.Printf("listening %s\n", lis.Addr())
	return srv.Serve(lis)
}

// service answers every call with the answer it made at start.
type service struct {
	usersigv1.UnimplementedUserSigServiceServer
	gen    *usersigv1.GenerateUserSigResponse
	verify *usersigv1.VerifyUserSigResponse
	pmk    *usersigv1.GeneratePrivateMapKeyResponse
}

func newService() (*service, error) {
	const app, user = 1400000000, "user_0001"
	key, err := signer.NewKey([]byte("5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3f0123456789abcd"))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	sig, err := key.UserSig(app, user, 24*time.Hour, now)
	if err != nil {
		return nil, err
	}
	pmk, err := key.PrivateMapKey(app, user, 24*time.Hour, signer.Room{ID: 1234}, 255, now)
	if err != nil {
		return nil, err
	}
	return &service{
		gen: &usersigv1.GenerateUserSigResponse{UserSig: sig.Ticket, SdkAppId: app, UserId: user,
			IssueTime: timestamppb.New(sig.IssueTime), ExpireTime: timestamppb.New(sig.ExpireTime), KeyId: "primary"},
		verify: &usersigv1.VerifyUserSigResponse{Valid: true, Status: usersigv1.VerifyStatus_VERIFY_STATUS_VALID,
			KeyId: "primary", IssueTime: timestamppb.New(sig.IssueTime), ExpireTime: timestamppb.New(sig.ExpireTime)},
		pmk: &usersigv1.GeneratePrivateMapKeyResponse{PrivateMapKey: pmk.Ticket, SdkAppId: app, UserId: user,
			IssueTime: timestamppb.New(pmk.IssueTime), ExpireTime: timestamppb.New(pmk.ExpireTime), KeyId: "primary"},
	}, nil
}

func (s *service) GenerateUserSig(context.Context, *usersigv1.GenerateUserSigRequest) (*usersigv1.GenerateUserSigResponse, error) {
	return s.gen, nil
}

func (s *service) VerifyUserSig(context.Context, *usersigv1.VerifyUserSigRequest) (*usersigv1.VerifyUserSigResponse, error) {
	return s.verify, nil
}

func (s *service) GeneratePrivateMapKey(context.Context, *usersigv1.GeneratePrivateMapKeyRequest) (*usersigv1.GeneratePrivateMapKeyResponse, error) {
	return s.pmk, nil
}
