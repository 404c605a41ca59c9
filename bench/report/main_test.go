package main

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The fixtures are run.sh working directories. testdata/pass is a small
// valid run: usersigd's floor, GenerateUserSig, VerifyUserSig and
// GeneratePrivateMapKey (ghz), GenerateUserSig over the HTTP API and the
// HTTP floor (vegeta), GenerateUserSig against the Redis-backed usersigd
// (rgen, ghz) and the bare reference's two RPCs, 4 calls each, one round,
// plus run.sh's two grpcurl calls, its one curl call to the HTTP API, its
// one grpcurl call to the Redis-backed usersigd and 2 idle connections,
// with the servers' logs and metrics and Redis's commandstats those make.
// Every other directory holds only the files that differ from it.
// The failing runs break the reference's GenerateUserSig (ghz) or the HTTP
// floor (vegeta), which no check counts against the server, so that each
// fixture fails for one reason only.
func TestReport(t *testing.T) {
	const (
		bgen   = "raw/main-bgen-r1-c2-k1.json"
		hfloor = "raw/main-hfloor-r1-c2-k2.json"
	)
	for _, tc := range []struct {
		name    string
		overlay string   // a directory of testdata laid over testdata/pass
		remove  []string // files removed from the result
		want    []string // each problem of the report, as a substring, in order
	}{
		{name: "a valid run"},
		{name: "a log with its keys in another order and spaces", overlay: "log-keys-reordered"},

		{name: "ghz exited non-zero", overlay: "ghz-exited",
			want: []string{"main bare GenerateUserSig round 1 (c=2, connections=1): ghz exited 1"}},
		{name: "ghz stopped at the time bound", overlay: "ghz-timed-out",
			want: []string{"bare GenerateUserSig round 1 (c=2, connections=1): ghz ran past the harness's time bound and was stopped (exit 124)"}},
		{name: "ghz wrote no report", remove: []string{bgen},
			want: []string{"bare GenerateUserSig round 1 (c=2, connections=1): ghz exited 0 and wrote no report"}},
		{name: "ghz's report does not parse", overlay: "ghz-report-garbled",
			want: []string{"bare GenerateUserSig round 1 (c=2, connections=1): ghz exited 0; its report does not parse"}},
		{name: "ghz ended early", overlay: "ghz-ended-early",
			want: []string{`bare GenerateUserSig round 1 (c=2, connections=1): ghz ended for "cancel", not "normal"`}},
		{name: "fewer responses than requests", overlay: "ghz-responses-missing",
			want: []string{"bare GenerateUserSig round 1 (c=2, connections=1): 3 responses of 4 requests"}},
		{name: "calls errored", overlay: "ghz-calls-errored",
			want: []string{"bare GenerateUserSig round 1 (c=2, connections=1): 1 calls errored: OK=3 Unavailable=1"}},

		{name: "vegeta exited non-zero", overlay: "vegeta-exited",
			want: []string{"main HTTP GET /healthz (floor) round 1 (c=2, connections=2): vegeta exited 1"}},
		{name: "vegeta stopped at the time bound", overlay: "vegeta-timed-out",
			want: []string{"HTTP GET /healthz (floor) round 1 (c=2, connections=2): vegeta ran past the harness's time bound and was stopped (exit 124)"}},
		{name: "vegeta wrote no summary", remove: []string{hfloor},
			want: []string{"HTTP GET /healthz (floor) round 1 (c=2, connections=2): vegeta exited 0 and wrote no report"}},
		{name: "vegeta's summary does not parse", overlay: "vegeta-summary-garbled",
			want: []string{"HTTP GET /healthz (floor) round 1 (c=2, connections=2): vegeta exited 0; its summary does not parse"}},
		{name: "vegeta made no requests", overlay: "vegeta-no-requests",
			want: []string{"HTTP GET /healthz (floor) round 1 (c=2, connections=2): no requests made"}},
		{name: "HTTP calls errored", overlay: "vegeta-calls-errored",
			want: []string{`HTTP GET /healthz (floor) round 1 (c=2, connections=2): 1 calls errored: HTTP status 200=3 503=1 ("503 Service Unavailable")`}},

		{name: "a call not logged", overlay: "log-call-missing",
			want: []string{`check failed: call log lines: 18 "finished call" lines for UserSigService, 19 calls made`}},
		{name: "a ticket not audited", overlay: "log-audit-missing",
			want: []string{`check failed: audit log lines: 13 "ticket issued" lines, 14 tickets minted`}},
		{name: "a health check logged", overlay: "log-health-logged",
			want: []string{"check failed: health checks not logged: 1 call lines for grpc.health.v1.Health"}},
		{name: "a warning in the log", overlay: "log-warning",
			want: []string{"check failed: no warnings or errors in the server log: 1 lines at warn level or above, 0 lines that are not JSON"}},
		{name: "a panic in the log", overlay: "log-not-json",
			want: []string{"check failed: no warnings or errors in the server log: 0 lines at warn level or above, 3 lines that are not JSON"}},
		{name: "no server log", remove: []string{"server.log"},
			want: []string{"check failed: server log: open "}},

		{name: "no handled counts in the metrics", overlay: "metrics-no-handled",
			want: []string{"metrics.txt has no grpc_server_handled_total"}},
		{name: "a ticket verified not valid", overlay: "metrics-ticket-not-valid",
			want: []string{"check failed: every verified ticket valid: server verified 4 tickets VALID, 5 verify calls answered OK; not valid: EXPIRED=1"}},
		{name: "the server answered an error", overlay: "metrics-server-error",
			want: []string{"check failed: metrics GenerateUserSig: server handled 10 OK, clients saw 10 OK; server answered Internal=1"}},
		{name: "the server did not count the HTTP API's calls", overlay: "metrics-http-not-counted",
			want: []string{"check failed: metrics GenerateUserSig: server handled 5 OK, clients saw 10 OK"}},
		{name: "the server counted fewer OK calls than clients saw", overlay: "metrics-ok-differs",
			want: []string{"check failed: metrics GeneratePrivateMapKey: server handled 3 OK, clients saw 4 OK"}},
		{name: "Redis failed and the rates fell back to the process's buckets", overlay: "redis-fallback",
			want: []string{
				"check failed: Redis-backed: no warnings or errors in the server log: 1 lines at warn level or above, 0 lines that are not JSON",
				"check failed: Redis-backed: no Redis errors: usersig_rate_limit_backend_errors_total 2: rates decided by this process's buckets instead",
				"check failed: Redis-backed: two Redis scripts a call: redis-server ran 8 scripts (EVALSHA and EVAL that did not fail), 10 for 5 calls",
			}},
		{name: "the second usersigd's rates are not in Redis", overlay: "redis-not-backed",
			want: []string{"check failed: Redis-backed: no Redis errors: no usersig_rate_limit_backend_errors_total in its metrics"}},
		{name: "no Redis commandstats", remove: []string{"redis-commandstats.txt"},
			want: []string{"check failed: Redis-backed: Redis commandstats: open "}},
		{name: "no log of the Redis-backed usersigd", remove: []string{"server-redis.log"},
			want: []string{"check failed: Redis-backed: server log: open "}},
		{name: "the idle connections were not held", overlay: "idleconns-not-held",
			want: []string{"check failed: idle connections held: 2 connections opened, each with a health check (idleconns_ok=no)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			work := fixture(t, tc.overlay, tc.remove)
			res, err := report(work, "smoke")
			if err != nil {
				t.Fatalf("report(%s) = %v, want no error", tc.name, err)
			}
			if res.OK != (len(tc.want) == 0) {
				t.Errorf("report(%s).OK = %v, want %v", tc.name, res.OK, len(tc.want) == 0)
			}
			if len(res.Problems) != len(tc.want) {
				t.Fatalf("report(%s) problems:\n%s\nwant %d:\n%s", tc.name, strings.Join(res.Problems, "\n"), len(tc.want), strings.Join(tc.want, "\n"))
			}
			for i, want := range tc.want {
				if !strings.Contains(res.Problems[i], want) {
					t.Errorf("report(%s) problem %d = %q, want it to contain %q", tc.name, i, res.Problems[i], want)
				}
			}
		})
	}
}

// TestRun checks what run.sh gets from a valid run: a table, results.json
// with the HTTP API beside gRPC and the Redis-backed usersigd beside the
// first one, and the ghz reports without their per-request details.
func TestRun(t *testing.T) {
	work, out := fixture(t, "", nil), t.TempDir()
	var table bytes.Buffer
	ok, err := run(work, out, "smoke", &table)
	if !ok || err != nil {
		t.Fatalf("run(testdata/pass) = %v, %v; want true, nil\n%s", ok, err, table.String())
	}
	for _, want := range []string{
		"All 9 runs (ghz and vegeta) completed with zero errors.",
		// hgen: 4 requests over 3 ms + 1 ms; gen: ghz's 2000 rps.
		"HTTP vs gRPC GenerateUserSig: rps 1000 vs 2000 = 0.50 (per round, median: 0.50; goal >= 0.60); p50 0.40 vs 0.40 ms; p99 0.90 vs 0.90 ms (1.00x); errors 0 vs 0",
		"NOT met  HTTP GenerateUserSig rps vs gRPC's",
		"floor, gen, rgen, hgen, hfloor, verify, pmk, bfloor, bgen",
		// rgen: ghz's 1000 rps against gen's 2000; 0.01 s of CPU each for 4 calls.
		"Redis vs local limiter: rps 1000 vs 2000 = 0.50 (per round: 0.50; their median: 0.50; goal >= 0.60); p50 0.80 vs 0.40 ms; p99 1.80 vs 0.90 ms (2.00x); errors 0 vs 0; server CPU 2500 vs 2500 us/call (+0 with Redis), and redis-server's 2500 us/call",
		"NOT met  GenerateUserSig, rates in Redis, rps vs local",
	} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("run(testdata/pass) printed no %q:\n%s", want, table.String())
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		OK       bool     `json:"ok"`
		Problems []string `json:"problems"`
		Main     struct {
			RPCs []struct {
				RPC      string  `json:"rpc"`
				RPSRatio float64 `json:"rps_ratio_to_floor"`
			} `json:"rpcs"`
		} `json:"main"`
		HTTP struct {
			Ran    bool `json:"ran"`
			VsGRPC struct {
				HTTPRPS       float64 `json:"http_rps_median"`
				RPSRatio      float64 `json:"rps_ratio_http_to_grpc"`
				RoundRPSRatio float64 `json:"rps_ratio_http_to_grpc_per_round_median"`
				HTTPP99Ms     float64 `json:"http_p99_ms_median"`
			} `json:"vs_grpc_generate_user_sig"`
			Table struct {
				RPCs []struct {
					RPC      string  `json:"rpc"`
					RPS      float64 `json:"rps_median"`
					RPSRatio float64 `json:"rps_ratio_to_floor"`
				} `json:"rpcs"`
			} `json:"table"`
		} `json:"http_api"`
		Redis struct {
			RPCs []struct {
				RPC             string  `json:"rpc"`
				RPS             float64 `json:"rps_median"`
				RPSRatio        float64 `json:"rps_ratio_to_floor"`
				RoundRPSRatio   float64 `json:"rps_ratio_to_floor_per_round_median"`
				P99Ms           float64 `json:"p99_ms_median"`
				RedisCPUPerCall float64 `json:"redis_cpu_us_per_call_median"`
			} `json:"rpcs"`
		} `json:"redis_rate_limits"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("results.json does not parse: %v", err)
	}
	if !res.OK || len(res.Problems) != 0 || len(res.Main.RPCs) != len(rpcs) || res.Main.RPCs[1].RPSRatio != 1 {
		t.Errorf("results.json = ok %v, problems %q, main table %+v; want ok, no problems, %d RPCs at the floor's rps", res.OK, res.Problems, res.Main.RPCs, len(rpcs))
	}
	h := res.HTTP
	if !h.Ran || h.VsGRPC.HTTPRPS != 1000 || h.VsGRPC.RPSRatio != 0.5 || h.VsGRPC.RoundRPSRatio != 0.5 || h.VsGRPC.HTTPP99Ms != 0.9 ||
		len(h.Table.RPCs) != 2 || h.Table.RPCs[0].RPC != "hfloor" || h.Table.RPCs[0].RPS != 2000 || h.Table.RPCs[1].RPSRatio != 0.5 {
		t.Errorf("results.json http_api = %+v; want hgen at 1000 rps, 0.5 of gRPC's and of the HTTP floor's 2000, p99 0.9 ms", h)
	}
	r := res.Redis.RPCs
	if len(r) != 2 || r[0].RPC != "gen" || r[0].RPS != 2000 || r[1].RPC != "rgen" || r[1].RPS != 1000 || r[1].RPSRatio != 0.5 ||
		r[1].RoundRPSRatio != 0.5 || r[1].P99Ms != 1.8 || r[1].RedisCPUPerCall != 2500 || r[0].RedisCPUPerCall != 0 {
		t.Errorf("results.json redis_rate_limits = %+v; want gen at 2000 rps, rgen at 1000 (0.5 of it), p99 1.8 ms, redis-server 2500 us a call", r)
	}
	raw, err := os.ReadFile(filepath.Join(out, "raw", "main-gen-r1-c2-k1.json"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(`"details"`)) || !bytes.Contains(raw, []byte(`"statusCodeDistribution"`)) {
		t.Errorf("out/raw/main-gen-r1-c2-k1.json = %s; want the report without its details", raw)
	}
}

// fixture lays testdata/overlay over a copy of testdata/pass and removes
// the files named in remove; it returns the directory.
func fixture(t *testing.T, overlay string, remove []string) string {
	t.Helper()
	dir := t.TempDir()
	layers := []string{"pass"}
	if overlay != "" {
		layers = append(layers, overlay)
	}
	for _, layer := range layers {
		src := filepath.Join("testdata", layer)
		err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(src, path)
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(rel)), 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, rel), b, 0o644)
		})
		if err != nil {
			t.Fatalf("fixture %s: %v", layer, err)
		}
	}
	for _, name := range remove {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatalf("fixture: %v", err)
		}
	}
	return dir
}

// TestTrimRawMasksTokens: ghz repeats its metadata in its report; the
// copy the report keeps holds no bearer token or ID token.
func TestTrimRawMasksTokens(t *testing.T) {
	work, out := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(work, "raw"), 0o755)
	os.MkdirAll(filepath.Join(out, "raw"), 0o755)
	raw := `{"options":{"metadata":{"authorization":"Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln"}},"details":[{"latency":1}],"rps":5}`
	if err := os.WriteFile(filepath.Join(work, "raw", "x.json"), []byte(raw), 0o644); err != nil {
		t.Fatal(err)
	}
	trimRaw(work, out, "x.json")
	b, err := os.ReadFile(filepath.Join(out, "raw", "x.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "eyJ") || !strings.Contains(string(b), `"Bearer (masked)"`) || strings.Contains(string(b), "details") {
		t.Fatalf("trimmed report: %s", b)
	}
}
