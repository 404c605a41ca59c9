package server

import (
	"bytes"
	"context"
	"crypto/tls"
	_ "embed" // the OpenAPI document
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/cors"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	usersigv1gw "github.com/usersig/usersig/gen/gateway/usersig/v1"
	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
)

// The HTTP/JSON API (http_api) is grpc-gateway in front of the gRPC
// service. The gateway does not call the service in process (that would
// skip the interceptors): it calls it as any client does, over an
// in-memory connection to a second grpc.Server that serves
// UserSigService alone through the same admission (tap.go), the same
// interceptor chain and so the same authentication, policy, rate limits,
// call log, audit line and metrics. That server has no TLS of its own,
// so the API works whether or not the gRPC listener uses TLS, and it
// trusts one thing the public one does not: the HTTP client's address,
// which the gateway sets and which the call log then shows.
//
// From the HTTP request only Authorization and the W3C trace context
// (traceparent, tracestate) become metadata: no Grpc-Metadata-* header,
// no forwarded address, no header a certificate would have set. A caller
// is known over HTTP by its bearer token only; a caller bound to client
// certificates cannot call over HTTP (its token is refused without its
// certificate, as over gRPC).

// Limits of the HTTP API listener.
const (
	// maxAPIBody bounds a request body; above it the answer is 413.
	maxAPIBody = 64 << 10
	// maxAPIConnections bounds the API listener's open connections, as
	// the gRPC listener's are bounded (conns.go): at the cap a new one
	// evicts the oldest that never carried a caller's call, and one
	// source may hold maxConnectionsPerSource of them.
	maxAPIConnections = 1024
	// maxAPIRequests and maxAPIAnonymousRequests bound the requests the
	// API holds at once, from their headers to the last byte of their
	// answer, for callers (a valid bearer token) and for everyone else
	// (the OpenAPI document, refusals). A request that finds its pool
	// full is reset at once. Without them, HTTP/2 clients that grant no
	// flow-control window hold a goroutine and ~17 KB per stream until
	// the write timeout: 32,000 streams took 578 MB.
	maxAPIRequests          = 1024
	maxAPIAnonymousRequests = 256
	// apiReadTimeout bounds reading a request, body included, and
	// apiIdleTimeout a keep-alive connection between requests.
	apiReadTimeout = 10 * time.Second
	apiIdleTimeout = 30 * time.Second
	// httpClientKey is the metadata key, set by the gateway alone, that
	// carries the HTTP client's address to the internal server.
	httpClientKey = "usersig-http-client"
)

// openAPIDocument is the OpenAPI document buf generates from proto/
// (buf.gen.yaml), served at GET /openapi.json.
//
//go:embed openapi/usersig.swagger.json
var openAPIDocument []byte

// forwardedMetadata are the only metadata keys a call from the gateway
// carries.
var forwardedMetadata = [...]string{"authorization", "traceparent", "tracestate", httpClientKey}

// errRequestTooLarge is the answer to a body that decodes into a request
// larger than the gRPC service takes (maxRecvMsgSize): the gateway's
// client refuses to send it, and the client gets 413 as for a body over
// maxAPIBody, not the RESOURCE_EXHAUSTED (429, "retry") gRPC would say.
var errRequestTooLarge = status.Error(codes.InvalidArgument, "the request is over 20 KiB once encoded")

// httpAPI is the HTTP/JSON listener and the in-memory path to the service.
type httpAPI struct {
	cfg     *HTTPAPIConfig
	grpc    *grpc.Server // the internal server, on mem
	mem     *bufconn.Listener
	conn    *grpc.ClientConn
	http    *http.Server
	lis     net.Listener
	tls     *tls.Config // nil for plain HTTP
	json    *runtime.JSONPb
	refused *prometheus.CounterVec

	admission *admission
	metrics   *metrics
	conns     *connLimit

	callers, anonymous, appUsers *slots  // requests in flight, by who sent them
	perUser                      perUser // app users' requests in flight
}

// Why the API refused a request before it became a call.
const (
	apiNoRoute    = "no_route"
	apiMethod     = "method_not_allowed"
	apiBodyTooBig = "body_too_large"
	// The request pools were full: the request was reset unanswered.
	apiCallerRequests    = "max_requests"
	apiAnonymousRequests = "max_anonymous_requests"
	apiAppUserRequests   = "max_app_user_requests"
	apiPerAppUser        = "max_requests_per_app_user"
)

// newHTTPAPI builds the API: serverOpts are the gRPC server's options
// that every transport shares (interceptors, limits, stats handlers);
// adm is the admission, whose tap admits the gateway's calls.
func newHTTPAPI(cfg *HTTPAPIConfig, maxCallDuration time.Duration, svc usersigv1.UserSigServiceServer, serverOpts []grpc.ServerOption,
	adm *admission, m *metrics, zl *zap.Logger) (*httpAPI, error) {
	a := &httpAPI{cfg: cfg, mem: bufconn.Listen(256 << 10), admission: adm, metrics: m,
		callers:   newSlots(maxAPIRequests, apiCallerRequests, nil),
		anonymous: newSlots(maxAPIAnonymousRequests, apiAnonymousRequests, nil),
		appUsers:  newSlots(maxAPIRequests, apiAppUserRequests, nil),
		perUser:   perUser{m: map[string]int{}}}
	a.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "usersig_http_api_refused_total",
		Help: "HTTP API requests answered before they became a call: no_route, method_not_allowed, body_too_large; or reset unanswered, their pool full: max_requests (callers'), max_anonymous_requests (without valid credentials, or with an ID token waiting for its identity provider), max_app_user_requests (app users' with ID tokens), max_requests_per_app_user (8 of one app user's). Calls are counted by the grpc_server_* metrics, as gRPC calls are.",
	}, []string{"reason"})
	for _, r := range []string{apiNoRoute, apiMethod, apiBodyTooBig, apiCallerRequests, apiAnonymousRequests, apiAppUserRequests, apiPerAppUser} {
		a.refused.WithLabelValues(r)
	}
	m.registry.MustRegister(a.refused)

	opts := append([]grpc.ServerOption{
		grpc.InTapHandle(func(ctx context.Context, info *tap.Info) (context.Context, error) {
			if v := info.Header[httpClientKey]; len(v) == 1 {
				ctx = withHTTPClient(ctx, v[0], a.lis.Addr())
			}
			return adm.tapHandle(ctx, info)
		}),
		// One connection carries every HTTP call: the admission's pools
		// bound them, not HTTP/2's stream limit.
		grpc.MaxConcurrentStreams(math.MaxUint32),
	}, serverOpts...)
	a.grpc = grpc.NewServer(opts...)
	usersigv1.RegisterUserSigServiceServer(a.grpc, svc)

	conn, err := grpc.NewClient("passthrough:///usersig-http-api",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return a.mem.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Retrying is the HTTP client's call (Retry-After says when); a
		// retry here would also count twice against the caller's rate.
		grpc.WithDisableRetry(),
		grpc.WithUnaryInterceptor(onlyForwarded))
	if err != nil {
		return nil, err
	}
	a.conn = conn

	a.json = &runtime.JSONPb{
		// lowerCamelCase answers with every field, false and 0 included,
		// as grpcurl shows them; unknown request fields are an error, not
		// silently dropped (grpc-gateway's default).
		MarshalOptions:   protojson.MarshalOptions{EmitDefaultValues: true},
		UnmarshalOptions: protojson.UnmarshalOptions{},
	}
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, bodyJSON{a.json}),
		runtime.WithIncomingHeaderMatcher(traceContextOnly),
		runtime.WithOutgoingHeaderMatcher(noHeaders),
		runtime.WithOutgoingTrailerMatcher(noHeaders),
		runtime.WithMetadata(func(_ context.Context, r *http.Request) metadata.MD {
			return metadata.Pairs(httpClientKey, r.RemoteAddr)
		}),
		runtime.WithErrorHandler(a.callError),
		runtime.WithRoutingErrorHandler(a.routingError),
		runtime.WithDisableHTTPMethodOverride(),
	)
	if err := usersigv1gw.RegisterUserSigServiceHandlerClient(context.Background(), gw, usersigv1.NewUserSigServiceClient(conn)); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPIDocument)
	})
	mux.Handle("/", a.bodyLimit(gw))
	h := a.admit(mux)
	if cfg.CORS != nil {
		// Outside admit, so that its refusals carry the CORS headers a
		// browser needs to read them; its preflights write no body and
		// hold nothing.
		h = cors.New(cors.Options{
			AllowedOrigins: cfg.CORS.AllowedOrigins,
			AllowedMethods: []string{http.MethodPost, http.MethodGet},
			AllowedHeaders: []string{"Authorization", "Content-Type", "Traceparent", "Tracestate"},
			ExposedHeaders: []string{"Retry-After", "Www-Authenticate"},
			MaxAge:         600,
		}).Handler(h)
	}
	a.http = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       apiReadTimeout,
		// A client that does not read its answer (or, over HTTP/2, grants
		// no window) holds a handler until this ends it: the request's
		// reading, the call and some slack.
		WriteTimeout:   apiReadTimeout + maxCallDuration + 5*time.Second,
		IdleTimeout:    apiIdleTimeout,
		MaxHeaderBytes: maxHeaderListSize,
		// As on the gRPC listener (HTTP/2 over TLS; plain HTTP is HTTP/1.1).
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: maxStreamsPerConn},
		// net/http logs each failed handshake: anyone could flood the log.
		ErrorLog: log.New(&sampledLog{log: zl, what: "HTTP API connection errors"}, "", 0),
	}
	return a, nil
}

// listen binds the API's listener.
func (a *httpAPI) listen() error {
	l, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return err
	}
	a.conns = newConnLimit(l, maxAPIConnections, maxConnectionsPerSource, a.metrics, "http_api")
	l = a.conns
	if a.tls != nil {
		a.tls.NextProtos = []string{"h2", "http/1.1"}
		l = tls.NewListener(l, a.tls)
	}
	a.lis = l
	return nil
}

// serve serves the internal gRPC server and the HTTP listener; both
// return when stopped.
func (a *httpAPI) serve(errc chan<- error) {
	go a.grpc.Serve(a.mem) // ends with Stop or GracefulStop
	go func() {
		if err := a.http.Serve(a.lis); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
}

// shutdown stops taking requests and waits for those in flight, then
// for their calls, until ctx is done.
func (a *httpAPI) shutdown(ctx context.Context) error {
	err := a.http.Shutdown(ctx)
	done := make(chan struct{})
	go func() {
		a.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		a.grpc.Stop()
	}
	a.conn.Close()
	return err
}

func (a *httpAPI) close() {
	a.http.Close()
	a.grpc.Stop()
	a.conn.Close()
}

// admit identifies the request's caller from its headers, once, and
// holds a slot of the caller's or the anonymous pool for it, from its
// headers until its answer has left (the answer is flushed before the
// slot is released). A request whose pool is full is reset, writing
// nothing: an answer would wait on the same stalled client
// (http.ErrAbortHandler resets the HTTP/2 stream, or closes the HTTP/1
// connection, and net/http logs nothing for it). A POST without a
// caller's credentials is refused there, before its body is read, as the
// tap refuses a gRPC call from its headers (the tap checks them again,
// under the policy in force then).
func (a *httpAPI) admit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, reason, err := a.admission.policy.Load().identifyBy(r.Header.Values("Authorization"), nil)
		appUser := err == nil && id.caller.oidc != nil
		sl, userKey := a.callers, ""
		switch {
		case err != nil || id.unverified:
			// An ID token waiting for its identity provider counts as a
			// stranger's until the gRPC side has verified it.
			sl = a.anonymous
		case appUser:
			sl, userKey = a.appUsers, appUserKey(id.caller, id.userID)
		}
		if !sl.take() {
			a.refused.WithLabelValues(sl.refused).Inc()
			panic(http.ErrAbortHandler)
		}
		defer sl.release()
		if userKey != "" {
			if !a.perUser.take(userKey, id.caller.oidc.maxCallsPerUser) {
				a.refused.WithLabelValues(apiPerAppUser).Inc()
				panic(http.ErrAbortHandler)
			}
			defer a.perUser.release(userKey)
		}
		switch {
		case r.Method != http.MethodPost:
			next.ServeHTTP(w, r)
		case err != nil:
			a.metrics.authFailure(reason)
			a.admission.refusals.refused(withHTTPClient(r.Context(), r.RemoteAddr, a.lis.Addr()), reason)
			// Closing the connection spares reading the body, which
			// net/http would otherwise do to keep it open.
			w.Header().Set("Connection", "close")
			st := status.Convert(err)
			a.writeStatus(w, runtime.HTTPStatusFromCode(st.Code()), st, "")
		case appUser:
			next.ServeHTTP(w, r) // an app user's connection is no caller's
		default:
			// A caller's connection is kept at the connection cap.
			if local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
				if remote := clientAddr(r.RemoteAddr); remote != nil {
					a.conns.callerCalled(local, remote)
				}
			}
			next.ServeHTTP(w, r)
		}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	})
}

// clientAddr is an HTTP client's address (http.Request.RemoteAddr, as
// the gateway also passes it on) as a net.Addr, or nil.
func clientAddr(remote string) net.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return nil
	}
	return net.TCPAddrFromAddrPort(ap)
}

// withHTTPClient puts the HTTP client's address (remote, as the gateway
// set it) in the call's peer, so that the call log and the admission's
// warnings name the HTTP client rather than the in-memory connection.
// The peer carries no certificate: no caller is known by one over HTTP.
func withHTTPClient(ctx context.Context, remote string, local net.Addr) context.Context {
	addr := clientAddr(remote)
	if addr == nil {
		return ctx
	}
	return peer.NewContext(ctx, &peer.Peer{Addr: addr, LocalAddr: local})
}

// onlyForwarded sends a gateway call with only forwardedMetadata (the
// gateway adds x-forwarded-for and x-forwarded-host, partly from the
// client's headers), and refuses a request larger than the service takes.
func onlyForwarded(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if m, ok := req.(proto.Message); ok && proto.Size(m) > maxRecvMsgSize {
		return errRequestTooLarge
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	out := make(metadata.MD, len(forwardedMetadata))
	for _, k := range forwardedMetadata {
		if v := md[k]; len(v) > 0 {
			out[k] = v
		}
	}
	return invoker(metadata.NewOutgoingContext(ctx, out), method, req, reply, cc, opts...)
}

// traceContextOnly passes the W3C trace context from HTTP headers into
// the call; the gateway adds Authorization itself. Nothing else passes.
func traceContextOnly(key string) (string, bool) {
	switch key {
	case "Traceparent", "Tracestate":
		return key, true
	}
	return "", false
}

// noHeaders forwards no gRPC response metadata as HTTP headers.
func noHeaders(string) (string, bool) { return "", false }

// bodyLimit answers 413 to a body over maxAPIBody, and drops the header
// grpc-gateway would read beside Authorization: grpc-timeout (the
// server's own deadlines apply).
func (a *httpAPI) bodyLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del("Grpc-Timeout")
		if r.ContentLength > maxAPIBody {
			w.Header().Set("Connection", "close")
			a.writeStatus(w, http.StatusRequestEntityTooLarge, errBodyTooLarge, apiBodyTooBig)
			return
		}
		r.Body = &limitedBody{ReadCloser: http.MaxBytesReader(w, r.Body, maxAPIBody)}
		next.ServeHTTP(w, r)
	})
}

var errBodyTooLarge = status.New(codes.InvalidArgument, "the request body is over 64 KiB")

// limitedBody notes that a body ran over maxAPIBody, so that the error
// handler answers 413 rather than the gateway's "cannot decode".
type limitedBody struct {
	io.ReadCloser
	over bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		b.over = true
	}
	return n, err
}

// callError answers a call's error, or one the gateway raised before the
// call (a body that is not the request's JSON): the HTTP status
// grpc-gateway maps from the code, the google.rpc.Status as JSON (code,
// message, details), and for a RetryInfo a Retry-After in whole seconds,
// rounded up.
func (a *httpAPI) callError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if b, ok := r.Body.(*limitedBody); ok && b.over || errors.Is(err, errRequestTooLarge) {
		a.writeStatus(w, http.StatusRequestEntityTooLarge, status.Convert(err), apiBodyTooBig)
		return
	}
	st := status.Convert(err)
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			secs := max(int64(math.Ceil(ri.GetRetryDelay().AsDuration().Seconds())), 1)
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		}
	}
	a.writeStatus(w, runtime.HTTPStatusFromCode(st.Code()), st, "")
}

// routingError answers a request no route takes.
func (a *httpAPI) routingError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, code int) {
	switch code {
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", http.MethodPost)
		a.writeStatus(w, code, status.New(codes.Unimplemented, r.Method+" is not allowed here: the API's routes take POST"), apiMethod)
	default:
		a.writeStatus(w, http.StatusNotFound, status.New(codes.NotFound,
			"no such route: the API is POST /v1/usersig:generate, POST /v1/usersig:verify, POST /v1/privatemapkey:generate and GET /openapi.json"), apiNoRoute)
	}
}

// writeStatus writes st as the error body with the HTTP status code, and
// counts a refusal before the call when reason is set.
func (a *httpAPI) writeStatus(w http.ResponseWriter, code int, st *status.Status, reason string) {
	if reason != "" {
		a.refused.WithLabelValues(reason).Inc()
	}
	body, err := a.json.Marshal(st.Proto())
	if err != nil {
		code, body = http.StatusInternalServerError, []byte(`{"code":13,"message":"internal error","details":[]}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if code == http.StatusUnauthorized {
		h.Set("Www-Authenticate", `Bearer realm="usersig"`)
	}
	w.WriteHeader(code)
	w.Write(body)
}

// bodyJSON is the API's JSON: runtime.JSONPb, but a request body is read
// whole (bodyLimit bounds it) and given to protojson at once, where
// JSONPb's decoder first scans it with encoding/json.
type bodyJSON struct{ *runtime.JSONPb }

var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (j bodyJSON) NewDecoder(r io.Reader) runtime.Decoder {
	return runtime.DecoderFunc(func(v any) error {
		m, ok := v.(proto.Message)
		if !ok {
			return j.JSONPb.NewDecoder(r).Decode(v)
		}
		buf := bodyBuffers.Get().(*bytes.Buffer)
		defer func() {
			buf.Reset()
			bodyBuffers.Put(buf)
		}()
		if _, err := buf.ReadFrom(r); err != nil {
			return err
		}
		if buf.Len() == 0 {
			return io.EOF // an empty body is the empty request, as with JSONPb
		}
		if err := j.UnmarshalOptions.Unmarshal(buf.Bytes(), m); err != nil {
			return badBody(err)
		}
		return nil
	})
}

// protojson's errors quote the offending input: a ticket pasted into the
// wrong field would come back in the error. badBody keeps what names the
// problem (the position, the field) and drops the values.
var (
	bodyPosition     = regexp.MustCompile(`\(line \d+:\d+\)`)
	bodyUnknownField = regexp.MustCompile(`(unknown|duplicate) field "([A-Za-z0-9_]{1,64})"`)
	bodyFieldValue   = regexp.MustCompile(`invalid value for \w+ field ([A-Za-z0-9_]{1,64})`)
)

func badBody(err error) error {
	msg := err.Error()
	what := "is not the JSON of the request"
	switch {
	case bodyUnknownField.MatchString(msg):
		m := bodyUnknownField.FindStringSubmatch(msg)
		what = fmt.Sprintf("has %s field %q", m[1], m[2])
	case bodyFieldValue.MatchString(msg):
		what = "has a value of the wrong type or out of range in field " + bodyFieldValue.FindStringSubmatch(msg)[1]
	case strings.Contains(msg, "syntax error"), strings.Contains(msg, "unexpected token"), strings.Contains(msg, "EOF"):
		what = "is not valid JSON"
	}
	if p := bodyPosition.FindString(msg); p != "" {
		what += " " + p
	}
	// grpc-gateway answers a decoding error as INVALID_ARGUMENT with the
	// error's text as the message.
	return errors.New("the request body " + what)
}

// sampledLog is http.Server's error log, sampled as the tap's refusals
// are (tap.go), with the last error cut to 200 bytes.
type sampledLog struct {
	log  *zap.Logger
	what string
	sampler
}

func (l *sampledLog) Write(p []byte) (int, error) {
	if n, ok := l.due(); ok {
		msg := strings.TrimSpace(string(p[:min(len(p), 200)]))
		l.log.Warn(l.what+" (one line per 10 s at most)", zap.Int64("count", n), zap.String("last", msg))
	}
	return len(p), nil
}
