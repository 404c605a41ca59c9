#!/usr/bin/env bash
# bench/run.sh: measure a real usersigd on loopback with ghz and vegeta.
#
#   bench/run.sh            full run (a few minutes): main table, sweep, RSS
#   bench/run.sh --smoke    tiny run for CI (well under a minute after the
#                           first tool install); fails only on errors or
#                           failed runs, never on speed
#   bench/run.sh --out DIR  write results.json there instead of bench/out
#
# It builds usersigd from this tree, starts it with a throwaway key and
# token on 127.0.0.1 (ports chosen by the kernel), drives it with ghz (gRPC)
# and vegeta (the HTTP/JSON API), reads its RSS from /proc, prints a table
# and writes bench/out/results.json (bench/out/smoke/ in smoke mode). Beside
# it, the main table also drives bench/bare, a bare grpc-go server that
# answers UserSigService with constant answers: the reference for what the
# API costs when the server adds nothing, GenerateUserSig with an app
# user's ID token (RS256 and ES256) from bench/oidcissuer, an OpenID Connect
# issuer on loopback, and GenerateUserSig against a second usersigd whose
# rate limits are shared through a redis-server on loopback (rate_limits:
# {backend: redis}). See bench/README.md.
#
# Sizes can be overridden from the environment: BENCH_MAIN_N, BENCH_WARMUP_N,
# BENCH_ROUNDS, BENCH_SWEEP_N, BENCH_SWEEP_C, BENCH_SWEEP_CONNS,
# BENCH_IDLE_CONNS, BENCH_HTTP_DURATION, BENCH_HTTP_WARMUP. BENCH_KEEP_WORK=1
# keeps the temporary directory (server log, raw reports) for a look
# afterwards.
set -euo pipefail

APP=1400000000
USER_ID=user_0001

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=full
OUT=

usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case $1 in
    --smoke) MODE=smoke ;;
    --out) OUT=${2:?--out needs a directory}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

if [[ $MODE == full ]]; then
  MAIN_N=${BENCH_MAIN_N:-30000}      # per run: ~2 s for the floor, ~3-4 s for an RPC here
  WARMUP_N=${BENCH_WARMUP_N:-3000}   # per RPC, before the first round
  ROUNDS=${BENCH_ROUNDS:-5}
  SWEEP_N=${BENCH_SWEEP_N:-10000}
  SWEEP_C=${BENCH_SWEEP_C:-"1 10 50 200"}
  SWEEP_CONNS=${BENCH_SWEEP_CONNS:-"1 4 100"}
  IDLE_CONNS=${BENCH_IDLE_CONNS:-1000}
  HTTP_DURATION=${BENCH_HTTP_DURATION:-3s} # per vegeta run: about as many calls as ghz's -n at HTTP's rate
  HTTP_WARMUP=${BENCH_HTTP_WARMUP:-1s}
  MAX_RUN=120s                       # a bound on one ghz or vegeta run, never reached in a sane run
  OUT=${OUT:-$REPO/bench/out}
else
  MAIN_N=${BENCH_MAIN_N:-500}
  WARMUP_N=${BENCH_WARMUP_N:-100}
  ROUNDS=${BENCH_ROUNDS:-1}
  SWEEP_N=${BENCH_SWEEP_N:-200}
  SWEEP_C=${BENCH_SWEEP_C:-"1 10"}
  SWEEP_CONNS=${BENCH_SWEEP_CONNS:-"1 4"}
  IDLE_CONNS=${BENCH_IDLE_CONNS:-50}
  HTTP_DURATION=${BENCH_HTTP_DURATION:-500ms}
  HTTP_WARMUP=${BENCH_HTTP_WARMUP:-200ms}
  MAX_RUN=30s
  OUT=${OUT:-$REPO/bench/out/smoke}
fi
MAIN_C=50
MAIN_CONNS=4

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

START_EPOCH=$(date +%s.%N)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/usersig-bench.XXXXXX")
mkdir -p "$WORK/bin" "$WORK/raw"
SERVER_PID='' IDLE_PID='' SAMPLER_PID='' BARE_PID='' ISSUER_PID='' SERVER2_PID='' REDIS_PID=''

# stop ends a process this script started: TERM, then KILL after 10 s.
stop() {
  local pid=$1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local rc=$?
  stop "$SAMPLER_PID"
  stop "$IDLE_PID"
  stop "$SERVER_PID"
  stop "$SERVER2_PID"
  stop "$REDIS_PID"
  stop "$BARE_PID"
  stop "$ISSUER_PID"
  if [[ ${BENCH_KEEP_WORK:-} == 1 ]]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "FAILED: line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

# meta KEY VALUE records a fact for the report (no tabs or newlines in VALUE).
meta() { printf '%s\t%s\n' "$1" "${2//$'\n'/ }" >>"$WORK/meta.tsv"; }
rss() { printf '%s\t%s\n' "$1" "$2" >>"$WORK/rss.tsv"; }

# shq prints its arguments as one shell-quoted command line.
shq() {
  local a out=()
  for a; do
    if [[ $a =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then out+=("$a"); else out+=("'${a//\'/\'\\\'\'}'"); fi
  done
  printf '%s' "${out[*]}"
}

# --- tools -----------------------------------------------------------------

command -v go >/dev/null || die "go is not on PATH"

# The pinned ghz, grpcurl and vegeta, in $REPO/.bin (.ci/tools.sh holds the
# versions).
# shellcheck source=../.ci/tools.sh
source "$REPO/.ci/tools.sh"
install_tools ghz grpcurl vegeta >&2 || die "installing ghz, grpcurl and vegeta"
# Debian's redis-server, the version the tests are pinned to.
install_redis >&2 || die "installing redis-server"
GHZ=$REPO/.bin/ghz
GRPCURL=$REPO/.bin/grpcurl
VEGETA=$REPO/.bin/vegeta
modversion() { tool_version "$@"; }

log "building usersigd and the bench helpers"
(cd "$REPO" && go build -o "$WORK/bin/" ./cmd/usersigd ./bench/idleconns ./bench/report ./bench/bare ./bench/oidcissuer) || die "go build"
# freeport prints a loopback port the kernel picks (for redis-server, which
# cannot pick its own and say it).
cat >"$WORK/freeport.go" <<'EOF'
package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	l.Close()
}
EOF
(cd "$WORK" && go build -o bin/freeport freeport.go) || die "go build freeport"

meta date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
meta start_epoch "$START_EPOCH"
meta mode "$MODE"
meta nproc "$(nproc)"
meta cpu_model "$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
meta kernel "$(uname -sr)"
meta go_version "$(go env GOVERSION)"
meta ghz_version "$(modversion "$GHZ")"
meta ghz_path "$GHZ"
meta grpcurl_version "$(modversion "$GRPCURL")"
meta grpcurl_path "$GRPCURL"
meta vegeta_version "$(modversion "$VEGETA")"
meta vegeta_path "$VEGETA"
meta redis_version "$(redis-server --version | sed -n 's/.* v=\([0-9.]*\).*/\1/p')"
meta git_commit "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
meta git_dirty "$([[ -n $(git -C "$REPO" --no-optional-locks status --porcelain 2>/dev/null) ]] && echo yes || echo no)"
meta cmd_build "go build -o \$WORK/bin/ ./cmd/usersigd ./bench/idleconns ./bench/report ./bench/bare ./bench/oidcissuer"

# --- the server ----------------------------------------------------------

# A throwaway key (64 hex characters, like a real Tencent key) and token.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/key"
chmod 600 "$WORK/key"
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')

# The OpenID Connect issuer on loopback, and an ID token of each of its keys
# for the same user the bearer-token calls mint for.
mkdir -m 700 "$WORK/idtokens"
"$WORK/bin/oidcissuer" -listen 127.0.0.1:0 -audience usersig-bench -sub "$USER_ID" -out "$WORK/idtokens" \
  >"$WORK/issuer.out" 2>"$WORK/issuer.err" &
ISSUER_PID=$!
meta cmd_issuer "oidcissuer -listen 127.0.0.1:0 -audience usersig-bench -sub $USER_ID -out \$WORK/idtokens"
ISSUER_URL=''
for _ in $(seq 100); do
  ISSUER_URL=$(sed -n 's/^listening //p' "$WORK/issuer.out")
  [[ -n $ISSUER_URL ]] && break
  kill -0 "$ISSUER_PID" 2>/dev/null || break
  sleep 0.1
done
[[ -n $ISSUER_URL ]] || { cat "$WORK/issuer.err" >&2; die "the OpenID Connect issuer did not start"; }
ID_TOKEN_RS256=$(cat "$WORK/idtokens/rs256.token")
ID_TOKEN_ES256=$(cat "$WORK/idtokens/es256.token")
meta issuer_url "$ISSUER_URL"

# write_config FILE [EXTRA] writes usersigd's config, with EXTRA (YAML)
# after it. The bench caller has a rate and a rate_per_user far above what
# the machine can reach, so that every call spends from both limiters and
# none is refused.
write_config() {
  cat >"$1" <<EOF
grpc:
  listen: 127.0.0.1:0
http:
  listen: 127.0.0.1:0
http_api:
  listen: 127.0.0.1:0
shutdown: {delay: 0s, timeout: 10s}
apps:
  - sdk_app_id: $APP
    default_ttl: 4320h
    max_ttl: 8760h
    keys:
      - id: primary
        file: $WORK/key
callers:
  - name: bench
    token_sha256: $(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)
    apps: [$APP]
    methods: [GenerateUserSig, VerifyUserSig, GeneratePrivateMapKey]
    rate: {per_second: 1000000, burst: 1000000}
    rate_per_user: {per_second: 1000000, burst: 1000000}
  # One user's ID token, 50 calls at once: as a backend with a workload
  # identity token calls, not as an app user does (8 in flight by default).
  - name: bench-app-users
    oidc: {issuer: "$ISSUER_URL", audience: usersig-bench, max_calls_per_user: 64}
    apps: [$APP]
    methods: [GenerateUserSig]
${2-}
EOF
}

# start_usersigd CONFIG LOG starts usersigd and waits until it logs that it
# serves; it sets STARTED_PID, STARTED_GRPC, STARTED_HTTP and STARTED_API.
start_usersigd() {
  local config=$1 logfile=$2 line
  "$WORK/bin/usersigd" --config "$config" 2>"$logfile" &
  STARTED_PID=$!
  STARTED_GRPC='' STARTED_HTTP='' STARTED_API=''
  for _ in $(seq 100); do
    kill -0 "$STARTED_PID" 2>/dev/null || { cat "$logfile" >&2; die "usersigd exited at start"; }
    line=$(grep -m1 '"msg":"serving"' "$logfile" || true)
    if [[ -n $line ]]; then
      STARTED_GRPC=$(sed -n 's/.*"grpc":"\([^"]*\)".*/\1/p' <<<"$line")
      STARTED_HTTP=$(sed -n 's/.*"http":"\([^"]*\)".*/\1/p' <<<"$line")
      STARTED_API=$(sed -n 's/.*"http_api":"\([^"]*\)".*/\1/p' <<<"$line")
      break
    fi
    sleep 0.1
  done
  [[ -n $STARTED_GRPC && -n $STARTED_HTTP && -n $STARTED_API ]] ||
    { cat "$logfile" >&2; die "usersigd did not say it was serving gRPC, HTTP and the HTTP API within 10 s"; }
}

write_config "$WORK/config.yaml"
log "starting usersigd (log: JSON lines to $WORK/server.log)"
start_usersigd "$WORK/config.yaml" "$WORK/server.log"
SERVER_PID=$STARTED_PID GRPC_ADDR=$STARTED_GRPC HTTP_ADDR=$STARTED_HTTP API_ADDR=$STARTED_API
meta cmd_server "usersigd --config \$WORK/config.yaml 2>\$WORK/server.log"
meta grpc_addr "$GRPC_ADDR"
meta http_addr "$HTTP_ADDR"
meta api_addr "$API_ADDR"
log "usersigd pid $SERVER_PID serving gRPC on $GRPC_ADDR, HTTP on $HTTP_ADDR, the HTTP API on $API_ADDR"

# A redis-server on a loopback port the kernel picks (freeport binds port
# 0 and lets it go; if another process takes the port meanwhile, redis
# fails to bind and the next try gets another one), nothing persisted.
mkdir -m 700 "$WORK/redis"
REDIS_ADDR=''
for _ in 1 2 3; do
  port=$("$WORK/bin/freeport") || die "freeport"
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$WORK/redis" \
    >"$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 100); do
    kill -0 "$REDIS_PID" 2>/dev/null || break
    if [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]]; then
      REDIS_ADDR=127.0.0.1:$port
      break
    fi
    sleep 0.1
  done
  [[ -n $REDIS_ADDR ]] && break
  stop "$REDIS_PID"
  REDIS_PID=
done
[[ -n $REDIS_ADDR ]] || { cat "$WORK/redis.log" >&2; die "redis-server did not start"; }
meta redis_addr "$REDIS_ADDR"
meta cmd_redis "redis-server --bind 127.0.0.1 --port ${REDIS_ADDR##*:} --save '' --appendonly no --dir \$WORK/redis"

# The second usersigd: the same config, its rates shared through Redis.
write_config "$WORK/config-redis.yaml" "rate_limits:
  backend: redis
  redis: {addr: \"$REDIS_ADDR\"}"
log "starting a second usersigd with rate_limits.backend: redis (log: $WORK/server-redis.log)"
start_usersigd "$WORK/config-redis.yaml" "$WORK/server-redis.log"
SERVER2_PID=$STARTED_PID GRPC2_ADDR=$STARTED_GRPC HTTP2_ADDR=$STARTED_HTTP
meta cmd_server_redis "usersigd --config \$WORK/config-redis.yaml 2>\$WORK/server-redis.log"
meta grpc_addr_redis "$GRPC2_ADDR"
meta http_addr_redis "$HTTP2_ADDR"
log "usersigd pid $SERVER2_PID (Redis at $REDIS_ADDR, redis-server pid $REDIS_PID) serving gRPC on $GRPC2_ADDR, HTTP on $HTTP2_ADDR"

# The reference: a bare grpc-go server whose UserSigService returns answers
# made at start (bench/bare). Idle but for its own runs.
"$WORK/bin/bare" -listen 127.0.0.1:0 >"$WORK/bare.out" 2>"$WORK/bare.err" &
BARE_PID=$!
meta cmd_bare "bare -listen 127.0.0.1:0"
BARE_ADDR=''
for _ in $(seq 100); do
  BARE_ADDR=$(sed -n 's/^listening //p' "$WORK/bare.out")
  [[ -n $BARE_ADDR ]] && break
  kill -0 "$BARE_PID" 2>/dev/null || break
  sleep 0.1
done
[[ -n $BARE_ADDR ]] || { cat "$WORK/bare.err" >&2; die "the bare reference server did not start"; }
meta bare_addr "$BARE_ADDR"

# server_cpu PID prints a server's CPU time so far (user + system, all its
# threads), in clock ticks.
CLK_TCK=$(getconf CLK_TCK)
server_cpu() {
  local st
  read -r -a st <"/proc/$1/stat" # the name field, (usersigd), (bare) or (redis-server), has no spaces
  echo $((st[13] + st[14]))
}
status_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$SERVER_PID/status"; }
fds() { find "/proc/$SERVER_PID/fd" -mindepth 1 -maxdepth 1 | wc -l; }
# reset_peak resets VmHWM to the current RSS (needs Linux >= 4.0 and the
# right to write clear_refs; root has it), so each stage has its own peak.
HWM_RESET=yes
reset_peak() { echo 5 2>/dev/null >"/proc/$SERVER_PID/clear_refs" || HWM_RESET=no; }

# --- a ticket to verify -------------------------------------------------

AUTH="authorization: Bearer $TOKEN"
GEN_DATA="{\"sdk_app_id\": $APP, \"user_id\": \"$USER_ID\", \"ttl\": \"86400s\"}"
IDGEN_DATA="{\"sdk_app_id\": $APP, \"ttl\": \"86400s\"}"
PMK_DATA="{\"sdk_app_id\": $APP, \"user_id\": \"$USER_ID\", \"ttl\": \"86400s\", \"room_id\": 1234, \"privilege_map\": 255}"
minted=$("$GRPCURL" -plaintext -H "$AUTH" -d "$GEN_DATA" "$GRPC_ADDR" usersig.v1.UserSigService/GenerateUserSig) ||
  die "grpcurl GenerateUserSig"
meta mint_calls 1
# shellcheck disable=SC2016 # $TOKEN stands for the token in the record
meta cmd_mint "$(shq grpcurl -plaintext -H 'authorization: Bearer $TOKEN' -d "$GEN_DATA" "$GRPC_ADDR" usersig.v1.UserSigService/GenerateUserSig)"
TICKET=$(sed -n 's/.*"userSig": *"\([^"]*\)".*/\1/p' <<<"$minted")
[[ -n $TICKET ]] || die "no userSig in grpcurl's answer: $minted"
VERIFY_DATA="{\"sdk_app_id\": $APP, \"user_id\": \"$USER_ID\", \"user_sig\": \"$TICKET\"}"
# VerifyUserSig answers OK for a bad ticket too (valid: false), so ghz would
# not notice one: check once that this ticket verifies.
verdict=$("$GRPCURL" -plaintext -H "$AUTH" -d "$VERIFY_DATA" "$GRPC_ADDR" usersig.v1.UserSigService/VerifyUserSig) ||
  die "grpcurl VerifyUserSig"
meta verify_calls 1
grep -q '"valid": *true' <<<"$verdict" || die "the minted ticket does not verify: $verdict"
log "minted a ticket with grpcurl; it verifies"

# http_call ADDR PATH [BODY] prints the body of a GET of PATH, or with BODY
# of a POST of BODY with the token, and fails unless the answer is 200.
# curl if present, else HTTP/1.0 over bash's /dev/tcp.
http_call() {
  local addr=$1 path=$2 body=${3-} resp
  if command -v curl >/dev/null; then
    if [[ -n $body ]]; then
      curl -sS --fail-with-body -H "$AUTH" -H 'content-type: application/json' --data-binary "$body" "http://$addr$path"
    else
      curl -sS --fail-with-body "http://$addr$path"
    fi
    return
  fi
  exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}" || return 1
  if [[ -n $body ]]; then
    printf 'POST %s HTTP/1.0\r\nHost: %s\r\n%s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
      "$path" "$addr" "$AUTH" "${#body}" "$body" >&3
  else
    printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$addr" >&3
  fi
  resp=$(cat <&3)
  exec 3>&-
  sed '1,/^\r$/d' <<<"$resp"
  [[ $resp == HTTP/1.?' 200 '* ]]
}

# The same ticket over the HTTP/JSON API, once, so that a broken API fails
# here with its answer rather than as a count of errors.
minted=$(http_call "$API_ADDR" /v1/usersig:generate "$GEN_DATA") || die "POST /v1/usersig:generate: $minted"
grep -q '"userSig": *"[^"]' <<<"$minted" || die "no userSig in the HTTP API's answer: $minted"
meta mint_calls 2
# shellcheck disable=SC2016 # $TOKEN stands for the token in the record
meta cmd_mint_http "$(shq curl -sS --fail-with-body -H 'authorization: Bearer $TOKEN' -H 'content-type: application/json' --data-binary "$GEN_DATA" "http://$API_ADDR/v1/usersig:generate")"
log "minted a ticket over the HTTP API"

# And with an ID token, for the token's user.
minted=$("$GRPCURL" -plaintext -H "authorization: Bearer $ID_TOKEN_ES256" -d "$IDGEN_DATA" "$GRPC_ADDR" usersig.v1.UserSigService/GenerateUserSig) ||
  die "grpcurl GenerateUserSig with an ID token"
grep -q "\"userId\": *\"$USER_ID\"" <<<"$minted" || die "the ID token's ticket is not for $USER_ID: $minted"
meta mint_calls 3
log "minted a ticket with an ID token"

# And from the Redis-backed server, once: a Redis that refuses or a
# limiter that does fails here with its answer.
minted=$("$GRPCURL" -plaintext -H "$AUTH" -d "$GEN_DATA" "$GRPC2_ADDR" usersig.v1.UserSigService/GenerateUserSig) ||
  die "grpcurl GenerateUserSig against the Redis-backed usersigd"
grep -q '"userSig": *"[^"]' <<<"$minted" || die "no userSig in the Redis-backed usersigd's answer: $minted"
meta mint_calls_redis 1
log "minted a ticket from the Redis-backed usersigd"

sleep 1
rss idle_start "$(status_kb VmRSS)"
rss fds_start "$(fds)"

# --- ghz -----------------------------------------------------------------

method_of() {
  case $1 in
    floor | bfloor) echo grpc.health.v1.Health/Check ;;
    gen | rgen | bgen | igenrs | igenes) echo usersig.v1.UserSigService/GenerateUserSig ;;
    verify) echo usersig.v1.UserSigService/VerifyUserSig ;;
    pmk) echo usersig.v1.UserSigService/GeneratePrivateMapKey ;;
  esac
}
data_of() {
  case $1 in
    floor | bfloor) echo '{}' ;;
    gen | rgen | bgen) echo "$GEN_DATA" ;;
    igenrs | igenes) echo "$IDGEN_DATA" ;; # the user is the token's
    verify) echo "$VERIFY_DATA" ;;
    pmk) echo "$PMK_DATA" ;;
  esac
}

# measure PID FILE CMD... runs a load generator once under timeout(1)
# with SIGINT (which makes ghz and vegeta stop and still write what they
# have), its stderr to $WORK/raw/FILE.stderr, and sets RUN_RC, RUN_WALL
# (seconds), RUN_SERVER_CPU (the CPU seconds of the server PID meanwhile)
# and RUN_CLIENT_CPU (the command's own, from bash's time). With
# MEASURE_REDIS=1 it also sets RUN_REDIS_CPU, redis-server's CPU seconds
# meanwhile (else it is empty).
measure() {
  local pid=$1 file=$2 t0 t1 cpu0 cpu1 rcpu0='' rcpu1 TIMEFORMAT='%U %S'
  shift 2
  RUN_RC=0 RUN_REDIS_CPU=''
  [[ ${MEASURE_REDIS:-} == 1 ]] && rcpu0=$(server_cpu "$REDIS_PID")
  cpu0=$(server_cpu "$pid")
  t0=$(date +%s.%N)
  { time timeout -s INT -k 10s "$MAX_RUN" "$@" 2>"$WORK/raw/$file.stderr"; } 2>"$WORK/raw/$file.time" || RUN_RC=$?
  t1=$(date +%s.%N)
  cpu1=$(server_cpu "$pid")
  if [[ -n $rcpu0 ]]; then
    rcpu1=$(server_cpu "$REDIS_PID")
    RUN_REDIS_CPU=$(awk -v a="$rcpu0" -v b="$rcpu1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / hz }')
  fi
  RUN_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  RUN_SERVER_CPU=$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / hz }')
  RUN_CLIENT_CPU=$(awk 'NF == 2 { printf "%.2f", $1 + $2 }' "$WORK/raw/$file.time")
  RUN_CLIENT_CPU=${RUN_CLIENT_CPU:-0}
}

# record PHASE RPC METHOD ROUND C CONNS N FILE COMMAND appends the run just
# measured to runs.tsv (COMMAND with the work directory and the token
# masked), and redis-server's CPU seconds over it (empty when not measured).
record() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" \
    "$RUN_RC" "$RUN_WALL" "$RUN_SERVER_CPU" "$RUN_CLIENT_CPU" \
    "$(sed "s|$WORK|\$WORK|g; s|Bearer $TOKEN|Bearer \$TOKEN|g; s|Bearer $ID_TOKEN_RS256|Bearer \$ID_TOKEN_RS256|g; s|Bearer $ID_TOKEN_ES256|Bearer \$ID_TOKEN_ES256|g" <<<"$9")" \
    "$RUN_REDIS_CPU" >>"$WORK/runs.tsv"
}

# ghz_run PHASE RPC ROUND C CONNS N runs ghz once and records it in runs.tsv.
# A failing ghz is recorded, not fatal: the report names it and the script
# exits non-zero at the end.
ghz_run() {
  local phase=$1 rpc=$2 round=$3 c=$4 conns=$5 n=$6
  local method file args rps codes
  local addr=$GRPC_ADDR pid=$SERVER_PID redis=0
  case $rpc in
    bfloor | bgen) addr=$BARE_ADDR pid=$BARE_PID ;;     # the bare reference
    rgen) addr=$GRPC2_ADDR pid=$SERVER2_PID redis=1 ;; # the Redis-backed usersigd
  esac
  method=$(method_of "$rpc")
  file="$phase-$rpc-r$round-c$c-k$conns.json"
  # The method is resolved by server reflection (open, once per run).
  # Templates are off: the data is constant, and ghz then spends less CPU.
  args=(--insecure --call "$method" -d "$(data_of "$rpc")"
    -c "$c" --connections "$conns" -n "$n"
    --disable-template-functions --disable-template-data -O json -o "$WORK/raw/$file")
  case $rpc in
    floor | bfloor) ;;
    igenrs) args+=(-m "{\"authorization\":\"Bearer $ID_TOKEN_RS256\"}") ;;
    igenes) args+=(-m "{\"authorization\":\"Bearer $ID_TOKEN_ES256\"}") ;;
    *) args+=(-m "{\"authorization\":\"Bearer $TOKEN\"}") ;;
  esac
  args+=("$addr")
  # The time bound is timeout(1)'s, not ghz -x: in ghz v0.121.0 -x turns
  # into -z (it drops -n and runs for the whole duration, cutting the last
  # calls off as errors).
  MEASURE_REDIS=$redis measure "$pid" "$file" "$GHZ" "${args[@]}"
  rps=$(sed -n 's/.*"rps":\([0-9]*\).*/\1/p' "$WORK/raw/$file" 2>/dev/null || true)
  codes=$(sed -n 's/.*"statusCodeDistribution":{\([^}]*\)}.*/\1/p' "$WORK/raw/$file" 2>/dev/null || true)
  record "$phase" "$rpc" "$method" "$round" "$c" "$conns" "$n" "$file" "$(shq ghz "${args[@]}")"
  if ((RUN_RC != 0)); then
    log "$phase $rpc round $round c=$c conns=$conns: ghz exited $RUN_RC: $(head -c 500 "$WORK/raw/$file.stderr")"
  else
    log "$phase $rpc round $round c=$c conns=$conns n=$n: ${rps:-?} rps, status ${codes:-?}"
  fi
}

# --- vegeta ---------------------------------------------------------------

# vegeta's targets: POST /v1/usersig:generate with the token (hgen), and the
# HTTP floor, GET /healthz on the metrics listener: the same net/http
# stack in the same process with a trivial handler, no auth, not logged
# (hfloor). The token stays in a file of the temporary directory, not on a
# command line.
printf '%s' "$GEN_DATA" >"$WORK/gen.json"
printf 'POST http://%s/v1/usersig:generate\n%s\nContent-Type: application/json\n@%s\n' \
  "$API_ADDR" "$AUTH" "$WORK/gen.json" >"$WORK/hgen.targets"
chmod 600 "$WORK/hgen.targets"
printf 'GET http://%s/healthz\n' "$HTTP_ADDR" >"$WORK/hfloor.targets"
# shellcheck disable=SC2016 # $TOKEN stands for the token in the record
meta http_target_hgen "POST http://$API_ADDR/v1/usersig:generate, authorization: Bearer \$TOKEN, content-type: application/json, body $GEN_DATA"
meta http_target_hfloor "GET http://$HTTP_ADDR/healthz"

# vegeta_run PHASE RPC ROUND DURATION runs vegeta once, a closed loop like
# ghz's: -rate 0 (no pacing: each worker sends its next request when its
# answer is in) with MAIN_C workers from the start, over HTTP/1.1 with
# keep-alive, so one connection a worker. It records the run in runs.tsv
# as ghz_run does, with 0 for the request count (vegeta runs for a
# duration; the report reads the count from vegeta's).
vegeta_run() {
  local phase=$1 rpc=$2 round=$3 duration=$4
  local method file bin args summary
  case $rpc in
    hfloor) method='GET /healthz' ;;
    hgen) method=usersig.v1.UserSigService/GenerateUserSig ;; # the call the route makes
  esac
  file="$phase-$rpc-r$round-c$MAIN_C-k$MAIN_C.json"
  bin=${file%.json}.bin
  # -max-body 0: answers are read to the end but not kept (ghz keeps none
  # either); a failed one still records its HTTP status.
  args=(attack -targets "$WORK/$rpc.targets" -rate 0 -workers "$MAIN_C" -max-workers "$MAIN_C"
    -duration "$duration" -max-body 0 -output "$WORK/raw/$bin")
  measure "$SERVER_PID" "$file" "$VEGETA" "${args[@]}"
  # vegeta's own summary, as JSON (the report reads it); no file when
  # vegeta wrote no results.
  "$VEGETA" report -type json -output "$WORK/raw/$file" "$WORK/raw/$bin" 2>>"$WORK/raw/$file.stderr" ||
    rm -f "$WORK/raw/$file"
  summary=$(sed -n 's/.*"requests":\([0-9]*\).*"status_codes":\({[^}]*}\).*/\1 requests, status \2/p' "$WORK/raw/$file" 2>/dev/null || true)
  record "$phase" "$rpc" "$method" "$round" "$MAIN_C" "$MAIN_C" 0 "$file" "$(shq vegeta "${args[@]}")"
  if ((RUN_RC != 0)); then
    log "$phase $rpc round $round c=$MAIN_C: vegeta exited $RUN_RC: $(head -c 500 "$WORK/raw/$file.stderr")"
  else
    log "$phase $rpc round $round c=$MAIN_C ${duration}: ${summary:-?}"
  fi
}

# load_run PHASE RPC ROUND N runs one RPC of the main table with its tool:
# ghz with -n N, or vegeta for HTTP_WARMUP or HTTP_DURATION.
load_run() {
  local phase=$1 rpc=$2 round=$3 n=$4
  case $rpc in
    hfloor | hgen)
      vegeta_run "$phase" "$rpc" "$round" "$([[ $phase == warmup ]] && echo "$HTTP_WARMUP" || echo "$HTTP_DURATION")"
      ;;
    *) ghz_run "$phase" "$rpc" "$round" "$MAIN_C" "$MAIN_CONNS" "$n" ;;
  esac
}

# The main table's RPCs, in the order each round runs them: usersigd's over
# gRPC, its GenerateUserSig against the Redis-backed usersigd (rgen), with
# an ID token (RS256, ES256) and over HTTP right after the bearer-token
# one, the HTTP floor, then the bare reference.
RPCS=(floor gen rgen igenrs igenes hgen hfloor verify pmk bfloor bgen)
meta main_c "$MAIN_C"
meta main_conns "$MAIN_CONNS"
meta main_n "$MAIN_N"
meta warmup_n "$WARMUP_N"
meta rounds "$ROUNDS"
meta http_duration "$HTTP_DURATION"
meta http_warmup "$HTTP_WARMUP"
meta http_workers "$MAIN_C"
meta order "${RPCS[*]}"
meta max_run "$MAX_RUN"

# --- 1. main table, with RSS sampled -----------------------------------

reset_peak
(
  # VmRSS four times a second, with bash builtins only.
  while [[ -r /proc/$SERVER_PID/status ]]; do
    while read -r k v _; do [[ $k == VmRSS: ]] && { echo "$v"; break; }; done <"/proc/$SERVER_PID/status"
    sleep 0.25
  done
) >"$WORK/rss-samples" 2>/dev/null &
SAMPLER_PID=$!

log "main table: warm-up ($WARMUP_N per gRPC RPC, $HTTP_WARMUP per HTTP one), then $ROUNDS round(s) of ${RPCS[*]} with -n $MAIN_N (vegeta: $HTTP_DURATION)"
for rpc in "${RPCS[@]}"; do load_run warmup "$rpc" 0 "$WARMUP_N"; done
for round in $(seq "$ROUNDS"); do
  for rpc in "${RPCS[@]}"; do load_run main "$rpc" "$round" "$MAIN_N"; done
done
stop "$SAMPLER_PID"
SAMPLER_PID=
stop "$BARE_PID"
BARE_PID=
# The Redis-backed server's view and Redis's count of the scripts it ran,
# then stop them: only the main table uses them.
http_call "$HTTP2_ADDR" /metrics >"$WORK/metrics-redis.txt" || log "could not read the Redis-backed usersigd's /metrics"
redis-cli -h 127.0.0.1 -p "${REDIS_ADDR##*:}" info commandstats >"$WORK/redis-commandstats.txt" ||
  log "could not read redis-server's commandstats"
stop "$SERVER2_PID"
SERVER2_PID=
stop "$REDIS_PID"
REDIS_PID=
rss main_hwm "$(status_kb VmHWM)"
sleep 2
rss idle_after_main "$(status_kb VmRSS)"

# --- 2. sweep ------------------------------------------------------------

meta sweep_n "$SWEEP_N"
meta sweep_c "$SWEEP_C"
meta sweep_conns "$SWEEP_CONNS"
skipped=()
reset_peak
log "sweep: c in {$SWEEP_C} x connections in {$SWEEP_CONNS}, -n $SWEEP_N"
for c in $SWEEP_C; do
  for k in $SWEEP_CONNS; do
    if ((k > c)); then skipped+=("${c}x$k"); continue; fi
    for rpc in floor gen; do ghz_run sweep "$rpc" 0 "$c" "$k" "$SWEEP_N"; done
  done
done
meta sweep_skipped "${skipped[*]}"
((${#skipped[@]} == 0)) || log "sweep: skipped c x conns ${skipped[*]} (ghz needs -c >= --connections)"
rss sweep_hwm "$(status_kb VmHWM)"

# --- 3. idle connections -------------------------------------------------

sleep 2
reset_peak
rss idleconns_n "$IDLE_CONNS"
meta idleconns_n "$IDLE_CONNS"
rss idleconns_before "$(status_kb VmRSS)"
rss fds_idle "$(fds)"
log "opening $IDLE_CONNS idle client connections"
"$WORK/bin/idleconns" -addr "$GRPC_ADDR" -n "$IDLE_CONNS" -hold 120s >"$WORK/idleconns.out" 2>"$WORK/idleconns.err" &
IDLE_PID=$!
meta cmd_idleconns "idleconns -addr $GRPC_ADDR -n $IDLE_CONNS -hold 120s"
for _ in $(seq 600); do
  grep -q '^ready' "$WORK/idleconns.out" && break
  kill -0 "$IDLE_PID" 2>/dev/null || break
  sleep 0.1
done
if grep -q '^ready' "$WORK/idleconns.out"; then
  sleep 1
  rss idleconns "$(status_kb VmRSS)"
  rss idleconns_hwm "$(status_kb VmHWM)"
  rss fds_idleconns "$(fds)"
  rss idleconns_ok yes
else
  log "idleconns did not get its connections up: $(head -c 500 "$WORK/idleconns.err")"
  rss idleconns_ok no
fi
stop "$IDLE_PID"
IDLE_PID=
rss hwm_reset "$HWM_RESET"

# --- the server's view, then stop it -----------------------------------

http_call "$HTTP_ADDR" /metrics >"$WORK/metrics.txt" || log "could not read /metrics"
stop "$SERVER_PID"
SERVER_PID=

mkdir -p "$OUT"
rm -rf "$OUT/raw" "$OUT/results.json" "$OUT/results.txt"
rc=0
"$WORK/bin/report" -work "$WORK" -out "$OUT" -mode "$MODE" | tee "$OUT/results.txt" || rc=${PIPESTATUS[0]}
log "$MODE run took $(awk -v a="$START_EPOCH" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }') s; exit $rc"
exit "$rc"
