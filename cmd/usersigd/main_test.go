package main_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "usersigd")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "usersigd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		panic("building usersigd: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	key   = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"
	token = "tok-cmd-test-31415926535897932384"
)

func config(dir string, extra string) string {
	sum := sha256.Sum256([]byte(token))
	return `grpc: {listen: 127.0.0.1:0}
http: {listen: 127.0.0.1:0}
shutdown: {delay: 2s, timeout: 5s}
reload: {interval: 0s}
apps:
  - sdk_app_id: 1400000000
    keys: [{id: primary, file: ` + dir + `/key}]
callers:
  - name: backend
    token_sha256: ` + hex.EncodeToString(sum[:]) + `
    apps: [1400000000]
    methods: [GenerateUserSig, VerifyUserSig]
` + extra
}

// proc is a running usersigd.
type proc struct {
	cmd            *exec.Cmd
	stderr, stdout *output
	grpcAddr       string
	httpAddr       string
	apiAddr        string
	exited         chan error
}

func (p *proc) logs() string { return p.stderr.String() }

// output collects what a process writes. exec copies into it and finishes
// before Wait returns, so nothing written before the exit is missed (a
// pipe read beside Wait can lose the tail). serving receives the first
// "serving" log line.
type output struct {
	mu      sync.Mutex
	buf     strings.Builder
	partial string
	serving chan [3]string
}

func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(b)
	lines := strings.Split(o.partial+string(b), "\n")
	o.partial = lines[len(lines)-1]
	for _, line := range lines[:len(lines)-1] {
		var l struct {
			Msg, GRPC, HTTP string
			API             string `json:"http_api"`
		}
		if o.serving != nil && json.Unmarshal([]byte(line), &l) == nil && l.Msg == "serving" {
			o.serving <- [3]string{l.GRPC, l.HTTP, l.API}
			o.serving = nil
		}
	}
	return len(b), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// start runs usersigd and waits for its "serving" line.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	serving := make(chan [3]string, 1)
	p := &proc{cmd: exec.Command(bin, args...), exited: make(chan error, 1),
		stderr: &output{serving: serving}, stdout: &output{}}
	p.cmd.Stderr, p.cmd.Stdout = p.stderr, p.stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() { p.cmd.Process.Kill() })
	select {
	case addrs := <-serving:
		p.grpcAddr, p.httpAddr, p.apiAddr = addrs[0], addrs[1], addrs[2]
	case err := <-p.exited:
		t.Fatalf("usersigd exited before serving: %v\n%s", err, p.logs())
	case <-time.After(15 * time.Second):
		t.Fatalf("usersigd did not serve within 15s\n%s", p.logs())
	}
	return p
}

func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-p.exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(15 * time.Second):
		t.Fatalf("usersigd did not exit\n%s", p.logs())
	}
	return -1
}

func client(t *testing.T, addr string) usersigv1.UserSigServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return usersigv1.NewUserSigServiceClient(conn)
}

func bearer(tok string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestServeReloadDrain runs the binary: it serves, reloads on SIGHUP, and
// on SIGTERM turns unready, keeps serving for shutdown.delay and exits 0.
func TestServeReloadDrain(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "key"), []byte(key+"\n"), 0o600)
	cfgPath := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfgPath, []byte(config(dir, "")), 0o600)
	p := start(t, "--config", cfgPath)
	c := client(t, p.grpcAddr)
	minted, err := c.GenerateUserSig(bearer(token), &usersigv1.GenerateUserSigRequest{UserId: "u1"})
	if err != nil {
		t.Fatalf("GenerateUserSig: %v", err)
	}

	// SIGHUP reloads: the new config adds GeneratePrivateMapKey.
	os.WriteFile(cfgPath, []byte(strings.Replace(config(dir, ""), "VerifyUserSig]", "VerifyUserSig, GeneratePrivateMapKey]", 1)), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.logs(), `"generation":2`) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := c.GeneratePrivateMapKey(bearer(token), &usersigv1.GeneratePrivateMapKeyRequest{UserId: "u1",
		Room: &usersigv1.GeneratePrivateMapKeyRequest_RoomId{RoomId: 1}, PrivilegeMap: 255}); err != nil {
		t.Errorf("GeneratePrivateMapKey after SIGHUP: %v\n%s", err, p.logs())
	}

	if code := httpStatus(t, "http://"+p.httpAddr+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d before SIGTERM", code)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(100 * time.Millisecond)
	if code := httpStatus(t, "http://"+p.httpAddr+"/readyz"); code != 503 {
		t.Errorf("/readyz = %d during shutdown.delay, want 503", code)
	}
	if _, err := c.GenerateUserSig(bearer(token), &usersigv1.GenerateUserSigRequest{UserId: "u1"}); err != nil {
		t.Errorf("a call during shutdown.delay: %v", err)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0\n%s", code, p.logs())
	}
	for _, secret := range []string{key, token, minted.UserSig, minted.UserSig[:20]} {
		if strings.Contains(p.logs(), secret) {
			t.Errorf("the logs hold a key, token or ticket: %q", secret)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(p.logs()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("a log line is not JSON: %q", line)
		}
	}
}

// TestStartupErrors: a bad start exits 2 with one JSON line per problem,
// naming the field, and nothing that is secret.
func TestStartupErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "key"), []byte(key), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(config(dir, "    max_ttl: 1y\n")), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"no flags", nil, []string{"pass --config FILE, or --dev"}},
		{"both", []string{"--dev", "--config", bad}, []string{"pass --config FILE, or --dev"}},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.yaml")}, []string{"nope.yaml: no such file or directory"}},
		{"two problems", []string{"--config", bad}, []string{
			"apps[0].keys[0].file: " + dir + "/key is readable by others",
			`callers[0].max_ttl: "1y" is not a duration`,
		}},
	} {
		cmd := exec.Command(bin, tc.args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%s: %v, want exit status 2", tc.name, err)
		}
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if len(lines) != len(tc.want) {
			t.Errorf("%s: %d lines on stderr, want %d:\n%s", tc.name, len(lines), len(tc.want), stderr.String())
			continue
		}
		for i, want := range tc.want {
			var l struct{ Problem string }
			if json.Unmarshal([]byte(lines[i]), &l) == nil {
				lines[i] = l.Problem
			}
			if !strings.Contains(lines[i], want) {
				t.Errorf("%s: line %q, want it to say %q", tc.name, lines[i], want)
			}
		}
		if strings.Contains(stderr.String(), key) {
			t.Errorf("%s: the key was printed", tc.name)
		}
	}
}

// TestDev runs the embedded default: it prints a token and grpcurl
// commands, and serves with them on 127.0.0.1:50051.
func TestDev(t *testing.T) {
	// --dev serves on 127.0.0.1:50051 and :9090 (server.TestDevConfig);
	// a test takes free ports instead.
	p := start(t, "--dev", "--dev-listen", "127.0.0.1:0", "--dev-http-listen", "127.0.0.1:0", "--dev-api-listen", "127.0.0.1:0")
	if host, _, _ := net.SplitHostPort(p.grpcAddr); host != "127.0.0.1" {
		t.Errorf("--dev serves on %s, want loopback", p.grpcAddr)
	}
	time.Sleep(50 * time.Millisecond) // let the banner land
	banner := p.stdout.String()
	m := regexp.MustCompile(`export TOKEN=(\S+)`).FindStringSubmatch(banner)
	if m == nil || !strings.Contains(banner, "grpcurl -plaintext -H \"authorization: Bearer $TOKEN\"") {
		t.Fatalf("the --dev banner lacks the token or the grpcurl commands:\n%s", banner)
	}
	c := client(t, p.grpcAddr)
	resp, err := c.GenerateUserSig(bearer(m[1]), &usersigv1.GenerateUserSigRequest{UserId: "alice"})
	if err != nil || resp.SdkAppId != 1400000000 {
		t.Fatalf("GenerateUserSig with the printed token: %v %v", resp, err)
	}
	v, err := c.VerifyUserSig(bearer(m[1]), &usersigv1.VerifyUserSigRequest{UserId: "alice", UserSig: resp.UserSig})
	if err != nil || !v.Valid {
		t.Errorf("VerifyUserSig: %v %v", v, err)
	}
	// The HTTP/JSON API, as the banner's curl line calls it.
	if !strings.Contains(banner, `curl -s -H "Authorization: Bearer $TOKEN" -d '{"user_id": "alice", "ttl": "86400s"}' http://`+p.apiAddr+`/v1/usersig:generate`) ||
		!strings.Contains(banner, "grpcurl -plaintext "+p.grpcAddr+" list") {
		t.Errorf("the --dev banner lacks the commands with the bound addresses (%s, %s):\n%s", p.grpcAddr, p.apiAddr, banner)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+p.apiAddr+"/v1/usersig:verify", strings.NewReader(`{"user_id": "alice", "user_sig": "`+resp.UserSig+`"}`))
	req.Header.Set("Authorization", "Bearer "+m[1])
	hresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("the HTTP API of --dev: %v", err)
	}
	body, _ := io.ReadAll(hresp.Body)
	hresp.Body.Close()
	if hresp.StatusCode != 200 || !strings.Contains(string(body), `"valid":true`) {
		t.Errorf("POST /v1/usersig:verify on --dev: %d %s", hresp.StatusCode, body)
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit status %d after SIGINT, want 0", code)
	}
	if strings.Contains(p.logs(), m[1]) {
		t.Errorf("the token was logged")
	}
}

func durSeconds(s int64) *durationpb.Duration { return durationpb.New(time.Duration(s) * time.Second) }

// TestPlaintextWarning: usersigd warns at start when its gRPC listener is
// reachable from the network without TLS (a wildcard or another
// non-loopback address), and only then. (It binds 0.0.0.0 for a moment:
// that is the case under test.)
func TestPlaintextWarning(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "key"), []byte(key), 0o600)
	writeSelfSigned(t, dir)
	tlsConf := "  tls: {cert_file: " + dir + "/tls.crt, key_file: " + dir + "/tls.key}\n"
	for _, tc := range []struct {
		name, listen string
		tls          bool
		warn         bool
	}{
		{"loopback", "127.0.0.1:0", false, false},
		{"localhost resolves to loopback", "localhost:0", false, false},
		{"wildcard", "0.0.0.0:0", false, true},
		{"wildcard with TLS", "0.0.0.0:0", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := strings.Replace(config(dir, ""), "grpc: {listen: 127.0.0.1:0}\n", "grpc:\n  listen: "+tc.listen+"\n", 1)
			if tc.tls {
				cfg = strings.Replace(cfg, "\nhttp:", "\n"+tlsConf+"http:", 1)
			}
			cfgPath := filepath.Join(dir, "config.yaml")
			os.WriteFile(cfgPath, []byte(cfg), 0o600)
			p := start(t, "--config", cfgPath)
			defer p.cmd.Process.Kill()
			var warnings []string
			for _, line := range strings.Split(p.logs(), "\n") {
				var l struct{ Level, Msg, GRPC string }
				if json.Unmarshal([]byte(line), &l) == nil && l.Level == "warn" && strings.Contains(l.Msg, "without TLS") {
					warnings = append(warnings, line)
					if l.GRPC != p.grpcAddr {
						t.Errorf("the warning names %q, the server serves on %q: %s", l.GRPC, p.grpcAddr, line)
					}
				}
			}
			if got := len(warnings) > 0; got != tc.warn || len(warnings) > 1 {
				t.Errorf("listen %s, TLS %v, bound %s: plaintext warnings %q, want one: %v\n%s", tc.listen, tc.tls, p.grpcAddr, warnings, tc.warn, p.logs())
			}
		})
	}
}

// writeSelfSigned writes a throwaway certificate for localhost and its key
// as tls.crt and tls.key in dir.
func writeSelfSigned(t *testing.T, dir string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{"tls.crt": {Type: "CERTIFICATE", Bytes: der}, "tls.key": {Type: "PRIVATE KEY", Bytes: pk}} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestNoEcho: a flag or argument usersigd rejects is named by its flag or
// position, never repeated: what was pasted in the wrong place may be a
// key or a token.
func TestNoEcho(t *testing.T) {
	const secret = "eJxSECRET5bd2850fff3ecb11d7c805251c51ee46"
	for _, args := range [][]string{
		{"--" + secret},
		{"-" + secret + "=1"},
		{"-----BEGIN " + secret},
		{"--dev=" + secret},
		{"--dev", secret},
		{"--config", "x.yaml", secret},
		{"--version", "--", secret},
	} {
		var stdout, stderr strings.Builder
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("usersigd %q: %v, want exit status 2", args, err)
		}
		if out := stdout.String() + stderr.String(); strings.Contains(out, "SECRET") || !strings.HasPrefix(stderr.String(), "usersigd: ") {
			t.Errorf("usersigd %q printed %q: want one line that does not repeat the argument", args, out)
		}
	}
}
