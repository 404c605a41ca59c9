// Command usersigd serves the usersig.v1 gRPC API: it mints and verifies
// Tencent Cloud IM and TRTC tickets for authenticated callers.
//
//	usersigd --config /etc/usersig/config.yaml
//	usersigd --dev        # no config: a throwaway app and caller on 127.0.0.1:50051
//
// SIGTERM or SIGINT drain and stop the server; SIGHUP reloads the config.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/usersig/usersig/cmd/internal/safeflag"
	"github.com/usersig/usersig/server"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "devel"

// The garbage collector's settings unless GOGC or GOMEMLIMIT are set. Every
// call allocates a few KiB in gRPC and its interceptors over a small live
// heap, and the default GOGC of 100 spends much of the CPU collecting it;
// 400 does far less work. But it lets the heap grow to five times what is
// live, and under overload or a flood of refused streams that garbage
// would grow past a container's memory limit: the soft limit makes the
// collector work harder instead. It sits above the service's working set,
// and it is soft: a live heap above it is collected, never refused.
// docs/benchmarks.md ("The service", "Stream attacks") has the figures.
// Containers with a memory limit should set GOMEMLIMIT to about half of it.
const (
	gcPercent   = 400
	memoryLimit = 64 << 20
)

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("usersigd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	configPath := fs.String("config", "", "the config file (YAML)")
	dev := fs.Bool("dev", false, "run without a config: one app with a random key and one caller with a random token, on 127.0.0.1:50051")
	showVersion := fs.Bool("version", false, "print the version and exit")
	devGRPC := fs.String("dev-listen", "127.0.0.1:50051", "with --dev: the gRPC address")
	devHTTP := fs.String("dev-http-listen", "127.0.0.1:9090", "with --dev: the metrics and probes address")
	devAPI := fs.String("dev-api-listen", "127.0.0.1:8080", "with --dev: the HTTP/JSON API address")
	// Errors name a flag or an argument's position, never a value: an
	// argument in the wrong place may be a key or a token.
	rest, ferr := safeflag.Parse(fs, args, 1, nil)
	if errors.Is(ferr, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fmt.Fprintln(stdout, "usage: usersigd --config FILE | --dev")
		fs.PrintDefaults()
		return 0
	}
	if ferr != nil {
		fmt.Fprintln(stderr, "usersigd:", ferr)
		return 2
	}
	switch {
	case len(rest) > 0:
		fmt.Fprintf(stderr, "usersigd: argument %d is unexpected: usersigd takes only flags\n", rest[0].Pos)
		return 2
	case *showVersion:
		fmt.Fprintln(stdout, "usersigd", version)
		return 0
	case !*dev && (isSet(fs, "dev-listen") || isSet(fs, "dev-http-listen") || isSet(fs, "dev-api-listen")):
		fmt.Fprintln(stderr, "usersigd: --dev-listen, --dev-http-listen and --dev-api-listen go with --dev; the config sets the addresses")
		return 2
	case *dev == (*configPath != ""):
		fmt.Fprintln(stderr, "usersigd: pass --config FILE, or --dev to try it out without one")
		return 2
	}

	level := zap.NewAtomicLevelAt(zap.InfoLevel)
	log, stopLog := newLogger(stderr, level)
	defer stopLog()

	var (
		loaded   *server.Loaded
		err      error
		devToken string
	)
	if *dev {
		loaded, devToken, err = devConfig(*devGRPC, *devHTTP, *devAPI)
	} else {
		loaded, err = server.LoadConfig(*configPath)
	}
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			log.Error("cannot start", zap.String("problem", line))
		}
		return 2
	}

	tracing, err := server.NewTracing(context.Background(), version)
	if err != nil {
		log.Error("cannot start: tracing", zap.Error(err))
		return 2
	}
	defer tracing.Shutdown(context.Background())
	srv, err := server.New(loaded, server.Options{
		Logger:       log,
		LogLevel:     &level,
		ConfigPath:   *configPath,
		Version:      version,
		StatsHandler: tracing.Handler,
	})
	if err != nil {
		log.Error("cannot start", zap.String("problem", err.Error()))
		return 2
	}
	if err := srv.Listen(); err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	if *dev {
		devBanner(stdout, devToken, srv)
	}
	// The HTTP listener serves only metrics and probes, no secrets: no
	// warning for it.
	if loaded.Config.GRPC.TLS == nil && !isLoopback(srv.GRPCAddr()) {
		log.Warn("gRPC listens on a non-loopback address without TLS: tokens and tickets cross the network in clear; set grpc.tls",
			zap.String("grpc", srv.GRPCAddr()))
	}
	if a := loaded.Config.HTTPAPI; a != nil && a.TLS == nil && !isLoopback(srv.APIAddr()) {
		log.Warn("the HTTP API listens on a non-loopback address without TLS: tokens and tickets cross the network in clear; set http_api.tls",
			zap.String("http_api", srv.APIAddr()))
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if *configPath == "" {
				log.Warn("SIGHUP: --dev has no config file to reload")
				continue
			}
			log.Info("SIGHUP: reloading the config")
			srv.Reload()
		}
	}()
	if err := srv.Serve(ctx); err != nil {
		log.Error("stopped", zap.Error(err))
		return 1
	}
	return 0
}

// newLogger logs JSON lines to w with zap's production encoder ("ts" in
// Unix seconds). Sampling is off: the audit trail must hold every issued
// ticket. Lines are written in batches at most 100 ms apart rather than one
// write(2) each, which at thousands of calls a second is a large share of
// the CPU; stop flushes what is left, and is called on every way out.
func newLogger(w io.Writer, level zap.AtomicLevel) (log *zap.Logger, stop func()) {
	ws := &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(w), Size: 256 << 10, FlushInterval: 100 * time.Millisecond}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), ws, level)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(w)))), func() { ws.Stop() }
}

// devConfig makes the --dev config with a fresh key and token.
func devConfig(grpcListen, httpListen, apiListen string) (*server.Loaded, string, error) {
	key, token := make([]byte, 32), make([]byte, 24)
	rand.Read(key)
	rand.Read(token)
	tok := hex.EncodeToString(token)
	cfg := server.DevConfig([]byte(hex.EncodeToString(key)), tok)
	cfg.GRPC.Listen, cfg.HTTP.Listen, cfg.HTTPAPI.Listen = grpcListen, httpListen, apiListen
	loaded, err := server.Compile(cfg)
	if err != nil {
		return nil, "", err
	}
	loaded.Hash = "dev"
	return loaded, tok, nil
}

// devBanner tells the user of --dev the token and how to call the
// server, at the addresses it is bound to.
func devBanner(stdout io.Writer, tok string, srv *server.Server) {
	fmt.Fprintf(stdout, `usersigd --dev: app %d with a random key, caller "dev" with this bearer token (both change at every start):

  export TOKEN=%s

Try it with grpcurl (go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4):

  grpcurl -plaintext %[3]s list
  grpcurl -plaintext %[3]s describe usersig.v1.GenerateUserSigRequest
  grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{"user_id": "alice", "ttl": "86400s"}' %[3]s usersig.v1.UserSigService/GenerateUserSig
  grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{"user_id": "alice", "user_sig": "PASTE_THE_USER_SIG"}' %[3]s usersig.v1.UserSigService/VerifyUserSig
  grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{"user_id": "alice", "ttl": "300s", "room_id": 1234, "privilege_map": 255}' %[3]s usersig.v1.UserSigService/GeneratePrivateMapKey
  curl -s http://%[4]s/metrics | grep ^usersig_

Or over HTTP/JSON (the OpenAPI document is at http://%[5]s/openapi.json):

  curl -s -H "Authorization: Bearer $TOKEN" -d '{"user_id": "alice", "ttl": "86400s"}' http://%[5]s/v1/usersig:generate

`, server.DevSDKAppID, tok, srv.GRPCAddr(), srv.HTTPAddr(), srv.APIAddr())
}

// isLoopback reports whether a bound listener address (host:port, the
// host an IP: a name such as localhost is resolved when binding) is on
// loopback only. A wildcard address (0.0.0.0, ::) is not.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isSet reports whether the command line set the flag.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
