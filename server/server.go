package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"github.com/jhump/protoreflect/v2/sourceinfo"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	v1reflectiongrpc "google.golang.org/grpc/reflection/grpc_reflection_v1"
	v1alphareflectiongrpc "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/stats"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
)

// Fixed limits of the gRPC listener.
const (
	// maxRecvMsgSize bounds a request: the longest valid ticket is 16 KiB.
	// A stream holds at most this much of an unfinished request.
	maxRecvMsgSize = 20 << 10
	// maxConnectionAge makes clients reconnect now and then, so that a
	// scaled-out deployment rebalances connections to new replicas.
	maxConnectionAge      = 10 * time.Minute
	maxConnectionAgeGrace = 30 * time.Second
	// maxStreamsPerConn bounds the calls in flight on one connection, and
	// so the finished streams grpc-go keeps while a client that never
	// reads holds their answers (docs/benchmarks.md, "Stream attacks").
	maxStreamsPerConn = 32
	// windowSize is each stream's and each connection's HTTP/2 receive
	// window. Set, it turns off grpc-go's window growth (up to 16 MiB a
	// connection), so a connection buffers at most this much unread data.
	windowSize = 64 << 10
	// readBufferSize is each connection's read buffer (grpc-go's default
	// is 32 KiB).
	readBufferSize = 8 << 10
	// connectionTimeout bounds a new connection's TLS handshake and HTTP/2
	// preface.
	connectionTimeout = 10 * time.Second
	// maxConnectionIdle closes a connection that has had no call for this
	// long; clients reconnect when they next call.
	maxConnectionIdle = 5 * time.Minute
	// maxConnections bounds the connections open at once, and
	// maxConnectionsPerSource those from one address but loopback
	// (conns.go: at the cap a new connection evicts the oldest that never
	// carried a caller's call).
	maxConnections          = 1024
	maxConnectionsPerSource = 64
	// maxHTTPConnections bounds the HTTP listener's connections likewise.
	maxHTTPConnections = 256
)

// Options are what the command gives the server beside its config.
type Options struct {
	// Logger receives the server's logs; named loggers "grpc" (one line per
	// call), "audit" (one line per issued ticket) and "config" hang off it.
	Logger *zap.Logger
	// LogLevel, when set, follows the config's log.level across reloads.
	LogLevel *zap.AtomicLevel
	// ConfigPath is the file Reload reads; empty means no reloading.
	ConfigPath string
	// Clock is the time tickets are minted and verified at; default time.Now.
	Clock func() time.Time
	// Version is reported by usersig_build_info.
	Version string
	// StatsHandler, when set, instruments the gRPC server (tracing).
	StatsHandler stats.Handler
}

// Server is usersigd: it wires the parts and runs them. The service
// (service.go, auth.go) answers UserSigService calls under the policy in
// force, the admission (tap.go) admits or refuses streams from their
// headers, and the reloader (reload.go) puts configs in force; Server
// holds the listeners, the gRPC and HTTP servers, health and readiness.
type Server struct {
	log              *zap.Logger
	opts             Options
	cfg              *Config // as loaded at start; listeners and limits do not reload
	policy           atomic.Pointer[policy]
	metrics          *metrics
	svc              *service
	admission        *admission
	reloader         *reloader
	grpc             *grpc.Server
	unary            []grpc.UnaryServerInterceptor // the chain, outermost first
	health           *health.Server
	http             *http.Server
	grpcLis, httpLis net.Listener
	api              *httpAPI // nil without http_api
	conns            *connLimit
	ready            atomic.Bool
}

// New builds the server from a loaded config.
func New(l *Loaded, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	s := &Server{log: opts.Logger, opts: opts, cfg: l.Config, metrics: newMetrics(opts.Version)}
	clock := opts.Clock
	if clock == nil {
		clock = time.Now
	}
	s.svc = &service{policy: &s.policy, clock: clock, metrics: s.metrics, log: s.log}
	if l.shared != nil {
		s.svc.shared = newSharedRates(l.shared, s.metrics, s.log.Named("ratelimit"))
	}
	s.admission = newAdmission(&s.policy, l.Config.GRPC, s.metrics, s.log.Named("grpc"))
	s.reloader = &reloader{path: opts.ConfigPath, policy: &s.policy, start: l.Config, metrics: s.metrics,
		log: s.log.Named("config"), audit: s.log.Named("audit"), logLevel: opts.LogLevel,
		issuers: &issuers{metrics: s.metrics, log: s.log.Named("oidc")}}
	if err := s.buildGRPC(); err != nil {
		return nil, err
	}
	s.buildHTTP()
	s.reloader.install(l, nil)
	return s, nil
}

// isService matches the calls of UserSigService, the only ones that need
// a caller; health and reflection are open.
var isService = selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
	return c.Service == usersigv1.UserSigService_ServiceDesc.ServiceName
})

// notHealth matches every call but health checks, which probes make every
// few seconds and which would flood the call log.
var notHealth = selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
	return c.Service != healthpb.Health_ServiceDesc.ServiceName
})

func (s *Server) buildGRPC() error {
	calls := &callLog{log: s.log.Named("grpc")}
	recoveryOpt := recovery.WithRecoveryHandlerContext(s.recovered)
	// Connections come through the limit (conns.go), streams through the
	// tap (tap.go), which admits them and bounds
	// their number and duration. Then, read from the outside in: call info
	// for the inner ones to fill, metrics, the call log (calllog.go), panic
	// recovery, then for UserSigService calls authentication.
	s.unary = []grpc.UnaryServerInterceptor{
		unaryCallInfo,
		s.metrics.grpc.UnaryServerInterceptor(),
		selector.UnaryServerInterceptor(calls.unary, notHealth),
		recovery.UnaryServerInterceptor(recoveryOpt),
		selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(s.svc.authenticate), isService),
	}
	// What every transport's server shares: the chains, message and
	// header limits, stream workers and tracing.
	shared := []grpc.ServerOption{
		grpc.MaxHeaderListSize(maxHeaderListSize),
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		// Workers keep their grown stacks; a goroutine per stream grows one
		// on every call (see docs/benchmarks.md).
		grpc.NumStreamWorkers(64),
		grpc.ChainUnaryInterceptor(s.unary...),
		grpc.ChainStreamInterceptor(
			streamCallInfo,
			s.metrics.grpc.StreamServerInterceptor(),
			selector.StreamServerInterceptor(calls.stream, notHealth),
			recovery.StreamServerInterceptor(recoveryOpt),
			selector.StreamServerInterceptor(auth.StreamServerInterceptor(s.svc.authenticate), isService),
		),
	}
	if s.opts.StatsHandler != nil {
		shared = append(shared, grpc.StatsHandler(s.opts.StatsHandler))
	}
	opts := append([]grpc.ServerOption{
		grpc.InTapHandle(s.admission.tapHandle),
		// Strangers' connections need contexts that end with them
		// (connctx.go); the HTTP API's in-memory connection does not.
		grpc.StatsHandler(connContext{}),
		grpc.InitialWindowSize(windowSize),
		grpc.InitialConnWindowSize(windowSize),
		grpc.ConnectionTimeout(connectionTimeout),
		// A connection reads through a small buffer: a request is well
		// under a KiB. (grpc-go shares write buffers between connections.)
		grpc.ReadBufferSize(readBufferSize),
		// Calls beyond this on one connection wait in the client, not here.
		grpc.MaxConcurrentStreams(maxStreamsPerConn),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge:      maxConnectionAge,
			MaxConnectionAgeGrace: maxConnectionAgeGrace,
			MaxConnectionIdle:     maxConnectionIdle,
			Time:                  time.Minute,
			Timeout:               20 * time.Second,
		}),
	}, shared...)
	if t := s.cfg.GRPC.TLS; t != nil {
		tc, err := s.serverTLS(t)
		if err != nil {
			return err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	s.grpc = grpc.NewServer(opts...)
	usersigv1.RegisterUserSigServiceServer(s.grpc, s.svc)
	s.health = health.NewServer()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(usersigv1.UserSigService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	registerReflection(s.grpc)
	calls.learn(s.grpc)
	s.admission.learn(s.grpc)
	s.metrics.grpc.InitializeMetrics(s.grpc)
	if a := s.cfg.HTTPAPI; a != nil {
		api, err := newHTTPAPI(a, s.cfg.GRPC.MaxCallDuration.d, s.svc, shared, s.admission, s.metrics, s.log.Named("http_api"))
		if err != nil {
			return err
		}
		s.api = api
		if t := a.TLS; t != nil {
			if api.tls, err = s.certTLS("http_api.tls", t.CertFile, t.KeyFile); err != nil {
				return err
			}
		}
	}
	return nil
}

// serverTLS loads the certificate, which it reloads when its files change
// (tlscert.go), and, for mutual TLS, the client CAs.
func (s *Server) serverTLS(t *TLSConfig) (*tls.Config, error) {
	tc, err := s.certTLS("grpc.tls", t.CertFile, t.KeyFile)
	if err != nil {
		return nil, err
	}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, &ConfigError{Problems: []string{"grpc.tls.client_ca_file: " + pathError(err)}}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &ConfigError{Problems: []string{"grpc.tls.client_ca_file: " + t.ClientCAFile + " holds no PEM certificate"}}
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// certTLS is a TLS config serving a listener's certificate, which Reload
// and the reload interval read again when its files change (tlscert.go).
func (s *Server) certTLS(field, certFile, keyFile string) (*tls.Config, error) {
	certs, err := newCertReloader(field, certFile, keyFile, s.cfg.Reload.Interval.d, s.log.Named("config"))
	if err != nil {
		return nil, err
	}
	s.reloader.certs = append(s.reloader.certs, certs)
	return &tls.Config{GetCertificate: certs.getCertificate, MinVersion: tls.VersionTLS12}, nil
}

// unaryCallInfo gives the call the call info the tap made for it, or a
// new one, and releases the tap's slot when the call is over.
func unaryCallInfo(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ci := callInfoFrom(ctx)
	if ci == nil {
		ctx, ci = withCallInfo(ctx)
	}
	defer ci.admitted.end()
	return handler(ctx, req)
}

func streamCallInfo(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := ss.Context()
	ci := callInfoFrom(ctx)
	if ci == nil {
		ctx, ci = withCallInfo(ctx)
		ss = &contextStream{ServerStream: ss, ctx: ctx}
	}
	defer ci.admitted.end()
	return handler(srv, ss)
}

type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c *contextStream) Context() context.Context { return c.ctx }

// recovered logs a panic (never the request) and answers INTERNAL with a
// constant message: a panic's value must not reach the client.
func (s *Server) recovered(ctx context.Context, p any) error {
	method, _ := grpc.Method(ctx)
	s.log.Error("panic in a call", zap.String("grpc.method", method), zap.String("panic", fmt.Sprintf("%T", p)), zap.Stack("stack"))
	return errInternal
}

func (s *Server) buildHTTP() {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	if s.cfg.HTTP.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	// The HTTP listener needs no credentials either: its requests are
	// small, quick and few (probes and scrapes).
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute,
		MaxHeaderBytes: maxHeaderListSize}
}

// Listen binds the gRPC and HTTP listeners, so that a port in use fails
// start-up before anything is served.
func (s *Server) Listen() error {
	lis, err := net.Listen("tcp", s.cfg.GRPC.Listen)
	if err != nil {
		return fmt.Errorf("grpc.listen: %w", err)
	}
	s.conns = newConnLimit(lis, maxConnections, maxConnectionsPerSource, s.metrics, "grpc")
	s.grpcLis, s.admission.conns = s.conns, s.conns
	if s.cfg.HTTP.Listen != "" {
		hl, err := net.Listen("tcp", s.cfg.HTTP.Listen)
		if err != nil {
			lis.Close()
			return fmt.Errorf("http.listen: %w", err)
		}
		s.httpLis = netutil.LimitListener(hl, maxHTTPConnections)
	}
	if s.api != nil {
		if err := s.api.listen(); err != nil {
			lis.Close()
			if s.httpLis != nil {
				s.httpLis.Close()
			}
			return fmt.Errorf("http_api.listen: %w", err)
		}
	}
	return nil
}

// APIAddr is the address the HTTP API listener is bound to, or "".
func (s *Server) APIAddr() string {
	if s.api == nil || s.api.lis == nil {
		return ""
	}
	return s.api.lis.Addr().String()
}

// GRPCAddr is the address the gRPC listener is bound to.
func (s *Server) GRPCAddr() string { return s.grpcLis.Addr().String() }

// HTTPAddr is the address the HTTP listener is bound to, or "".
func (s *Server) HTTPAddr() string {
	if s.httpLis == nil {
		return ""
	}
	return s.httpLis.Addr().String()
}

// ErrDrainTimeout is returned by Serve when calls were still running when
// shutdown.timeout ran out and were cut off.
var ErrDrainTimeout = errors.New("shutdown.timeout ran out with calls in flight; they were cut off")

// Serve serves until ctx is done, then drains: it reports not ready at
// once (health NOT_SERVING, /readyz 503), keeps serving for
// shutdown.delay, then stops taking calls and waits up to shutdown.timeout
// for those in flight. Call Listen first.
func (s *Server) Serve(ctx context.Context) error {
	if s.grpcLis == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	errc := make(chan error, 3)
	go func() { errc <- s.grpc.Serve(s.grpcLis) }()
	if s.httpLis != nil {
		go func() { errc <- s.http.Serve(s.httpLis) }()
	}
	if s.api != nil {
		s.api.serve(errc)
	}
	s.setReady(true)
	s.log.Info("serving", zap.String("grpc", s.GRPCAddr()), zap.String("http", s.HTTPAddr()), zap.String("http_api", s.APIAddr()),
		zap.Uint64("config_generation", s.policy.Load().generation), zap.String("config_hash", s.policy.Load().hash))
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	defer s.reloader.issuers.close()
	if sh := s.svc.shared; sh != nil {
		defer sh.close()
		// Once, for the log: Redis down at start stops nothing.
		go func() {
			if err := sh.ping(watchCtx); err != nil {
				sh.log.Warn("the shared rate limiter (Redis) does not answer at start; rated calls use this process's own buckets (or are refused, with on_backend_error: deny) until it does",
					zap.String("error", err.Error()))
			} else {
				sh.log.Info("rates are shared through Redis", zap.String("addr", sh.client.Options().Addr))
			}
		}()
	}
	if s.opts.ConfigPath != "" && s.cfg.Reload.Interval.d > 0 {
		go s.reloader.watch(watchCtx, s.cfg.Reload.Interval.d)
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		s.grpc.Stop()
		s.http.Close()
		if s.api != nil {
			s.api.close()
		}
		return err
	}
	return s.drain()
}

func (s *Server) setReady(ready bool) {
	s.ready.Store(ready)
	if ready {
		s.health.Resume()
		s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		s.health.SetServingStatus(usersigv1.UserSigService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
		s.metrics.ready.Set(1)
		return
	}
	s.health.Shutdown() // NOT_SERVING for every service, and it stays so
	s.metrics.ready.Set(0)
}

func (s *Server) drain() error {
	delay, timeout := s.cfg.Shutdown.Delay.d, s.cfg.Shutdown.Timeout.d
	s.setReady(false)
	s.log.Info("draining: not ready; still serving for shutdown.delay", zap.Duration("delay", delay), zap.Duration("timeout", timeout))
	time.Sleep(delay)
	s.log.Info("draining: refusing new calls, finishing those in flight")
	s.admission.streams.drain() // a Watch would otherwise hold GracefulStop to the timeout
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	apiDone := make(chan error, 1)
	go func() {
		if s.api == nil {
			apiDone <- nil
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		apiDone <- s.api.shutdown(ctx)
	}()
	var err error
	select {
	case <-done:
	case <-time.After(timeout):
		s.grpc.Stop()
		err = ErrDrainTimeout
	}
	if apiErr := <-apiDone; apiErr != nil {
		err = ErrDrainTimeout
	}
	hctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s.http.Shutdown(hctx)
	if err == nil {
		s.log.Info("stopped")
	}
	return err
}

// Reload reads the config file and the key files again and puts them in
// force at once. A config that fails validation is rejected, with one log
// line per problem, and the one in force stays.
func (s *Server) Reload() error { return s.reloader.reload() }

// registerReflection serves reflection, v1 and the v1alpha that older
// clients ask for, from descriptors that carry the proto's comments
// (gen/usersig/v1/usersig.pb.srcinfo.go registers them), so that
// `grpcurl describe` shows each field's documentation.
func registerReflection(s *grpc.Server) {
	opts := reflection.ServerOptions{Services: s, DescriptorResolver: sourceinfo.Files, ExtensionResolver: sourceinfo.Types}
	v1reflectiongrpc.RegisterServerReflectionServer(s, reflection.NewServerV1(opts))
	v1alphareflectiongrpc.RegisterServerReflectionServer(s, reflection.NewServer(opts))
}
