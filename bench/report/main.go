// Command report turns what bench/run.sh collected into a table on stdout
// and bench/out/results.json. It is bench/run.sh's helper, not a tool of its
// own: run.sh builds it and calls it once at the end.
//
//	report -work DIR -out DIR -mode full|smoke
//
// DIR (run.sh's temporary directory) holds:
//
//	runs.tsv       one line per ghz or vegeta run: phase, rpc, method, round,
//	               c, connections, n (0 for vegeta, which runs for a
//	               duration), raw file, exit code, wall seconds, server CPU
//	               seconds, the load generator's CPU seconds, command
//	raw/*.json     ghz's JSON reports (-O json), vegeta's summaries
//	               (vegeta report -type json)
//	meta.tsv       key, value: machine, versions, commands, settings
//	rss.tsv        key, value: RSS readings in KiB and fd counts
//	rss-samples    VmRSS in KiB sampled during the main load, one per line
//	metrics.txt    the server's /metrics after the last run
//	server.log     the server's stderr (JSON lines)
//	server-redis.log, metrics-redis.txt
//	               the same of the second usersigd, whose rate limits are
//	               shared through Redis (its /metrics after the main table)
//	redis-commandstats.txt
//	               redis-server's INFO commandstats after the main table
//
// It exits 1 when a run failed, a call errored or a consistency check
// failed, and 0 otherwise: the speed and memory goals are reported, never
// asserted.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Goals the maintainers check (see bench/README.md).
const (
	goalRPSRatio = 0.90 // each RPC's rps at least this fraction of the floor's
	goalP99Ratio = 1.25 // each RPC's p99 at most this multiple of the floor's
	goalRSSMiB   = 64   // RSS under the main load at most this
)

type rpcDef struct{ key, method, label string }

// The RPCs of usersigd, in the order the main table interleaves them. The
// floor is a health check on the same server: same transport, trivial
// handler.
var rpcs = []rpcDef{
	{"floor", "grpc.health.v1.Health/Check", "Health/Check (floor)"},
	{"gen", "usersig.v1.UserSigService/GenerateUserSig", "GenerateUserSig"},
	{"verify", "usersig.v1.UserSigService/VerifyUserSig", "VerifyUserSig"},
	{"pmk", "usersig.v1.UserSigService/GeneratePrivateMapKey", "GeneratePrivateMapKey"},
}

// The HTTP/JSON API's runs, driven by vegeta in the same rounds: usersigd's
// GenerateUserSig through POST /v1/usersig:generate against the HTTP
// floor, GET /healthz on the metrics listener (the same net/http stack in
// the same process, a trivial handler, no auth, not logged). hgen's method
// is the gRPC method the route calls, as the server's log and metrics
// count it.
var httpRPCs = []rpcDef{
	{"hfloor", "GET /healthz", "HTTP GET /healthz (floor)"},
	{"hgen", "usersig.v1.UserSigService/GenerateUserSig", "HTTP GenerateUserSig"},
}

// httpRoute is the route hgen drives.
const httpRoute = "POST /v1/usersig:generate"

// goalHTTPRatio is the HTTP API's GenerateUserSig rps at least this
// fraction of the gRPC one's (issue 13).
const goalHTTPRatio = 0.60

// GenerateUserSig with an app user's ID token from bench/oidcissuer, in the
// same rounds right after the bearer-token one, against it: the same
// call, authenticated by a verified ID token (cached by its hash after the
// first call) instead of a token hash.
var idTokenRPCs = []rpcDef{
	{"gen", "usersig.v1.UserSigService/GenerateUserSig", "GenerateUserSig"},
	{"igenrs", "usersig.v1.UserSigService/GenerateUserSig", "ID token (RS256)"},
	{"igenes", "usersig.v1.UserSigService/GenerateUserSig", "ID token (ES256)"},
}

// goalIDTokenRatio is GenerateUserSig's rps with an ID token at least this
// fraction of its rps with a bearer token (issue 14).
const goalIDTokenRatio = 0.60

// GenerateUserSig against a second usersigd, the same config but for
// rate_limits: {backend: redis} with a redis-server on loopback, in the
// same rounds right after gen, against it: the same call by the same
// caller, whose rate and rate_per_user (far above what the machine
// reaches, so that none is refused) are decided by Redis, one script each,
// instead of by the process's own buckets.
var redisRPCs = []rpcDef{
	{"gen", "usersig.v1.UserSigService/GenerateUserSig", "GenerateUserSig"},
	{"rgen", "usersig.v1.UserSigService/GenerateUserSig", "GenerateUserSig, Redis"},
}

// goalRedisRatio is GenerateUserSig's rps with the rates in Redis at least
// this fraction of its rps with the local limiter (issue 15).
const goalRedisRatio = 0.60

// isRedis tells the Redis-backed usersigd's runs from the first one's.
func isRedis(key string) bool {
	return slices.ContainsFunc(redisRPCs[1:], func(d rpcDef) bool { return d.key == key })
}

// isVegeta tells the HTTP API's runs (vegeta) from ghz's.
func isVegeta(key string) bool {
	return slices.ContainsFunc(httpRPCs, func(d rpcDef) bool { return d.key == key })
}

// The reference's RPCs, run in the same rounds after usersigd's: bench/bare,
// a bare grpc-go server whose GenerateUserSig returns an answer made at
// start, against its own health check.
var bareRPCs = []rpcDef{
	{"bfloor", "grpc.health.v1.Health/Check", "bare Health/Check (floor)"},
	{"bgen", "usersig.v1.UserSigService/GenerateUserSig", "bare GenerateUserSig"},
}

// isBare tells the reference's runs from usersigd's.
func isBare(key string) bool {
	return slices.ContainsFunc(bareRPCs, func(d rpcDef) bool { return d.key == key })
}

const (
	userSigService = "usersig.v1.UserSigService"
	healthService  = "grpc.health.v1.Health"
)

func main() {
	work := flag.String("work", "", "run.sh's working directory")
	out := flag.String("out", "", "where to write results.json and the trimmed raw reports")
	mode := flag.String("mode", "full", "full or smoke")
	flag.Parse()
	if *work == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "report: -work and -out are required")
		os.Exit(2)
	}
	ok, err := run(*work, *out, *mode, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// Run is one ghz or vegeta run and what it reported.
type Run struct {
	Phase       string `json:"phase"` // warmup, main or sweep
	RPC         string `json:"rpc"`   // floor, gen, rgen, igenrs, igenes, verify, pmk, hfloor, hgen, bfloor or bgen
	Tool        string `json:"tool"`  // ghz or vegeta
	Method      string `json:"method"`
	Round       int    `json:"round"`
	Concurrency int    `json:"concurrency"`
	Connections int    `json:"connections"`
	// Requests is ghz's -n; for vegeta, which runs for a duration, the
	// requests it made.
	Requests    int     `json:"requests"`
	Raw         string  `json:"raw"`
	Exit        int     `json:"exit"` // the tool's exit code
	WallSeconds float64 `json:"wall_seconds"`
	Command     string  `json:"command"`
	// CPU time over the run: the server's (from /proc/PID/stat, 10 ms
	// ticks) and the load generator's own (user + system).
	ServerCPUSeconds float64 `json:"server_cpu_seconds"`
	ClientCPUSeconds float64 `json:"client_cpu_seconds"`
	ServerCPUPerCall float64 `json:"server_cpu_us_per_call"`
	// redis-server's CPU time over the run, for the runs against the
	// Redis-backed usersigd (rgen); 0 for the others.
	RedisCPUSeconds float64 `json:"redis_cpu_seconds,omitempty"`
	RedisCPUPerCall float64 `json:"redis_cpu_us_per_call,omitempty"`

	EndReason   string         `json:"end_reason,omitempty"` // ghz's
	Count       int            `json:"count"`
	RPS         float64        `json:"rps"`
	AvgMs       float64        `json:"avg_ms"`
	P50Ms       float64        `json:"p50_ms"`
	P90Ms       float64        `json:"p90_ms"`
	P99Ms       float64        `json:"p99_ms"`
	SlowestMs   float64        `json:"slowest_ms"`
	StatusCodes map[string]int `json:"status_codes"`
	ErrorKinds  map[string]int `json:"error_kinds,omitempty"`    // ghz's, with counts
	ErrorTexts  []string       `json:"error_messages,omitempty"` // vegeta's, without
	Errors      int            `json:"errors"`                   // responses whose status is not OK (HTTP: not 200)
	Problem     string         `json:"problem,omitempty"`
}

// ghzReport is the part of ghz's JSON report that is read. Durations are
// nanoseconds; latencies count only OK responses unless --count-errors.
type ghzReport struct {
	EndReason              string         `json:"endReason"`
	Count                  int            `json:"count"`
	Total                  int64          `json:"total"`
	Average                int64          `json:"average"`
	Slowest                int64          `json:"slowest"`
	RPS                    float64        `json:"rps"`
	ErrorDistribution      map[string]int `json:"errorDistribution"`
	StatusCodeDistribution map[string]int `json:"statusCodeDistribution"`
	LatencyDistribution    []struct {
		Percentage int   `json:"percentage"`
		Latency    int64 `json:"latency"`
	} `json:"latencyDistribution"`
}

// vegetaReport is the part of vegeta's JSON summary (vegeta report -type
// json) that is read. Durations are nanoseconds; latencies count every
// response, failed ones too. duration runs from the first request sent to
// the last one, wait from the last one to its answer.
type vegetaReport struct {
	Latencies struct {
		Mean int64 `json:"mean"`
		P50  int64 `json:"50th"`
		P90  int64 `json:"90th"`
		P99  int64 `json:"99th"`
		Max  int64 `json:"max"`
	} `json:"latencies"`
	Duration    int64          `json:"duration"`
	Wait        int64          `json:"wait"`
	Requests    int            `json:"requests"`
	StatusCodes map[string]int `json:"status_codes"`
	Errors      []string       `json:"errors"`
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

// run reports on what run.sh collected in work: it prints the table to w,
// writes results.json and the trimmed ghz reports to out, and says whether
// the run is valid.
func run(work, out, mode string, w io.Writer) (bool, error) {
	res, err := report(work, mode)
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Join(out, "raw"), 0o755); err != nil {
		return false, err
	}
	for _, r := range res.Runs {
		trimRaw(work, out, r.Raw)
	}

	printTable(w, res)

	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return false, err
	}
	path := filepath.Join(out, "results.json")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return false, err
	}
	fmt.Fprintf(w, "\nAll figures, per-run details and the exact commands: %s\n", path)
	return res.OK, nil
}

// report reads what run.sh collected in work and runs the checks: the
// run is valid when res.Problems is empty.
func report(work, mode string) (Results, error) {
	meta, err := readTSVMap(filepath.Join(work, "meta.tsv"))
	if err != nil {
		return Results{}, err
	}
	rss, err := readTSVMap(filepath.Join(work, "rss.tsv"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Results{}, err
	}
	runs, err := readRuns(work)
	if err != nil {
		return Results{}, err
	}
	for i := range runs {
		loadRun(work, &runs[i])
	}

	res := Results{
		Mode:     mode,
		Date:     meta["date"],
		Machine:  machine(meta),
		Source:   map[string]string{"git_commit": meta["git_commit"], "git_dirty": meta["git_dirty"]},
		Server:   serverInfo(meta, work),
		Commands: commands(meta),
		Notes: []string{
			"ghz and vegeta run on the same machine as usersigd and compete with it for the " + meta["nproc"] + " CPUs: absolute rps and latencies are lower bounds of what the server alone could do, and the ratios to the floor (a health check on the same server) are the figures to compare.",
			"rps is ghz's count/total (every response, OK or not); latencies are of OK responses only (ghz leaves errors out of them without --count-errors).",
			"The HTTP/JSON API is driven by vegeta in the same rounds, right after gRPC GenerateUserSig: a closed loop of as many workers as ghz's -c (-rate 0), each with its own HTTP/1.1 keep-alive connection, for a duration rather than a count; its rps is every response over the time from the first request to the last answer, its latencies count every response, and any answer but 200 is an error.",
			"The main table's figures are medians across interleaved rounds; every run opens fresh connections and resolves the method by server reflection once before its calls.",
			"Logging is on as in production: one JSON line per UserSigService call and one audit line per minted ticket, written to a file.",
			"The bench caller has a rate and a rate_per_user far above what the machine reaches: every call spends from both limiters and none is refused. rgen is GenerateUserSig against a second usersigd with the same config but rate_limits: {backend: redis}, its two limiters decided by a redis-server on loopback (one script each a call); its server CPU is that usersigd's, and redis-server's is apart.",
		},
		Runs: runs,
	}
	res.Order = strings.Fields(meta["order"])
	res.Main = mainTable(runs, meta, rpcs)
	res.Bare = mainTable(runs, meta, bareRPCs)
	res.IDToken = mainTable(runs, meta, idTokenRPCs)
	res.Redis = mainTable(runs, meta, redisRPCs)
	res.HTTP = httpTable(runs, meta, res.Main)
	res.Sweep = sweepTable(runs, meta)
	res.RSS = rssFigures(work, rss)
	res.Checks = checks(runs, meta, work)
	res.Checks = append(res.Checks, Check{"idle connections held", rss["idleconns_ok"] == "yes",
		fmt.Sprintf("%s connections opened, each with a health check (idleconns_ok=%s)", rss["idleconns_n"], rss["idleconns_ok"])})
	res.Goals = goals(res)
	res.Problems = problems(runs, res.Checks)
	res.OK = len(res.Problems) == 0
	if start, err := strconv.ParseFloat(meta["start_epoch"], 64); err == nil {
		res.DurationSeconds = math.Round(float64(time.Now().UnixNano())/1e9 - start) // up to the report
	}
	return res, nil
}

// Results is results.json.
type Results struct {
	Mode            string            `json:"mode"`
	Date            string            `json:"date"`
	DurationSeconds float64           `json:"duration_seconds"`
	OK              bool              `json:"ok"`
	Problems        []string          `json:"problems"`
	Machine         map[string]string `json:"machine"`
	Source          map[string]string `json:"source"`
	Server          map[string]any    `json:"server"`
	Commands        map[string]string `json:"commands"`
	Notes           []string          `json:"notes"`
	Order           []string          `json:"order"` // of the RPCs in each round
	Main            MainTable         `json:"main"`
	Bare            MainTable         `json:"bare_reference"`
	HTTP            HTTPTable         `json:"http_api"`
	// IDToken is GenerateUserSig with ID tokens; its ratios are to the
	// bearer-token GenerateUserSig (its first row), not to the floor.
	IDToken MainTable `json:"id_token"`
	// Redis is GenerateUserSig against the usersigd whose rates are in
	// Redis; its ratios are to GenerateUserSig with the local limiter
	// (its first row).
	Redis  MainTable  `json:"redis_rate_limits"`
	Sweep  SweepTable `json:"sweep"`
	RSS    RSSFigures `json:"rss"`
	Goals  []Goal     `json:"goals"`
	Checks []Check    `json:"checks"`
	Runs   []Run      `json:"runs"`
}

func machine(meta map[string]string) map[string]string {
	m := map[string]string{}
	for _, k := range []string{"nproc", "cpu_model", "kernel", "go_version", "ghz_version", "ghz_path", "grpcurl_version", "grpcurl_path", "vegeta_version", "vegeta_path", "redis_version", "hostname_hash"} {
		if v, ok := meta[k]; ok {
			m[k] = v
		}
	}
	return m
}

func serverInfo(meta map[string]string, work string) map[string]any {
	s := map[string]any{
		"grpc_addr": meta["grpc_addr"],
		"http_addr": meta["http_addr"],
		"api_addr":  meta["api_addr"],
	}
	if b, err := os.ReadFile(filepath.Join(work, "config.yaml")); err == nil {
		s["config"] = string(b)
	}
	if fi, err := os.Stat(filepath.Join(work, "server.log")); err == nil {
		s["log_bytes"] = fi.Size()
	}
	if addr, ok := meta["redis_addr"]; ok {
		r := map[string]any{"redis_addr": addr, "grpc_addr": meta["grpc_addr_redis"], "http_addr": meta["http_addr_redis"]}
		if b, err := os.ReadFile(filepath.Join(work, "config-redis.yaml")); err == nil {
			r["config"] = string(b)
		}
		if fi, err := os.Stat(filepath.Join(work, "server-redis.log")); err == nil {
			r["log_bytes"] = fi.Size()
		}
		s["redis_backed"] = r
	}
	return s
}

func commands(meta map[string]string) map[string]string {
	c := map[string]string{}
	for k, v := range meta {
		if strings.HasPrefix(k, "cmd_") {
			c[strings.TrimPrefix(k, "cmd_")] = v
		}
	}
	return c
}

// readTSVMap reads key<TAB>value lines; a later key wins.
func readTSVMap(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return map[string]string{}, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "\t")
		if ok {
			m[k] = v
		}
	}
	return m, sc.Err()
}

func readRuns(work string) ([]Run, error) {
	f, err := os.Open(filepath.Join(work, "runs.tsv"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var runs []Run
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) == 13 {
			f = append(f, "") // a line without redis-server's CPU
		}
		if len(f) != 14 {
			return nil, fmt.Errorf("runs.tsv: %d fields, want 14: %q", len(f), sc.Text())
		}
		atoi := func(s string) int { n, _ := strconv.Atoi(s); return n }
		atof := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }
		tool := "ghz"
		if isVegeta(f[1]) {
			tool = "vegeta"
		}
		runs = append(runs, Run{
			Phase: f[0], RPC: f[1], Tool: tool, Method: f[2], Round: atoi(f[3]),
			Concurrency: atoi(f[4]), Connections: atoi(f[5]), Requests: atoi(f[6]),
			Raw: f[7], Exit: atoi(f[8]), WallSeconds: atof(f[9]),
			ServerCPUSeconds: atof(f[10]), ClientCPUSeconds: atof(f[11]), Command: f[12],
			RedisCPUSeconds: atof(f[13]),
		})
	}
	return runs, sc.Err()
}

// loadRun reads a run's ghz report or vegeta summary and fills in its
// figures and problem.
func loadRun(work string, r *Run) {
	b, err := os.ReadFile(filepath.Join(work, "raw", r.Raw))
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		r.Problem = fmt.Sprintf("%s exited %d and wrote no report", r.Tool, r.Exit)
		return
	}
	if r.Tool == "vegeta" {
		loadVegeta(b, r)
		return
	}
	var g ghzReport
	if err := json.Unmarshal(b, &g); err != nil {
		r.Problem = fmt.Sprintf("ghz exited %d; its report does not parse: %v", r.Exit, err)
		return
	}
	r.EndReason, r.Count, r.RPS = g.EndReason, g.Count, g.RPS
	if g.Count > 0 {
		r.ServerCPUPerCall = r.ServerCPUSeconds / float64(g.Count) * 1e6
		r.RedisCPUPerCall = r.RedisCPUSeconds / float64(g.Count) * 1e6
	}
	r.AvgMs, r.SlowestMs = ms(g.Average), ms(g.Slowest)
	r.StatusCodes, r.ErrorKinds = g.StatusCodeDistribution, g.ErrorDistribution
	for _, l := range g.LatencyDistribution {
		switch l.Percentage {
		case 50:
			r.P50Ms = ms(l.Latency)
		case 90:
			r.P90Ms = ms(l.Latency)
		case 99:
			r.P99Ms = ms(l.Latency)
		}
	}
	for code, n := range g.StatusCodeDistribution {
		if code != "OK" {
			r.Errors += n
		}
	}
	p := exitProblems(r)
	if g.EndReason != "normal" {
		p = append(p, fmt.Sprintf("ghz ended for %q, not \"normal\"", g.EndReason))
	}
	if g.Count != r.Requests {
		p = append(p, fmt.Sprintf("%d responses of %d requests", g.Count, r.Requests))
	}
	if r.Errors > 0 {
		p = append(p, fmt.Sprintf("%d calls errored: %s", r.Errors, codes(g.StatusCodeDistribution)))
	}
	r.Problem = strings.Join(p, "; ")
}

// okCount is the run's successful calls: OK for ghz, HTTP 200 for vegeta.
func (r *Run) okCount() int {
	if r.Tool == "vegeta" {
		return r.StatusCodes["200"]
	}
	return r.StatusCodes["OK"]
}

// exitProblems is what a run's exit code says is wrong with it.
func exitProblems(r *Run) []string {
	switch r.Exit {
	case 0:
		return nil
	case 124:
		return []string{r.Tool + " ran past the harness's time bound and was stopped (exit 124)"}
	default:
		return []string{fmt.Sprintf("%s exited %d", r.Tool, r.Exit)}
	}
}

// loadVegeta fills in a vegeta run from its summary. Its rps is as ghz's:
// every response over the time from the first request to the last answer.
// An answer is an error unless it is 200 (status "0" is a request that
// got no answer: refused, reset, timed out).
func loadVegeta(b []byte, r *Run) {
	var v vegetaReport
	if err := json.Unmarshal(b, &v); err != nil {
		r.Problem = fmt.Sprintf("vegeta exited %d; its summary does not parse: %v", r.Exit, err)
		return
	}
	r.Count, r.Requests = v.Requests, v.Requests
	if total := v.Duration + v.Wait; total > 0 {
		r.RPS = float64(v.Requests) / (float64(total) / 1e9)
	}
	if v.Requests > 0 {
		r.ServerCPUPerCall = r.ServerCPUSeconds / float64(v.Requests) * 1e6
	}
	r.AvgMs, r.P50Ms, r.P90Ms, r.P99Ms, r.SlowestMs = ms(v.Latencies.Mean), ms(v.Latencies.P50), ms(v.Latencies.P90), ms(v.Latencies.P99), ms(v.Latencies.Max)
	r.StatusCodes, r.ErrorTexts = v.StatusCodes, v.Errors
	for code, n := range v.StatusCodes {
		if code != "200" {
			r.Errors += n
		}
	}
	p := exitProblems(r)
	if v.Requests == 0 {
		p = append(p, "no requests made")
	}
	if r.Errors > 0 {
		e := fmt.Sprintf("%d calls errored: HTTP status %s", r.Errors, codes(v.StatusCodes))
		if len(v.Errors) > 0 {
			e += fmt.Sprintf(" (%q)", strings.Join(v.Errors, "; "))
		}
		p = append(p, e)
	}
	r.Problem = strings.Join(p, "; ")
}

// trimRaw writes a run's ghz report without its per-request details to
// out/raw; a report that is missing or does not parse is left out.
func trimRaw(work, out, name string) {
	b, err := os.ReadFile(filepath.Join(work, "raw", name))
	if err != nil {
		return
	}
	// ghz repeats its options, the token or ID token among them.
	b = bearerValue.ReplaceAll(b, []byte(`"Bearer (masked)"`))
	var full map[string]json.RawMessage
	if json.Unmarshal(b, &full) == nil {
		delete(full, "details")
		if trimmed, err := json.MarshalIndent(full, "", "  "); err == nil {
			os.WriteFile(filepath.Join(out, "raw", name), append(trimmed, '\n'), 0o644)
		}
	}
}

var bearerValue = regexp.MustCompile(`"Bearer [^"]*"`)

func codes(m map[string]int) string {
	var s []string
	for k, v := range m {
		s = append(s, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

func label(key string) string {
	for _, r := range slices.Concat(rpcs, httpRPCs, bareRPCs, idTokenRPCs[1:], redisRPCs[1:]) {
		if r.key == key {
			return r.label
		}
	}
	return key
}

// MainTable is the interleaved main comparison.
type MainTable struct {
	Concurrency int       `json:"concurrency"`
	Connections int       `json:"connections"`
	Requests    int       `json:"requests_per_run"`
	Warmup      int       `json:"warmup_requests_per_rpc"`
	Rounds      int       `json:"rounds"`
	Order       []string  `json:"order"`
	RPCs        []MainRow `json:"rpcs"`
}

// MainRow is one RPC's medians across rounds, and its ratios to the floor.
type MainRow struct {
	RPC      string  `json:"rpc"`
	Method   string  `json:"method"`
	Runs     int     `json:"runs"`
	RPS      float64 `json:"rps_median"`
	P50Ms    float64 `json:"p50_ms_median"`
	P99Ms    float64 `json:"p99_ms_median"`
	Errors   int     `json:"errors"`
	RPSRatio float64 `json:"rps_ratio_to_floor"` // of the medians
	P99Ratio float64 `json:"p99_ratio_to_floor"`
	// The same ratios taken within each round (against that round's floor
	// run), then the median: less sensitive to drift between rounds.
	RoundRPSRatio float64 `json:"rps_ratio_to_floor_per_round_median"`
	RoundP99Ratio float64 `json:"p99_ratio_to_floor_per_round_median"`
	// CPU: the server's microseconds per call and the load generator's
	// cores in use, medians across rounds. They show what the 2 CPUs went
	// to.
	ServerCPUPerCall float64 `json:"server_cpu_us_per_call_median"`
	ClientCores      float64 `json:"client_cpu_cores_median"`
	// redis-server's microseconds per call, for the Redis-backed usersigd.
	RedisCPUPerCall float64    `json:"redis_cpu_us_per_call_median,omitempty"`
	PerRound        []RoundFig `json:"per_round"`
	RPSSpread       [2]float64 `json:"rps_min_max"`
}

// RoundFig is one round's figures for one RPC.
type RoundFig struct {
	Round            int     `json:"round"`
	RPS              float64 `json:"rps"`
	P50Ms            float64 `json:"p50_ms"`
	P99Ms            float64 `json:"p99_ms"`
	Errors           int     `json:"errors"`
	RPSRatio         float64 `json:"rps_ratio_to_floor"`
	P99Ratio         float64 `json:"p99_ratio_to_floor"`
	ServerCPUPerCall float64 `json:"server_cpu_us_per_call"`
	ClientCores      float64 `json:"client_cpu_cores"`
	RedisCPUPerCall  float64 `json:"redis_cpu_us_per_call,omitempty"`
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0 // no figure: shown as "-"
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ratio is a/b, or 0 (no figure) when either is missing.
func ratio(a, b float64) float64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	return a / b
}

// num formats a figure, or "-" for a missing one (0).
func num(format string, v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

func atoiMeta(meta map[string]string, k string) int {
	n, _ := strconv.Atoi(meta[k])
	return n
}

// mainTable is the main table of defs, whose first is their floor.
func mainTable(runs []Run, meta map[string]string, defs []rpcDef) MainTable {
	t := MainTable{
		Concurrency: atoiMeta(meta, "main_c"),
		Connections: atoiMeta(meta, "main_conns"),
		Requests:    atoiMeta(meta, "main_n"),
		Warmup:      atoiMeta(meta, "warmup_n"),
		Rounds:      atoiMeta(meta, "rounds"),
	}
	floorOf := map[int]Run{} // round → the floor's run
	for _, r := range runs {
		if r.Phase == "main" && r.RPC == defs[0].key {
			floorOf[r.Round] = r
		}
	}
	for _, rp := range defs {
		t.Order = append(t.Order, rp.key)
		row := MainRow{RPC: rp.key, Method: rp.method}
		var rps, p50, p99, rr, pr, cpu, cores, rcpu []float64
		for _, r := range runs {
			if r.Phase != "main" || r.RPC != rp.key {
				continue
			}
			f := RoundFig{Round: r.Round, RPS: r.RPS, P50Ms: r.P50Ms, P99Ms: r.P99Ms, Errors: r.Errors,
				RPSRatio: ratio(r.RPS, floorOf[r.Round].RPS), P99Ratio: ratio(r.P99Ms, floorOf[r.Round].P99Ms),
				ServerCPUPerCall: r.ServerCPUPerCall, ClientCores: ratio(r.ClientCPUSeconds, r.WallSeconds),
				RedisCPUPerCall: r.RedisCPUPerCall}
			row.Runs++
			row.Errors += r.Errors
			row.PerRound = append(row.PerRound, f)
			if r.Count > 0 {
				rps = append(rps, r.RPS)
				rr = append(rr, f.RPSRatio)
				cpu = append(cpu, f.ServerCPUPerCall)
				cores = append(cores, f.ClientCores)
				if isRedis(r.RPC) {
					rcpu = append(rcpu, f.RedisCPUPerCall)
				}
			}
			if r.P99Ms > 0 {
				p50 = append(p50, r.P50Ms)
				p99 = append(p99, r.P99Ms)
				pr = append(pr, f.P99Ratio)
			}
		}
		row.RPS, row.P50Ms, row.P99Ms = median(rps), median(p50), median(p99)
		row.RoundRPSRatio, row.RoundP99Ratio = median(rr), median(pr)
		row.ServerCPUPerCall, row.ClientCores, row.RedisCPUPerCall = median(cpu), median(cores), median(rcpu)
		if len(rps) > 0 {
			s := append([]float64(nil), rps...)
			sort.Float64s(s)
			row.RPSSpread = [2]float64{s[0], s[len(s)-1]}
		}
		t.RPCs = append(t.RPCs, row)
	}
	floor := t.RPCs[0]
	for i := range t.RPCs {
		t.RPCs[i].RPSRatio = ratio(t.RPCs[i].RPS, floor.RPS)
		t.RPCs[i].P99Ratio = ratio(t.RPCs[i].P99Ms, floor.P99Ms)
	}
	return t
}

// HTTPTable is the HTTP/JSON API's runs (vegeta) against the HTTP floor,
// and its GenerateUserSig against the gRPC one of the same rounds.
type HTTPTable struct {
	Ran      bool       `json:"ran"` // any HTTP run in the main table
	Route    string     `json:"route"`
	Tool     string     `json:"tool"`
	Workers  int        `json:"workers"`  // requests in flight, each on its own HTTP/1.1 connection
	Duration string     `json:"duration"` // of each main run
	Warmup   string     `json:"warmup_duration"`
	Table    MainTable  `json:"table"` // hfloor, hgen; ratios to hfloor
	VsGRPC   HTTPvsGRPC `json:"vs_grpc_generate_user_sig"`
}

// HTTPvsGRPC compares GenerateUserSig over HTTP and over gRPC, medians
// across rounds.
type HTTPvsGRPC struct {
	HTTPRPS  float64 `json:"http_rps_median"`
	GRPCRPS  float64 `json:"grpc_rps_median"`
	RPSRatio float64 `json:"rps_ratio_http_to_grpc"` // of the medians
	// The ratio taken within each round (HTTP's run right after gRPC's),
	// then the median.
	RoundRPSRatio float64   `json:"rps_ratio_http_to_grpc_per_round_median"`
	PerRound      []float64 `json:"rps_ratio_http_to_grpc_per_round"`
	HTTPP50Ms     float64   `json:"http_p50_ms_median"`
	GRPCP50Ms     float64   `json:"grpc_p50_ms_median"`
	HTTPP99Ms     float64   `json:"http_p99_ms_median"`
	GRPCP99Ms     float64   `json:"grpc_p99_ms_median"`
	P99Ratio      float64   `json:"p99_ratio_http_to_grpc"`
	HTTPErrors    int       `json:"http_errors"`
	GRPCErrors    int       `json:"grpc_errors"`
	// The server's CPU time a call on each path, and the difference: what
	// the HTTP path costs the server over a gRPC call.
	HTTPServerCPUPerCall  float64 `json:"http_server_cpu_us_per_call_median"`
	GRPCServerCPUPerCall  float64 `json:"grpc_server_cpu_us_per_call_median"`
	ExtraServerCPUPerCall float64 `json:"http_extra_server_cpu_us_per_call"`
}

func httpTable(runs []Run, meta map[string]string, grpcMain MainTable) HTTPTable {
	t := HTTPTable{
		Route:    httpRoute,
		Workers:  atoiMeta(meta, "http_workers"),
		Duration: meta["http_duration"],
		Warmup:   meta["http_warmup"],
		Table:    mainTable(runs, meta, httpRPCs),
	}
	t.Tool = fmt.Sprintf("vegeta attack -rate 0 -workers %d -max-workers %d -duration %s", t.Workers, t.Workers, t.Duration)
	t.Table.Concurrency, t.Table.Connections, t.Table.Requests = t.Workers, t.Workers, 0
	var h, g MainRow
	for _, r := range t.Table.RPCs {
		t.Ran = t.Ran || r.Runs > 0
		if r.RPC == "hgen" {
			h = r
		}
	}
	for _, r := range grpcMain.RPCs {
		if r.RPC == "gen" {
			g = r
		}
	}
	v := HTTPvsGRPC{
		HTTPRPS: h.RPS, GRPCRPS: g.RPS, RPSRatio: ratio(h.RPS, g.RPS),
		HTTPP50Ms: h.P50Ms, GRPCP50Ms: g.P50Ms, HTTPP99Ms: h.P99Ms, GRPCP99Ms: g.P99Ms, P99Ratio: ratio(h.P99Ms, g.P99Ms),
		HTTPErrors: h.Errors, GRPCErrors: g.Errors,
		HTTPServerCPUPerCall: h.ServerCPUPerCall, GRPCServerCPUPerCall: g.ServerCPUPerCall,
	}
	if h.ServerCPUPerCall > 0 && g.ServerCPUPerCall > 0 {
		v.ExtraServerCPUPerCall = h.ServerCPUPerCall - g.ServerCPUPerCall
	}
	grpcOf := map[int]float64{}
	for _, f := range g.PerRound {
		grpcOf[f.Round] = f.RPS
	}
	for _, f := range h.PerRound {
		if q := ratio(f.RPS, grpcOf[f.Round]); q > 0 {
			v.PerRound = append(v.PerRound, q)
		}
	}
	v.RoundRPSRatio = median(v.PerRound)
	t.VsGRPC = v
	return t
}

// SweepTable is GenerateUserSig and the floor across concurrency and
// connection counts.
type SweepTable struct {
	Requests    int         `json:"requests_per_run"`
	Concurrency []int       `json:"concurrency"`
	Connections []int       `json:"connections"`
	Skipped     []string    `json:"skipped"`
	SkipReason  string      `json:"skip_reason"`
	Cells       []SweepCell `json:"cells"`
}

// SweepCell is one concurrency × connections pair.
type SweepCell struct {
	Concurrency int      `json:"concurrency"`
	Connections int      `json:"connections"`
	Floor       SweepFig `json:"floor"`
	Gen         SweepFig `json:"generate_user_sig"`
	RPSRatio    float64  `json:"rps_ratio_to_floor"`
	P99Ratio    float64  `json:"p99_ratio_to_floor"`
}

// SweepFig is one run's figures in the sweep.
type SweepFig struct {
	RPS    float64 `json:"rps"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	Errors int     `json:"errors"`
	Ran    bool    `json:"ran"`
}

func ints(s string) []int {
	var out []int
	for _, f := range strings.Fields(s) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func sweepTable(runs []Run, meta map[string]string) SweepTable {
	t := SweepTable{
		Requests:    atoiMeta(meta, "sweep_n"),
		Concurrency: ints(meta["sweep_c"]),
		Connections: ints(meta["sweep_conns"]),
		Skipped:     strings.Fields(meta["sweep_skipped"]),
		SkipReason:  "ghz refuses fewer workers than connections (-c must be at least --connections)",
	}
	for _, c := range t.Concurrency {
		for _, k := range t.Connections {
			if k > c {
				continue
			}
			cell := SweepCell{Concurrency: c, Connections: k}
			for _, r := range runs {
				if r.Phase != "sweep" || r.Concurrency != c || r.Connections != k {
					continue
				}
				f := SweepFig{RPS: r.RPS, P50Ms: r.P50Ms, P99Ms: r.P99Ms, Errors: r.Errors, Ran: r.Count > 0}
				switch r.RPC {
				case "floor":
					cell.Floor = f
				case "gen":
					cell.Gen = f
				}
			}
			cell.RPSRatio = ratio(cell.Gen.RPS, cell.Floor.RPS)
			cell.P99Ratio = ratio(cell.Gen.P99Ms, cell.Floor.P99Ms)
			t.Cells = append(t.Cells, cell)
		}
	}
	return t
}

// RSSFigures are the server's resident memory at each stage, in MiB.
type RSSFigures struct {
	IdleStartMiB       float64 `json:"idle_start_mib"`
	MainSteadyMiB      float64 `json:"main_load_steady_mib"` // median of samples taken during the main runs
	MainMaxSampleMiB   float64 `json:"main_load_max_sample_mib"`
	MainSamples        int     `json:"main_load_samples"`
	MainPeakMiB        float64 `json:"main_load_peak_mib"` // VmHWM over warm-up and main runs
	PeakReset          bool    `json:"peak_reset_before_each_stage"`
	IdleAfterMainMiB   float64 `json:"idle_after_main_mib"`
	SweepPeakMiB       float64 `json:"sweep_peak_mib"`
	IdleConns          int     `json:"idle_conns"`
	IdleConnsBeforeMiB float64 `json:"idle_conns_before_mib"`
	IdleConnsMiB       float64 `json:"idle_conns_mib"`
	IdleConnsPeakMiB   float64 `json:"idle_conns_peak_mib"`
	IdleConnsKiBPer    float64 `json:"idle_conns_kib_per_conn"`
	ServerFDsIdle      int     `json:"server_fds_idle"`
	ServerFDsIdleConns int     `json:"server_fds_with_idle_conns"`
	Source             string  `json:"source"`
}

func mib(kib string) float64 {
	n, err := strconv.ParseFloat(kib, 64)
	if err != nil {
		return 0 // not measured: shown as "-"
	}
	return n / 1024
}

func rssFigures(work string, rss map[string]string) RSSFigures {
	f := RSSFigures{
		IdleStartMiB:       mib(rss["idle_start"]),
		MainPeakMiB:        mib(rss["main_hwm"]),
		PeakReset:          rss["hwm_reset"] == "yes",
		IdleAfterMainMiB:   mib(rss["idle_after_main"]),
		SweepPeakMiB:       mib(rss["sweep_hwm"]),
		IdleConnsBeforeMiB: mib(rss["idleconns_before"]),
		IdleConnsMiB:       mib(rss["idleconns"]),
		IdleConnsPeakMiB:   mib(rss["idleconns_hwm"]),
		Source:             "VmRSS and VmHWM from /proc/PID/status; VmHWM is reset (clear_refs 5) before each stage when the kernel allows it",
	}
	f.IdleConns, _ = strconv.Atoi(rss["idleconns_n"])
	f.ServerFDsIdle, _ = strconv.Atoi(rss["fds_idle"])
	f.ServerFDsIdleConns, _ = strconv.Atoi(rss["fds_idleconns"])
	if f.IdleConns > 0 && f.IdleConnsMiB > 0 {
		f.IdleConnsKiBPer = (f.IdleConnsMiB - f.IdleConnsBeforeMiB) * 1024 / float64(f.IdleConns)
	}
	if b, err := os.ReadFile(filepath.Join(work, "rss-samples")); err == nil {
		var xs []float64
		for _, l := range strings.Fields(string(b)) {
			if v, err := strconv.ParseFloat(l, 64); err == nil {
				xs = append(xs, v/1024)
			}
		}
		f.MainSamples = len(xs)
		if len(xs) > 0 {
			f.MainSteadyMiB = median(xs)
			sort.Float64s(xs)
			f.MainMaxSampleMiB = xs[len(xs)-1]
		}
	}
	return f
}

// Check is a consistency check of the run itself, not a performance goal:
// a failed check makes the harness exit non-zero.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// checks cross-checks ghz's counts against the servers' logs and metrics:
// that every call reached the server it was sent to, and that logging was
// on. The Redis-backed usersigd's calls (rgen) are counted against its own
// log and metrics, and Redis's count of the scripts it ran.
func checks(runs []Run, meta map[string]string, work string) []Check {
	// The first usersigd's runs: not the reference's (another server, not in
	// usersigd's log or metrics), not the Redis-backed usersigd's.
	ok, calls := clientCounts(runs, func(r Run) bool { return !isBare(r.RPC) && !isRedis(r.RPC) })
	// grpcurl's calls before the runs: one to mint the ticket, one to check it.
	mints, verifies := atoiMeta(meta, "mint_calls"), atoiMeta(meta, "verify_calls")
	idle := atoiMeta(meta, "idleconns_n") // one health check per idle connection
	ok[genMethod] += mints
	calls[genMethod] += mints
	ok[verifyMethod] += verifies
	calls[verifyMethod] += verifies
	ok[healthMethod] += idle
	calls[healthMethod] += idle
	out, _ := serverChecks("", filepath.Join(work, "server.log"), filepath.Join(work, "metrics.txt"), ok, calls, rpcs)
	if _, ran := meta["redis_addr"]; ran {
		out = append(out, redisChecks(runs, meta, work)...)
	}
	return out
}

const (
	genMethod    = "usersig.v1.UserSigService/GenerateUserSig"
	verifyMethod = "usersig.v1.UserSigService/VerifyUserSig"
	pmkMethod    = "usersig.v1.UserSigService/GeneratePrivateMapKey"
	healthMethod = "grpc.health.v1.Health/Check"
)

// clientCounts is the OK responses and all responses per method, as the
// load generators saw them, of the runs mine picks.
func clientCounts(runs []Run, mine func(Run) bool) (ok, calls map[string]int) {
	ok, calls = map[string]int{}, map[string]int{}
	for _, r := range runs {
		if mine(r) {
			ok[r.Method] += r.okCount()
			calls[r.Method] += r.Count
		}
	}
	return ok, calls
}

// serverChecks checks one usersigd's log and metrics against what its
// clients saw (ok, calls), with a line of metrics for each of defs. name
// starts each check's name. It returns the metrics it read (nil if none).
func serverChecks(name, logPath, metricsPath string, ok, calls map[string]int, defs []rpcDef) ([]Check, *serverMetrics) {
	var out []Check
	// The server's log: one "finished call" line per UserSigService call,
	// one "ticket issued" line per minted ticket.
	wantCalls, wantAudit := 0, ok[genMethod]+ok[pmkMethod]
	for _, rp := range rpcs[1:] {
		wantCalls += calls[rp.method]
	}
	got, err := countLog(logPath)
	if err != nil {
		out = append(out, Check{name + "server log", false, err.Error()})
	} else {
		out = append(out,
			Check{name + "call log lines", got.calls == wantCalls, fmt.Sprintf("%d \"finished call\" lines for UserSigService, %d calls made", got.calls, wantCalls)},
			Check{name + "audit log lines", got.audit == wantAudit, fmt.Sprintf("%d \"ticket issued\" lines, %d tickets minted", got.audit, wantAudit)},
			Check{name + "health checks not logged", got.health == 0, fmt.Sprintf("%d call lines for %s", got.health, healthService)},
			Check{name + "no warnings or errors in the server log", got.bad == 0 && got.notJSON == 0,
				fmt.Sprintf("%d lines at warn level or above, %d lines that are not JSON", got.bad, got.notJSON)},
		)
	}

	// The server's metrics: grpc_server_handled_total by method and code.
	m, err := readMetrics(metricsPath)
	if err != nil {
		return append(out, Check{name + "server metrics", false, err.Error()}), nil
	}
	// VerifyUserSig answers OK for a bad ticket too, so ghz cannot tell:
	// the server's count of verdicts can.
	if slices.ContainsFunc(defs, func(d rpcDef) bool { return d.method == verifyMethod }) {
		var notValid []string
		for st, n := range m.verdicts {
			if st != "VALID" && n > 0 {
				notValid = append(notValid, fmt.Sprintf("%s=%d", st, n))
			}
		}
		sort.Strings(notValid)
		wantValid := ok[verifyMethod]
		detail := fmt.Sprintf("server verified %d tickets VALID, %d verify calls answered OK", m.verdicts["VALID"], wantValid)
		if len(notValid) > 0 {
			detail += "; not valid: " + strings.Join(notValid, " ")
		}
		out = append(out, Check{name + "every verified ticket valid", len(notValid) == 0 && m.verdicts["VALID"] == wantValid, detail})
	}
	for _, rp := range defs {
		got := m.handled[rp.method]
		var nonOK []string
		for code, n := range got {
			if code != "OK" && n > 0 {
				nonOK = append(nonOK, fmt.Sprintf("%s=%d", code, n))
			}
		}
		sort.Strings(nonOK)
		detail := fmt.Sprintf("server handled %d OK, clients saw %d OK", got["OK"], ok[rp.method])
		if len(nonOK) > 0 {
			detail += "; server answered " + strings.Join(nonOK, " ")
		}
		out = append(out, Check{name + "metrics " + rp.label, got["OK"] == ok[rp.method] && len(nonOK) == 0, detail})
	}
	return out, m
}

// redisChecks checks the Redis-backed usersigd as checks does the first
// one, and that Redis, not the fallback to the process's own buckets,
// decided every rate: no backend error, and two scripts run in Redis per
// call (the caller's rate, then its rate_per_user).
func redisChecks(runs []Run, meta map[string]string, work string) []Check {
	const name = "Redis-backed: "
	ok, calls := clientCounts(runs, func(r Run) bool { return isRedis(r.RPC) })
	mints := atoiMeta(meta, "mint_calls_redis") // grpcurl's, before the runs
	ok[genMethod] += mints
	calls[genMethod] += mints
	out, m := serverChecks(name, filepath.Join(work, "server-redis.log"), filepath.Join(work, "metrics-redis.txt"), ok, calls, rpcs[1:2])
	if m != nil {
		c := Check{name + "no Redis errors", m.backendErrors == 0 && m.hasBackendErrors,
			fmt.Sprintf("usersig_rate_limit_backend_errors_total %d: rates decided by this process's buckets instead", m.backendErrors)}
		if !m.hasBackendErrors {
			c.Detail = "no usersig_rate_limit_backend_errors_total in its metrics: its rates are not in Redis"
		} else if m.backendErrors == 0 {
			c.Detail = "usersig_rate_limit_backend_errors_total 0: every rate decided in Redis"
		}
		out = append(out, c)
	}
	scripts, err := redisScripts(filepath.Join(work, "redis-commandstats.txt"))
	if err != nil {
		return append(out, Check{name + "Redis commandstats", false, err.Error()})
	}
	want := 2 * ok[genMethod]
	return append(out, Check{name + "two Redis scripts a call", scripts == want,
		fmt.Sprintf("redis-server ran %d scripts (EVALSHA and EVAL that did not fail), %d for %d calls (the caller's rate and its rate_per_user)", scripts, want, ok[genMethod])})
}

var cmdstatRE = regexp.MustCompile(`^cmdstat_(evalsha|eval|evalsha_ro|eval_ro):(.*)$`)

// redisScripts reads redis-server's INFO commandstats and counts the Lua
// scripts it ran to the end: EVALSHA and EVAL (and their _RO forms) calls
// less those that failed (redis_rate's first EVALSHA fails with NOSCRIPT,
// and the EVAL after it loads the script).
func redisScripts(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, seen := 0, false
	for _, line := range strings.Split(string(b), "\n") {
		m := cmdstatRE.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		seen = true
		f := map[string]int{}
		for _, kv := range strings.Split(m[2], ",") {
			k, v, _ := strings.Cut(kv, "=")
			f[k], _ = strconv.Atoi(v)
		}
		n += f["calls"] - f["failed_calls"]
	}
	if !seen {
		return 0, fmt.Errorf("%s has no cmdstat_evalsha or cmdstat_eval: Redis ran no script", path)
	}
	return n, nil
}

// logLine is what the checks read of one line of the server's log, which
// zap writes as one JSON object a line.
type logLine struct {
	Level   string `json:"level"`
	Logger  string `json:"logger"`
	Msg     string `json:"msg"`
	Service string `json:"grpc.service"`
}

// logCounts is what the server's log says happened.
type logCounts struct {
	calls   int // "finished call" lines for UserSigService
	health  int // "finished call" lines for the health service
	audit   int // "ticket issued" lines of the audit logger
	bad     int // lines at warn level or above
	notJSON int // lines that are no log line: a panic, a runtime error
}

// countLog reads the server's log line by line.
func countLog(path string) (logCounts, error) {
	var c logCounts
	f, err := os.Open(path)
	if err != nil {
		return c, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			c.notJSON++
			continue
		}
		switch {
		case l.Msg == "finished call" && l.Service == userSigService:
			c.calls++
		case l.Msg == "finished call" && l.Service == healthService:
			c.health++
		case l.Logger == "audit" && l.Msg == "ticket issued":
			c.audit++
		}
		if l.Level != "info" && l.Level != "debug" {
			c.bad++
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

var (
	sampleRE = regexp.MustCompile(`^(grpc_server_handled_total|usersig_verifications_total|usersig_rate_limit_backend_errors_total)(?:\{(.*)\})? (\S+)$`)
	labelRE  = regexp.MustCompile(`(\w+)="([^"]*)"`)
)

// serverMetrics is what the checks read of a server's /metrics.
type serverMetrics struct {
	handled  map[string]map[string]int // grpc_server_handled_total: method → code → count
	verdicts map[string]int            // usersig_verifications_total: status → count
	// usersig_rate_limit_backend_errors_total, which only a server whose
	// rates are in Redis has
	backendErrors    int
	hasBackendErrors bool
}

// readMetrics reads a server's /metrics.
func readMetrics(path string) (*serverMetrics, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sm := &serverMetrics{handled: map[string]map[string]int{}, verdicts: map[string]int{}}
	for _, line := range strings.Split(string(b), "\n") {
		m := sampleRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		l := map[string]string{}
		for _, kv := range labelRE.FindAllStringSubmatch(m[2], -1) {
			l[kv[1]] = kv[2]
		}
		v, _ := strconv.ParseFloat(m[3], 64)
		switch m[1] {
		case "usersig_verifications_total":
			sm.verdicts[l["status"]] += int(v)
		case "usersig_rate_limit_backend_errors_total":
			sm.backendErrors += int(v)
			sm.hasBackendErrors = true
		default:
			method := l["grpc_service"] + "/" + l["grpc_method"]
			if sm.handled[method] == nil {
				sm.handled[method] = map[string]int{}
			}
			sm.handled[method][l["grpc_code"]] += int(v)
		}
	}
	if len(sm.handled) == 0 {
		return nil, fmt.Errorf("%s has no grpc_server_handled_total", path)
	}
	return sm, nil
}

// Goal is one of the maintainers' targets, reported but never asserted.
type Goal struct {
	Name   string  `json:"name"`
	Target string  `json:"target"`
	Value  float64 `json:"value"`
	Met    bool    `json:"met"`
	format string  // for the table; default %.2f
}

func goals(res Results) []Goal {
	var g []Goal
	for _, row := range res.Main.RPCs[1:] {
		g = append(g,
			Goal{label(row.RPC) + " rps vs floor", fmt.Sprintf(">= %.2f", goalRPSRatio), row.RPSRatio, row.RPSRatio >= goalRPSRatio, ""},
			Goal{label(row.RPC) + " p99 vs floor", fmt.Sprintf("<= %.2fx", goalP99Ratio), row.P99Ratio, row.P99Ratio > 0 && row.P99Ratio <= goalP99Ratio, ""},
		)
	}
	if v := res.HTTP.VsGRPC; res.HTTP.Ran {
		g = append(g, Goal{"HTTP GenerateUserSig rps vs gRPC's", fmt.Sprintf(">= %.2f", goalHTTPRatio), v.RPSRatio, v.RPSRatio >= goalHTTPRatio, ""})
	}
	for _, row := range res.IDToken.RPCs[1:] {
		if row.Runs > 0 {
			g = append(g, Goal{"GenerateUserSig, " + label(row.RPC) + ", rps vs bearer's", fmt.Sprintf(">= %.2f", goalIDTokenRatio), row.RPSRatio, row.RPSRatio >= goalIDTokenRatio, ""})
		}
	}
	for _, row := range res.Redis.RPCs[1:] {
		if row.Runs > 0 {
			g = append(g, Goal{"GenerateUserSig, rates in Redis, rps vs local", fmt.Sprintf(">= %.2f", goalRedisRatio), row.RPSRatio, row.RPSRatio >= goalRedisRatio, ""})
		}
	}
	errs := 0
	for _, r := range res.Runs {
		errs += r.Errors
	}
	g = append(g, Goal{"errors (all runs)", "== 0", float64(errs), errs == 0, "%d"})
	g = append(g, Goal{"RSS under the main load (peak VmHWM), MiB", fmt.Sprintf("<= %d", goalRSSMiB), res.RSS.MainPeakMiB, res.RSS.MainPeakMiB > 0 && res.RSS.MainPeakMiB <= goalRSSMiB, ""})
	return g
}

func problems(runs []Run, checks []Check) []string {
	p := []string{}
	for _, r := range runs {
		if r.Problem != "" {
			p = append(p, fmt.Sprintf("%s %s round %d (c=%d, connections=%d): %s", r.Phase, label(r.RPC), r.Round, r.Concurrency, r.Connections, r.Problem))
		}
	}
	for _, c := range checks {
		if !c.OK {
			p = append(p, "check failed: "+c.Name+": "+c.Detail)
		}
	}
	return p
}

func yes(b bool) string {
	if b {
		return "met"
	}
	return "NOT met"
}

func printTable(w io.Writer, res Results) {
	m := res.Machine
	fmt.Fprintf(w, "usersigd benchmark, %s mode, %s\n", res.Mode, res.Date)
	fmt.Fprintf(w, "machine: %s CPUs (%s), %s, %s, ghz %s, vegeta %s\n", m["nproc"], m["cpu_model"], m["kernel"], m["go_version"], m["ghz_version"], m["vegeta_version"])
	fmt.Fprintf(w, "source:  %s%s\n", res.Source["git_commit"], map[bool]string{true: " + uncommitted changes", false: ""}[res.Source["git_dirty"] == "yes"])
	fmt.Fprintf(w, "NOTE: ghz and vegeta run on the same %s CPUs as usersigd and compete with it for CPU; compare the ratios to the floor, not absolute figures.\n", m["nproc"])
	if res.Mode == "smoke" {
		fmt.Fprintln(w, "NOTE: smoke mode: runs are tiny and the figures mean little; only errors and failed runs fail it.")
	}

	mt := res.Main
	order := strings.Join(mt.Order, ", ")
	if len(res.Bare.Order) > 0 {
		order += ", then the reference's " + strings.Join(res.Bare.Order, ", ")
	}
	if o := res.Order; len(o) > 0 {
		order = strings.Join(o, ", ") // as run.sh ran them
	}
	fmt.Fprintf(w, "\nMain table: ghz -c %d --connections %d -n %d, %d round(s) interleaved (%s), after a %d-request warm-up per RPC; medians across rounds\n",
		mt.Concurrency, mt.Connections, mt.Requests, mt.Rounds, order, mt.Warmup)
	printRows(w, mt)
	fmt.Fprintln(w, "(first row: the floor, Health/Check. srv us/call: the server's CPU time per call; client CPUs: the cores the load generator itself kept busy)")
	if h := res.HTTP; h.Ran {
		fmt.Fprintf(w, "\nHTTP/JSON API, in the same rounds: %s (a closed loop like ghz's: %d requests in flight, each on its own HTTP/1.1 keep-alive connection), after a %s warm-up\n",
			h.Tool, h.Workers, h.Warmup)
		printRows(w, h.Table)
		v := h.VsGRPC
		fmt.Fprintf(w, "(floor here: GET /healthz on the metrics listener, the same net/http stack with a trivial handler; HTTP GenerateUserSig is %s)\n", h.Route)
		fmt.Fprintf(w, "HTTP vs gRPC GenerateUserSig: rps %s vs %s = %s (per round, median: %s; goal >= %.2f); p50 %s vs %s ms; p99 %s vs %s ms (%s); errors %d vs %d; server CPU %s vs %s us/call (%s more over HTTP)\n",
			num("%.0f", v.HTTPRPS), num("%.0f", v.GRPCRPS), num("%.2f", v.RPSRatio), num("%.2f", v.RoundRPSRatio), goalHTTPRatio,
			num("%.2f", v.HTTPP50Ms), num("%.2f", v.GRPCP50Ms), num("%.2f", v.HTTPP99Ms), num("%.2f", v.GRPCP99Ms), num("%.2fx", v.P99Ratio),
			v.HTTPErrors, v.GRPCErrors, num("%.0f", v.HTTPServerCPUPerCall), num("%.0f", v.GRPCServerCPUPerCall), num("%+.0f", v.ExtraServerCPUPerCall))
	}
	if it := res.IDToken; len(it.RPCs) > 1 && it.RPCs[1].Runs > 0 {
		fmt.Fprintf(w, "\nID tokens, in the same rounds: GenerateUserSig with an app user's ID token from bench/oidcissuer (verified once, then found by its hash), against the bearer-token call\n")
		printRows(w, it)
		fmt.Fprintf(w, "(ratios here are to the first row, GenerateUserSig with a bearer token; goal >= %.2f)\n", goalIDTokenRatio)
	}
	if rt := res.Redis; len(rt.RPCs) > 1 && rt.RPCs[1].Runs > 0 {
		fmt.Fprintf(w, "\nShared rate limits, in the same rounds: GenerateUserSig against a second usersigd whose caller's rate and rate_per_user are decided in Redis (rate_limits.backend: redis, a redis-server on loopback), against the first one's own limiter\n")
		printRows(w, rt)
		fmt.Fprintf(w, "(ratios here are to the first row, GenerateUserSig with the local limiter; goal >= %.2f. srv us/call of the second row is its usersigd's alone)\n", goalRedisRatio)
		printRedisVsLocal(w, rt.RPCs[0], rt.RPCs[1])
	}
	if len(res.Bare.RPCs) > 0 {
		fmt.Fprintf(w, "\nReference, in the same rounds: bench/bare, a bare grpc-go server (no interceptors, auth or logs) whose GenerateUserSig returns an answer made at start\n")
		printRows(w, res.Bare)
		fmt.Fprintln(w, "(its GenerateUserSig against its own floor: the ratio when a server adds nothing but the answer's bytes; no implementation can do better here)")
	}

	st := res.Sweep
	fmt.Fprintf(w, "\nSweep: -n %d per run; rps and p99 (ms) of the floor and GenerateUserSig\n", st.Requests)
	fmt.Fprintf(w, "%6s %6s   %9s %8s   %9s %8s   %9s %9s\n", "c", "conns", "floor rps", "p99", "gen rps", "p99", "rps/floor", "p99/floor")
	for _, c := range st.Cells {
		fmt.Fprintf(w, "%6d %6d   %9s %8s   %9s %8s   %9s %9s\n",
			c.Concurrency, c.Connections, num("%.0f", c.Floor.RPS), num("%.2f", c.Floor.P99Ms),
			num("%.0f", c.Gen.RPS), num("%.2f", c.Gen.P99Ms), num("%.2f", c.RPSRatio), num("%.2fx", c.P99Ratio))
	}
	if len(st.Skipped) > 0 {
		fmt.Fprintf(w, "skipped (c x conns): %s: %s\n", strings.Join(st.Skipped, ", "), st.SkipReason)
	}

	r := res.RSS
	fmt.Fprintf(w, "\nServer RSS (MiB)\n")
	fmt.Fprintf(w, "  idle after start                  %7s\n", num("%.1f", r.IdleStartMiB))
	fmt.Fprintf(w, "  main load, steady (median of %3d) %7s   max sample %s\n", r.MainSamples, num("%.1f", r.MainSteadyMiB), num("%.1f", r.MainMaxSampleMiB))
	fmt.Fprintf(w, "  main load, peak (VmHWM)           %7s\n", num("%.1f", r.MainPeakMiB))
	fmt.Fprintf(w, "  idle after the main load          %7s\n", num("%.1f", r.IdleAfterMainMiB))
	fmt.Fprintf(w, "  sweep, peak (VmHWM)               %7s\n", num("%.1f", r.SweepPeakMiB))
	fmt.Fprintf(w, "  %4d idle client connections      %7s   (%s before, %s KiB a connection; server fds %d -> %d; peak %s)\n",
		r.IdleConns, num("%.1f", r.IdleConnsMiB), num("%.1f", r.IdleConnsBeforeMiB), num("%+.1f", r.IdleConnsKiBPer),
		r.ServerFDsIdle, r.ServerFDsIdleConns, num("%.1f", r.IdleConnsPeakMiB))
	if !r.PeakReset {
		fmt.Fprintln(w, "  (VmHWM could not be reset between stages: each peak is the peak since the server started)")
	}

	fmt.Fprintf(w, "\nGoals (reported, not asserted)\n")
	for _, g := range res.Goals {
		v := num("%.2f", g.Value)
		if g.format == "%d" {
			v = fmt.Sprintf("%d", int(g.Value))
		}
		fmt.Fprintf(w, "  %-8s %-52s %10s  (target %s)\n", yes(g.Met), g.Name, v, g.Target)
	}
	fmt.Fprintf(w, "\nChecks (a failed check fails the run)\n")
	for _, c := range res.Checks {
		fmt.Fprintf(w, "  %-4s %-53s %s\n", map[bool]string{true: "ok", false: "FAIL"}[c.OK], c.Name, c.Detail)
	}
	if len(res.Problems) > 0 {
		fmt.Fprintf(w, "\nPROBLEMS (%d): the run is not valid\n", len(res.Problems))
		for _, p := range res.Problems {
			fmt.Fprintln(w, "  - "+p)
		}
	} else {
		fmt.Fprintf(w, "\nAll %d runs (ghz and vegeta) completed with zero errors.\n", len(res.Runs))
	}
}

// printRedisVsLocal prints the line comparing GenerateUserSig with its
// rates in Redis (r) and in the process (l).
func printRedisVsLocal(w io.Writer, l, r MainRow) {
	var per []string
	for _, f := range r.PerRound {
		per = append(per, num("%.2f", f.RPSRatio))
	}
	extra := "-"
	if l.ServerCPUPerCall > 0 && r.ServerCPUPerCall > 0 {
		extra = fmt.Sprintf("%+.0f", r.ServerCPUPerCall-l.ServerCPUPerCall)
	}
	fmt.Fprintf(w, "Redis vs local limiter: rps %s vs %s = %s (per round: %s; their median: %s; goal >= %.2f); p50 %s vs %s ms; p99 %s vs %s ms (%s); errors %d vs %d; server CPU %s vs %s us/call (%s with Redis), and redis-server's %s us/call\n",
		num("%.0f", r.RPS), num("%.0f", l.RPS), num("%.2f", r.RPSRatio), strings.Join(per, " "), num("%.2f", r.RoundRPSRatio), goalRedisRatio,
		num("%.2f", r.P50Ms), num("%.2f", l.P50Ms), num("%.2f", r.P99Ms), num("%.2f", l.P99Ms), num("%.2fx", r.P99Ratio),
		r.Errors, l.Errors, num("%.0f", r.ServerCPUPerCall), num("%.0f", l.ServerCPUPerCall), extra, num("%.0f", r.RedisCPUPerCall))
}

// printRows prints a main table's rows.
func printRows(w io.Writer, mt MainTable) {
	fmt.Fprintf(w, "%-25s %7s %7s %7s %6s %9s %9s %8s %6s  %s\n",
		"RPC", "rps", "p50 ms", "p99 ms", "errors", "rps/floor", "p99/floor", "srv us/", "client", "rps per round")
	fmt.Fprintf(w, "%-25s %7s %7s %7s %6s %9s %9s %8s %6s\n", "", "", "", "", "", "", "", "call", "CPUs")
	for _, r := range mt.RPCs {
		var per []string
		for _, pr := range r.PerRound {
			per = append(per, fmt.Sprintf("%.0f", pr.RPS))
		}
		fmt.Fprintf(w, "%-25s %7s %7s %7s %6d %9s %9s %8s %6s  %s\n",
			strings.TrimSuffix(label(r.RPC), " (floor)"), num("%.0f", r.RPS), num("%.2f", r.P50Ms), num("%.2f", r.P99Ms), r.Errors,
			num("%.2f", r.RPSRatio), num("%.2fx", r.P99Ratio), num("%.0f", r.ServerCPUPerCall), num("%.2f", r.ClientCores),
			strings.Join(per, " "))
	}
}
