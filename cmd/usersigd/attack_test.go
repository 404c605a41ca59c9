package main_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/usersig/usersig/bench/streamattack"
	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
)

// attackRSSLimit is issue 11's goal for the server's RSS under its two
// stream attacks, with the shipped defaults; variantRSSLimit, the shipped
// pod's memory limit, bounds the variants (their figures are recorded in
// docs/benchmarks.md: on a quiet machine they stay under 80 MiB too).
const (
	attackRSSLimit  = 100 << 20
	variantRSSLimit = 128 << 20
)

// TestStreamAttacks runs the stream attacks of issue 11 against the built
// binary with its shipped defaults, each on a fresh process: streams that
// send headers and never a body, without credentials, with a valid token,
// with huge headers and with headers just under the limit. While each
// attack holds its streams open, another caller's calls and health checks
// with and without credentials are made, and the server's peak RSS must
// stay under 100 MiB. The figures are logged (go test -v) and recorded in
// docs/benchmarks.md. Before the tap (server/tap.go) the first two took
// the server to 206 and 305 MiB, and ten times the connections to 2.3 GiB
// with every legitimate call timing out.
func TestStreamAttacks(t *testing.T) {
	for _, sc := range attackScenarios {
		t.Run(sc.name, func(t *testing.T) {
			f := runAttack(t, sc)
			t.Logf("%s: peak RSS %.1f MiB, peak goroutines %d, auth failures +%.0f; attack: %v; during it: %s",
				sc.name, float64(f.peakRSS)/(1<<20), f.peakGoroutines, f.authFailures, f.result, f.legit)
			if limit := int64(variantRSSLimit); f.peakRSS > limit || sc.goal && f.peakRSS > attackRSSLimit {
				if sc.goal {
					limit = attackRSSLimit
				}
				t.Errorf("peak RSS %d MiB, want under %d MiB", f.peakRSS>>20, limit>>20)
			}
			for what, n := range f.failed {
				if !sc.mayFail[what] {
					t.Errorf("%d %s calls failed during the attack: %s", n, what, f.legit)
				}
			}
			if f.peakCallers > 0 && sc.attack.Authorization == "" {
				t.Errorf("%d streams without credentials held a caller's slot; want them refused on arrival", f.peakCallers)
			}
			if sc.attack.Authorization == "" && sc.attack.PadBytes < maxHeaderListSize && sc.attack.Method == "" && sc.attack.Streams > 0 &&
				f.authFailures != float64(f.result.Sent) {
				t.Errorf("usersig_auth_failures_total rose by %.0f for %d streams sent without credentials", f.authFailures, f.result.Sent)
			}
			if sc.after != nil {
				sc.after(t, f)
			}
		})
	}
}

// maxHeaderListSize is usersigd's limit on a stream's headers
// (server/tap.go); the variants go just under it.
const maxHeaderListSize = 8 << 10

type attackScenario struct {
	name   string
	goal   bool // one of the two attacks issue 11's goal names
	attack streamattack.Attack
	// mayFail names the legitimate calls the attack may refuse (never
	// hang): "caller" (GenerateUserSig by another caller), "anonymous
	// health" and "caller health".
	mayFail map[string]bool
	// holdPastCallDuration keeps the attack's streams open past
	// grpc.max_call_duration, then checks again.
	holdPastCallDuration bool
	after                func(t *testing.T, f attackFigures)
}

var attackScenarios = []attackScenario{
	{name: "10 streams with 15 MB headers", goal: true, attack: streamattack.Attack{Conns: 1, Streams: 10, PadBytes: 15 << 20}},
	{name: "100 conns x 256 header-only streams", goal: true, attack: streamattack.Attack{Conns: 100, Streams: 256}},
	{name: "1000 conns x 256 header-only streams", attack: streamattack.Attack{Conns: 1000, Streams: 256}},
	{name: "100 conns x 256 with headers just under the limit", attack: streamattack.Attack{Conns: 100, Streams: 256, PadBytes: maxHeaderListSize - 512}},
	{
		// A stolen token: its streams are admitted up to
		// grpc.max_concurrent_calls, which every caller shares, and
		// cancelled grpc.max_call_duration after their headers.
		name:                 "100 conns x 256 with a valid token and headers just under the limit",
		attack:               streamattack.Attack{Conns: 100, Streams: 256, PadBytes: maxHeaderListSize - 512, Authorization: "Bearer " + token},
		mayFail:              map[string]bool{"caller": true, "caller health": true},
		holdPastCallDuration: true,
		after: func(t *testing.T, f attackFigures) {
			if f.peakCallers != 1024 {
				t.Errorf("the stalled streams held %d caller slots at most, want grpc.max_concurrent_calls (1024)", f.peakCallers)
			}
			if f.after != "" {
				t.Errorf("after grpc.max_call_duration the stalled streams should be gone: %s", f.after)
			}
		},
	},
	{
		// Complete health checks whose answers the client never lets in:
		// grpc-go keeps each finished stream until it can send the
		// answer, up to the connection's stream limit.
		name: "100 conns x 256 health checks answered into a closed window",
		attack: streamattack.Attack{Conns: 100, Streams: 256, Method: "/grpc.health.v1.Health/Check",
			Request: streamattack.EmptyRequest, ClosedWindow: true, PadBytes: 1 << 10, Gap: 10 * time.Millisecond},
	},
	{
		// More connections than the cap (1,024), opened and left idle: new
		// ones, the other caller's among them, evict the oldest idle ones.
		name:   "1100 idle connections",
		attack: streamattack.Attack{Conns: 1100},
	},
	{
		// Health needs no credentials, so a flood of stalled health checks
		// takes every anonymous slot; callers keep theirs.
		name:    "100 conns x 256 header-only health checks",
		attack:  streamattack.Attack{Conns: 100, Streams: 256, Method: "/grpc.health.v1.Health/Check"},
		mayFail: map[string]bool{"anonymous health": true},
	},
}

type attackFigures struct {
	peakRSS        int64
	peakGoroutines int
	peakCallers    int // usersig_calls_in_flight{class="caller"}
	result         streamattack.Result
	legit          string
	failed         map[string]int
	authFailures   float64
	after          string // what was still wrong past grpc.max_call_duration
}

// otherToken is a second caller's, for the legitimate calls.
const otherToken = "tok-cmd-test-other-2718281828459045"

func runAttack(t *testing.T, sc attackScenario) attackFigures {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "key"), []byte(key), 0o600)
	cfgPath := filepath.Join(dir, "config.yaml")
	sum := sha256.Sum256([]byte(otherToken))
	other := `  - name: other
    token_sha256: ` + hex.EncodeToString(sum[:]) + `
    apps: [1400000000]
    methods: [GenerateUserSig]
`
	os.WriteFile(cfgPath, []byte(config(dir, other)), 0o600)
	p := start(t, "--config", cfgPath)
	before := metricSum(t, p.httpAddr, "usersig_auth_failures_total")

	a := sc.attack
	a.Addr = p.grpcAddr
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	running, err := a.Start(ctx)
	if err != nil {
		t.Fatalf("the attack could not start: %v", err)
	}
	defer running.Stop()

	// Sample the server while the streams go out, then hold them a second.
	f := attackFigures{failed: map[string]int{}}
	sample := func() {
		f.peakGoroutines = max(f.peakGoroutines, int(metricSum(t, p.httpAddr, "go_goroutines")))
		f.peakCallers = max(f.peakCallers, int(metricSum(t, p.httpAddr, `usersig_calls_in_flight{class="caller"}`)))
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(45 * time.Second)
wait:
	for {
		sample()
		select {
		case <-running.Sent():
			break wait
		case <-timeout:
			t.Fatal("the attack did not send its streams within 45s")
		case <-tick.C:
		}
	}
	began := time.Now()
	for time.Since(began) < time.Second {
		sample()
		<-tick.C
	}
	f.legit = legitCalls(ctx, p.grpcAddr, f.failed)
	sample()
	if sc.holdPastCallDuration {
		// The server's default grpc.max_call_duration is 5s; every stream
		// had been sent by began.
		time.Sleep(time.Until(began.Add(6 * time.Second)))
		again := map[string]int{}
		if s := legitCalls(ctx, p.grpcAddr, again); len(again) > 0 {
			f.after = s
		}
		if n := metricSum(t, p.httpAddr, `usersig_calls_in_flight{class="caller"}`); n != 0 {
			f.after += fmt.Sprintf("; %v caller streams still in flight", n)
		}
	}
	// Refusals are counted as the server reads the streams, which on a
	// loaded machine trails the client: wait (bounded) for all of them.
	want := float64(a.Conns * a.Streams)
	for waited := time.Duration(0); ; waited += 100 * time.Millisecond {
		f.authFailures = metricSum(t, p.httpAddr, "usersig_auth_failures_total") - before
		if f.authFailures >= want || waited > 10*time.Second || a.Authorization != "" || a.Method != "" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.peakRSS = peakRSS(t, p.cmd.Process.Pid)
	f.result = running.Stop()
	return f
}

// legitCalls makes, on a new connection and each with a 5 s deadline, 20
// GenerateUserSig calls by another caller, 5 health checks without
// credentials and 5 with them. It counts failures by kind in failed.
func legitCalls(ctx context.Context, addr string, failed map[string]int) string {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		failed["connection"]++
		return err.Error()
	}
	defer conn.Close()
	c, h := usersigv1.NewUserSigServiceClient(conn), healthpb.NewHealthClient(conn)
	var (
		mu    sync.Mutex
		first []string
		wg    sync.WaitGroup
	)
	call := func(what string, n int, f func(context.Context) error) {
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				if err := f(cctx); err != nil {
					mu.Lock()
					defer mu.Unlock()
					if failed[what] == 0 {
						first = append(first, what+": "+err.Error())
					}
					failed[what]++
				}
			}()
		}
	}
	withToken := func(ctx context.Context) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+otherToken)
	}
	health := func(ctx context.Context) error {
		r, err := h.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			err = fmt.Errorf("status %v", r.GetStatus())
		}
		return err
	}
	call("caller", 20, func(ctx context.Context) error {
		_, err := c.GenerateUserSig(withToken(ctx), &usersigv1.GenerateUserSigRequest{UserId: "u1", Ttl: durSeconds(60)})
		return err
	})
	call("anonymous health", 5, health)
	call("caller health", 5, func(ctx context.Context) error { return health(withToken(ctx)) })
	wg.Wait()
	if len(failed) == 0 {
		return "20 GenerateUserSig by another caller and 10 health checks (5 with its token) OK"
	}
	return fmt.Sprintf("failed: %v, e.g. %s", failed, strings.Join(first, "; "))
}

// metricSum adds up every series of a metric on /metrics.
func metricSum(t *testing.T, httpAddr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		fs := strings.Fields(line)
		v, err := strconv.ParseFloat(fs[len(fs)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}
