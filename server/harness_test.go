package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
	"github.com/usersig/usersig/server"
)

// The standard fixture: two apps and callers with different rights. Every
// secret below is also checked to be absent from every log line.
const (
	appA = 1400000000
	appB = 1400000001

	keyPrimary = "primary-key-5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3f"
	keyOld     = "old-key-0123456789abcdef0123456789abcdef0123456789abcdef012345"
	keyB       = "app-b-key-fedcba9876543210fedcba9876543210fedcba9876543210fedcb"

	tokBackend = "tok-backend-7f3a9c2e51d84b06a1e2"
	tokWeb     = "tok-web-0c8d2f6e4b1a9375d2c8"
	tokOps     = "tok-ops-e4f1a2b3c4d5e6f7a8b9"
	tokLimited = "tok-limited-9a8b7c6d5e4f3a2b1c0d"
)

var fixtureSecrets = []string{keyPrimary, keyOld, keyB, tokBackend, tokWeb, tokOps, tokLimited}

func tokenHash(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// fixtureConfig is the standard config; {{dir}} is the test's directory.
var fixtureConfig = `
grpc:
  listen: 127.0.0.1:0
http:
  listen: 127.0.0.1:0
reload:
  interval: 50ms
apps:
  - sdk_app_id: 1400000000
    default_ttl: 4320h
    max_ttl: 8760h
    keys:
      - id: primary
        file: {{dir}}/primary.key
      - id: old
        file: {{dir}}/old.key
  - sdk_app_id: 1400000001
    default_ttl: 24h
    max_ttl: 48h
    keys:
      - id: b1
        env: USERSIG_TEST_KEY_B
callers:
  - name: backend
    token_sha256: ` + tokenHash(tokBackend) + `
    apps: [1400000000, 1400000001]
    methods: [GenerateUserSig, VerifyUserSig, GeneratePrivateMapKey]
  - name: web
    token_sha256: ` + tokenHash(tokWeb) + `
    apps: [1400000000]
    methods: [GenerateUserSig]
    max_ttl: 720h
    user_id_pattern: '^u_[0-9]{1,16}$'
  - name: ops
    token_sha256: ` + tokenHash(tokOps) + `
    apps: ["*"]
    methods: [VerifyUserSig]
  - name: limited
    token_sha256: ` + tokenHash(tokLimited) + `
    apps: [1400000000]
    methods: [GenerateUserSig, VerifyUserSig, GeneratePrivateMapKey]
    rate: {per_second: 1, burst: 2}
`

// clock is a settable clock for the server's tickets.
type clock struct{ unix atomic.Int64 }

func (c *clock) Now() time.Time  { return time.Unix(c.unix.Load(), 0) }
func (c *clock) Set(t int64)     { c.unix.Store(t) }
func (c *clock) Add(d int64)     { c.unix.Add(d) }
func newClock(t int64) *clock    { c := &clock{}; c.Set(t); return c }
func (c *clock) Time() time.Time { return c.Now() }

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the log lines that contain every one of subs.
func (b *syncBuffer) lines(subs ...string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		ok := l != ""
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// testServer is a real usersigd on loopback.
type testServer struct {
	t       *testing.T
	dir     string
	cfgPath string
	srv     *server.Server
	conn    *grpc.ClientConn
	client  usersigv1.UserSigServiceClient
	logs    *syncBuffer
	clock   *clock
	cancel  context.CancelFunc
	done    chan error
	// seen holds every ticket that crossed the wire, for the log check.
	seen sync.Map
	// stats, when set, instruments the server (tracing).
	stats stats.Handler
}

type serverOption func(*testServer)

// startServer writes the config (with the fixture's key files) and serves
// it. When the test ends the server is stopped and its logs are searched
// for every key, token and ticket the test used: none may appear.
func startServer(t *testing.T, config string, opts ...serverOption) *testServer {
	t.Helper()
	ts := &testServer{t: t, dir: t.TempDir(), logs: &syncBuffer{}, clock: newClock(1750000000)}
	t.Setenv("USERSIG_TEST_KEY_B", keyB)
	ts.writeFile("primary.key", keyPrimary+"\n", 0o600)
	ts.writeFile("old.key", keyOld, 0o440)
	ts.cfgPath = ts.writeConfig(config)
	for _, o := range opts {
		o(ts)
	}
	l, err := server.LoadConfig(ts.cfgPath)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(ts.logs), zap.DebugLevel)
	ts.srv, err = server.New(l, server.Options{Logger: zap.New(core), ConfigPath: ts.cfgPath, Clock: ts.clock.Now, Version: "test", StatsHandler: ts.stats})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := ts.srv.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel, ts.done = cancel, make(chan error, 1)
	go func() { ts.done <- ts.srv.Serve(ctx) }()
	ts.conn = ts.dial()
	ts.client = usersigv1.NewUserSigServiceClient(ts.conn)
	t.Cleanup(func() {
		ts.stop()
		ts.checkLogsHoldNoSecrets()
	})
	return ts
}

// writeFile replaces a file in the test's directory atomically, as a
// Kubernetes volume update does, so the watcher never sees half a change.
func (ts *testServer) writeFile(name, content string, mode os.FileMode) string {
	ts.t.Helper()
	p := filepath.Join(ts.dir, name)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), mode); err != nil {
		ts.t.Fatal(err)
	}
	if err := os.Chmod(tmp, mode); err != nil { // past the umask
		ts.t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		ts.t.Fatal(err)
	}
	return p
}

func (ts *testServer) writeConfig(config string) string {
	return ts.writeFile("config.yaml", strings.ReplaceAll(config, "{{dir}}", ts.dir), 0o600)
}

// dial connects a client that records every ticket in requests and
// responses.
func (ts *testServer) dial() *grpc.ClientConn {
	ts.t.Helper()
	conn, err := grpc.NewClient(ts.srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			ts.record(req)
			err := invoker(ctx, method, req, reply, cc, opts...)
			ts.record(reply)
			return err
		}))
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { conn.Close() })
	return conn
}

// record notes the tickets in a message.
func (ts *testServer) record(m any) {
	pm, ok := m.(proto.Message)
	if !ok {
		return
	}
	r := pm.ProtoReflect()
	r.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch fd.Name() {
		case "user_sig", "private_map_key":
			if fd.Kind() == protoreflect.StringKind && len(v.String()) > 16 {
				ts.seen.Store(v.String(), true)
			}
		}
		return true
	})
}

func (ts *testServer) stop() {
	if ts.cancel == nil {
		return
	}
	ts.cancel()
	select {
	case err := <-ts.done:
		if err != nil {
			ts.t.Errorf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		ts.t.Errorf("the server did not stop within 30s")
	}
	ts.cancel = nil
}

// checkLogsHoldNoSecrets fails the test if a key, a token or a ticket
// (or a recognisable part of one) appears in the server's logs.
func (ts *testServer) checkLogsHoldNoSecrets() {
	logs := ts.logs.String()
	if logs == "" {
		ts.t.Errorf("the server logged nothing; the log check would be empty")
	}
	check := func(what, s string) {
		for _, part := range []string{s, s[:16], s[len(s)-16:]} {
			if strings.Contains(logs, part) {
				ts.t.Errorf("the server's logs hold part of a %s: %q", what, part)
				return
			}
		}
	}
	for _, s := range fixtureSecrets {
		check("key or token", s)
	}
	ts.seen.Range(func(k, _ any) bool {
		check("ticket", k.(string))
		return true
	})
}

// as returns a context carrying the caller's bearer token ("" for none).
func (ts *testServer) as(token string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	ts.t.Cleanup(cancel)
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func (ts *testServer) httpGet(path string) (int, string) {
	ts.t.Helper()
	resp, err := http.Get("http://" + ts.srv.HTTPAddr() + path)
	if err != nil {
		ts.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func writeFile0600(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }
