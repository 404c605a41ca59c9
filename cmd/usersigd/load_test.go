package main_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
)

// TestSIGTERMUnderLoad: at a steady 1,000 calls/s, SIGTERM the server.
// Every call it accepted completes OK, calls after the drain are refused
// with UNAVAILABLE (nothing else), and it exits 0 within the timeout.
func TestSIGTERMUnderLoad(t *testing.T) {
	p := startConfigured(t, "shutdown: {delay: 2s, timeout: 5s}", "shutdown: {delay: 300ms, timeout: 5s}")
	c := client(t, p.grpcAddr)

	const (
		rate    = 1000 // calls per second, over 10 workers
		workers = 10
	)
	var (
		mu     sync.Mutex
		counts = map[codes.Code]int{}
		other  []string
		wg     sync.WaitGroup
	)
	stop := make(chan struct{})
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second * workers / rate)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				ctx, cancel := context.WithTimeout(bearer(token), 5*time.Second)
				_, err := c.GenerateUserSig(ctx, &usersigv1.GenerateUserSigRequest{UserId: "u1", Ttl: durSeconds(60)})
				cancel()
				code := status.Code(err)
				mu.Lock()
				counts[code]++
				if code != codes.OK && code != codes.Unavailable {
					other = append(other, err.Error())
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Second)
	sent := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	code := p.wait(t)
	drained := time.Since(sent)
	time.Sleep(300 * time.Millisecond) // calls after the exit are refused too
	close(stop)
	wg.Wait()

	if code != 0 {
		t.Errorf("exit status %d, want 0\n%s", code, p.logs())
	}
	if drained > 5*time.Second {
		t.Errorf("the drain took %v, above shutdown.timeout", drained)
	}
	if len(other) > 0 {
		t.Errorf("%d calls ended with neither OK nor UNAVAILABLE, e.g. %s", len(other), other[0])
	}
	if counts[codes.OK] < 900 || counts[codes.Unavailable] == 0 {
		t.Errorf("calls by code %v: want about a second's worth OK, then UNAVAILABLE", counts)
	}
	// The audit log is the server's own count of what it accepted: every
	// one of those reached the client as OK.
	if issued := strings.Count(p.logs(), `"msg":"ticket issued"`); issued != counts[codes.OK] {
		t.Errorf("the server issued %d tickets, the clients got %d", issued, counts[codes.OK])
	}
	t.Logf("SIGTERM at 1,000 calls/s: %v; drained and exited in %v", counts, drained)
}

// TestOverload: far more concurrent calls than the server takes at once
// (max_concurrent_calls is 2 here, against 2,000 in flight). It sheds the
// excess with RESOURCE_EXHAUSTED or lets deadlines pass, keeps serving,
// and its memory stays bounded.
func TestOverload(t *testing.T) {
	p := startConfigured(t, "grpc: {listen: 127.0.0.1:0}", "grpc: {listen: 127.0.0.1:0, max_concurrent_calls: 2}")

	const calls = 20000
	clients := make([]usersigv1.UserSigServiceClient, 16)
	for i := range clients {
		clients[i] = client(t, p.grpcAddr)
	}
	var (
		mu     sync.Mutex
		counts = map[codes.Code]int{}
		wg     sync.WaitGroup
	)
	sem := make(chan struct{}, 2000) // 2,000 calls in flight at once
	for i := 0; i < calls; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			ctx, cancel := context.WithTimeout(bearer(token), time.Second)
			defer cancel()
			_, err := clients[i%len(clients)].VerifyUserSig(ctx, &usersigv1.VerifyUserSigRequest{UserId: "u1", UserSig: "eJwrSS0uMTQwMDM1NjI0MTJQsFJQUMpLLQEAMjgFNQ__"})
			mu.Lock()
			counts[status.Code(err)]++
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	for code, n := range counts {
		switch code {
		case codes.OK, codes.ResourceExhausted, codes.DeadlineExceeded:
		default:
			t.Errorf("%d calls ended %v under overload", n, code)
		}
	}
	if counts[codes.OK] == 0 {
		t.Errorf("no call succeeded under overload: %v", counts)
	}
	// Still serving afterwards.
	if _, err := client(t, p.grpcAddr).VerifyUserSig(bearer(token), &usersigv1.VerifyUserSigRequest{UserId: "u1", UserSig: "x"}); err != nil {
		t.Errorf("a call after the overload: %v", err)
	}
	peak := peakRSS(t, p.cmd.Process.Pid)
	t.Logf("overload, %d calls with 2,000 in flight: %v; peak RSS %d MiB", calls, counts, peak>>20)
	// usersigd's default soft memory limit is 192 MiB; the bound leaves room
	// for what is not heap. A leak per call would pass it long before 20,000.
	if peak > 320<<20 {
		t.Errorf("peak RSS %d MiB under overload, want it bounded (at most 320 MiB)", peak>>20)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit status %d after the overload", code)
	}
}

// startConfigured starts usersigd on the test config with one setting
// replaced.
func startConfigured(t *testing.T, setting, replacement string) *proc {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "key"), []byte(key), 0o600)
	cfgPath := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfgPath, []byte(strings.Replace(config(dir, ""), setting, replacement, 1)), 0o600)
	return start(t, "--config", cfgPath)
}

// peakRSS reads a process's peak resident set size (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}
