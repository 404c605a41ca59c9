package main_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/usersig/usersig/bench/silent"
	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
)

// redisServer is a real redis-server on a loopback port the kernel chose.
type redisServer struct {
	t        *testing.T
	bin      string
	addr     string
	password string
	tlsDir   string // serve TLS only, with tls.crt and tls.key from there
	cmd      *exec.Cmd
	done     chan struct{}
}

// startRedis runs Debian's redis-server (.ci/run installs it). Without it
// the test fails in CI and is skipped elsewhere, saying how to install it.
func startRedis(t *testing.T, password string) *redisServer {
	t.Helper()
	return startRedisTLS(t, password, "")
}

// startRedisTLS is startRedis serving TLS only, with dir's tls.crt and
// tls.key, when dir is not empty.
func startRedisTLS(t *testing.T, password, dir string) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed; .ci/run installs it (apt-get install redis-server)")
		}
		t.Skip("redis-server is not installed: apt-get install redis-server to run the shared rate limit tests")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r := &redisServer{t: t, bin: bin, addr: addr, password: password, tlsDir: dir}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *redisServer) start() {
	r.t.Helper()
	_, port, _ := net.SplitHostPort(r.addr)
	args := []string{"--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", r.t.TempDir()}
	if d := r.tlsDir; d != "" {
		args = append(args, "--port", "0", "--tls-port", port, "--tls-auth-clients", "no",
			"--tls-cert-file", filepath.Join(d, "tls.crt"), "--tls-key-file", filepath.Join(d, "tls.key"), "--tls-ca-cert-file", filepath.Join(d, "tls.crt"))
	}
	if r.password != "" {
		args = append(args, "--requirepass", r.password)
	}
	r.cmd = exec.Command(r.bin, args...)
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.done = make(chan struct{})
	go func() { r.cmd.Wait(); close(r.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", r.addr); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server did not listen on %s within 10s", r.addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *redisServer) kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	r.cmd.Process.Kill()
	<-r.done
	r.cmd = nil
}

// redisConfig is the test config with shared rates: backend, whose rate is
// a burst of 10 and then a call an hour, and rated-users, whose
// rate_per_user is 3 calls a user.
func redisConfig(dir string, r *redisServer, extra string) string {
	return strings.Replace(config(dir, `  - name: rated-users
    token_sha256: `+tokenSHA("tok-rated-users-1414213562373095")+`
    apps: [1400000000]
    methods: [GenerateUserSig]
    rate_per_user: {per_second: 0.0003, burst: 3}
  - name: unrated
    token_sha256: `+tokenSHA("tok-unrated-1732050807568877")+`
    apps: [1400000000]
    methods: [GenerateUserSig]
rate_limits:
  backend: redis
  redis:
    addr: `+r.addr+`
    timeout: 200ms
`+extra), "    methods: [GenerateUserSig, VerifyUserSig]\n", "    methods: [GenerateUserSig, VerifyUserSig]\n    rate: {per_second: 0.0003, burst: 10}\n", 1)
}

func writeConfig(t *testing.T, dir, cfg string) string {
	t.Helper()
	os.WriteFile(filepath.Join(dir, "key"), []byte(key+"\n"), 0o600)
	p := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRedisSharedBudget: two usersigd processes sharing one Redis spend
// one budget: the caller's burst of 10, and each user's 3, whichever
// process the calls reach.
func TestRedisSharedBudget(t *testing.T) {
	r := startRedis(t, "")
	dir := t.TempDir()
	cfg := writeConfig(t, dir, redisConfig(dir, r, ""))
	a, b := start(t, "--config", cfg), start(t, "--config", cfg)
	clients := []usersigv1.UserSigServiceClient{client(t, a.grpcAddr), client(t, b.grpcAddr)}
	ok, limited := 0, 0
	for i := range 30 {
		_, err := clients[i%2].GenerateUserSig(bearer(token), &usersigv1.GenerateUserSigRequest{UserId: "u1"})
		switch status.Code(err) {
		case codes.OK:
			ok++
		case codes.ResourceExhausted:
			limited++
		default:
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if ok < 10 || ok > 11 {
		t.Errorf("two replicas granted %d of 30 calls under one burst of 10 (refused %d), want 10 or 11", ok, limited)
	}
	for _, user := range []string{"alice", "bob"} {
		n := 0
		for i := range 8 {
			_, err := clients[i%2].GenerateUserSig(bearer("tok-rated-users-1414213562373095"), &usersigv1.GenerateUserSigRequest{UserId: user})
			switch status.Code(err) {
			case codes.OK:
				n++
			case codes.ResourceExhausted:
			default:
				t.Fatalf("%s call %d: %v", user, i, err)
			}
		}
		if n < 3 || n > 4 {
			t.Errorf("%s: two replicas granted %d of 8 calls under a rate_per_user burst of 3, want 3 or 4", user, n)
		}
	}
	// Every key is under key_prefix.
	out, err := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", strings.Split(r.addr, ":")[1], "--scan").Output()
	if err == nil {
		for _, k := range strings.Fields(string(out)) {
			if !strings.HasPrefix(k, "usersig:") {
				t.Errorf("a Redis key outside key_prefix: %q", k)
			}
		}
		if !strings.Contains(string(out), "usersig:rate:backend") || !strings.Contains(string(out), "usersig:user:rated-users:alice") {
			t.Errorf("Redis keys: %q", out)
		}
	} else {
		t.Errorf("redis-cli --scan: %v", err)
	}
	wantRedisDecided(t, "with Redis up", a, b)
}

// TestRedisDownAndBack: Redis killed under load, then restarted. Meanwhile
// calls fall back to each process's buckets (on_backend_error: local):
// none fails other than RESOURCE_EXHAUSTED, none hangs, one warning for
// the streak; then shared limiting resumes without a restart.
func TestRedisDownAndBack(t *testing.T) {
	r := startRedis(t, "")
	dir := t.TempDir()
	p := start(t, "--config", writeConfig(t, dir, redisConfig(dir, r, "")))
	c := client(t, p.grpcAddr)
	stop := make(chan struct{})
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		seen    = map[codes.Code]int{}
		slowest time.Duration
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				ctx, cancel := context.WithTimeout(bearer("tok-rated-users-1414213562373095"), 10*time.Second)
				_, err := c.GenerateUserSig(ctx, &usersigv1.GenerateUserSigRequest{UserId: fmt.Sprintf("w%d_%d", w, i%50)})
				cancel()
				d := time.Since(start)
				mu.Lock()
				seen[status.Code(err)]++
				slowest = max(slowest, d)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	r.kill()
	time.Sleep(time.Second)
	r.start()
	// go-redis dials again in the background, about once a second, after
	// its dials failed.
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(p.logs(), "answers again") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	for code, n := range seen {
		if code != codes.OK && code != codes.ResourceExhausted {
			t.Errorf("%d calls answered %v while Redis went down and came back", n, code)
		}
	}
	if slowest > 5*time.Second {
		t.Errorf("a call took %v", slowest)
	}
	if n := strings.Count(p.logs(), "the shared rate limiter (Redis) failed"); n != 1 {
		t.Errorf("%d warnings for one failure streak, want 1:\n%s", n, p.logs())
	}
	if !strings.Contains(p.logs(), "answers again") {
		t.Errorf("no line within 15 s of Redis coming back")
	}
	// Shared again: a second process spends the same budget.
	q := start(t, "--config", writeConfig(t, dir, redisConfig(dir, r, "")))
	clients := []usersigv1.UserSigServiceClient{c, client(t, q.grpcAddr)}
	n := 0
	for i := range 10 {
		if _, err := clients[i%2].GenerateUserSig(bearer("tok-rated-users-1414213562373095"), &usersigv1.GenerateUserSigRequest{UserId: "after"}); err == nil {
			n++
		}
	}
	if n < 3 || n > 4 {
		t.Errorf("after Redis came back, two replicas granted %d of 10 calls of one user (burst 3)", n)
	}
	if m := metricValue(t, p.httpAddr, "usersig_rate_limit_backend_errors_total"); m == "" || m == "0" {
		t.Errorf("usersig_rate_limit_backend_errors_total = %q", m)
	}
	if code := httpStatus(t, "http://"+p.httpAddr+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d", code)
	}
}

// TestRedisDeny: with on_backend_error: deny and Redis down, rated calls
// are UNAVAILABLE, unrated callers are served, and usersigd starts.
func TestRedisDeny(t *testing.T) {
	r := startRedis(t, "")
	r.kill()
	dir := t.TempDir()
	p := start(t, "--config", writeConfig(t, dir, redisConfig(dir, r, "  on_backend_error: deny\n")))
	c := client(t, p.grpcAddr)
	_, err := c.GenerateUserSig(bearer(token), &usersigv1.GenerateUserSigRequest{UserId: "u1"})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("a rated call with Redis down in deny mode: %v, want UNAVAILABLE", err)
	}
	if _, err := c.GenerateUserSig(bearer("tok-unrated-1732050807568877"), &usersigv1.GenerateUserSigRequest{UserId: "u1"}); err != nil {
		t.Errorf("an unrated caller with Redis down: %v", err)
	}
	r.start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.GenerateUserSig(bearer(token), &usersigv1.GenerateUserSigRequest{UserId: "u1"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis is back, a rated call still gets %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRedisWrongPassword: a wrong password stops nothing: usersigd starts,
// says so once, and limits with its own buckets.
func TestRedisWrongPassword(t *testing.T) {
	r := startRedis(t, "the-right-password-5e9f1c")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "redis-password"), []byte("a-wrong-password-77aa01\n"), 0o600)
	p := start(t, "--config", writeConfig(t, dir, strings.Replace(redisConfig(dir, r, ""), "    timeout: 200ms\n",
		"    timeout: 200ms\n    password_file: "+filepath.Join(dir, "redis-password")+"\n", 1)))
	c := client(t, p.grpcAddr)
	ok := 0
	for range 12 {
		_, err := c.GenerateUserSig(bearer(token), &usersigv1.GenerateUserSigRequest{UserId: "u1"})
		switch status.Code(err) {
		case codes.OK:
			ok++
		case codes.ResourceExhausted:
		default:
			t.Fatalf("with a wrong Redis password: %v", err)
		}
	}
	if ok != 10 {
		t.Errorf("the local buckets granted %d of 12 calls, want the burst of 10", ok)
	}
	// The log is written in batches up to 100 ms apart.
	said := func(logs string) bool {
		return strings.Contains(logs, "WRONGPASS") || strings.Contains(logs, "invalid password") || strings.Contains(logs, "NOAUTH")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !said(p.logs()) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	logs := p.logs()
	if !said(logs) {
		t.Errorf("the log does not say why Redis failed:\n%s", logs)
	}
	for _, secret := range []string{"a-wrong-password-77aa01", "the-right-password-5e9f1c"} {
		if strings.Contains(logs, secret) {
			t.Errorf("a Redis password is in the log")
		}
	}
}

// metricValue reads one series from a usersigd's /metrics.
func metricValue(t *testing.T, httpAddr, series string) string {
	t.Helper()
	resp, err := httpGetBody("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(resp, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

func httpGetBody(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestRedisSilent: a Redis address that takes connections and never
// answers costs a call at most the timeout (200ms here), then the local
// buckets decide.
func TestRedisSilent(t *testing.T) {
	dir := t.TempDir()
	p := start(t, "--config", writeConfig(t, dir, redisConfig(dir, &redisServer{addr: silent.Listen(t)}, "")))
	c := client(t, p.grpcAddr)
	for i := range 5 {
		start := time.Now()
		_, err := c.GenerateUserSig(bearer(token), &usersigv1.GenerateUserSigRequest{UserId: "u1"})
		if err != nil {
			t.Fatalf("call %d with a silent Redis: %v", i, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("call %d took %v with a 200ms Redis timeout", i, d)
		}
	}
}

// TestRedisTLS: Redis over TLS, its certificate checked against
// tls.ca_file, with a password: the budget is shared as over plain TCP.
func TestRedisTLS(t *testing.T) {
	dir := t.TempDir()
	writeSelfSigned(t, dir) // for localhost
	r := startRedisTLS(t, "tls-redis-password-0b9e", dir)
	os.WriteFile(filepath.Join(dir, "redis-password"), []byte("tls-redis-password-0b9e\n"), 0o600)
	_, port, _ := net.SplitHostPort(r.addr)
	cfg := strings.Replace(redisConfig(dir, r, ""), "    addr: "+r.addr+"\n", "    addr: localhost:"+port+"\n    password_file: "+
		filepath.Join(dir, "redis-password")+"\n    tls: {ca_file: "+filepath.Join(dir, "tls.crt")+"}\n", 1)
	a, b := start(t, "--config", writeConfig(t, dir, cfg)), start(t, "--config", writeConfig(t, dir, cfg))
	clients := []usersigv1.UserSigServiceClient{client(t, a.grpcAddr), client(t, b.grpcAddr)}
	ok := 0
	for i := range 20 {
		_, err := clients[i%2].GenerateUserSig(bearer(token), &usersigv1.GenerateUserSigRequest{UserId: "u1"})
		switch status.Code(err) {
		case codes.OK:
			ok++
		case codes.ResourceExhausted:
		default:
			t.Fatalf("call %d over TLS: %v", i, err)
		}
	}
	if ok < 10 || ok > 11 {
		t.Errorf("two replicas granted %d of 20 calls under one burst of 10 over TLS", ok)
	}
	wantRedisDecided(t, "with Redis up over TLS", a, b)
}

// wantRedisDecided fails unless Redis decided every rate of each usersigd:
// no backend error counted, no warning from the rate limiter (the call
// log warns of every refused call too, so only its logger counts).
func wantRedisDecided(t *testing.T, when string, procs ...*proc) {
	t.Helper()
	for _, p := range procs {
		for _, l := range strings.Split(p.logs(), "\n") {
			if strings.Contains(l, `"logger":"ratelimit"`) && strings.Contains(l, `"level":"warn"`) {
				t.Errorf("the rate limiter warned %s: %s", when, l)
			}
		}
		if m := metricValue(t, p.httpAddr, "usersig_rate_limit_backend_errors_total"); m != "0" {
			t.Errorf("usersig_rate_limit_backend_errors_total = %q %s, want 0", m, when)
		}
	}
}
