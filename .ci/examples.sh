#!/usr/bin/env bash
# The clients in other languages (examples/) run against the built
# usersigd: the Node.js gRPC client (@grpc/grpc-js, pinned by its
# package-lock.json), the Python HTTP/JSON client (standard library only)
# and the curl script. Each checks what it shows and exits non-zero on a
# wrong answer; this fails if any does.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
work=$(mktemp -d)
pid=
# stop ends usersigd: SIGTERM, then SIGKILL if it is still there after 30s.
stop() {
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null && echo "examples: usersigd ignored SIGTERM for 30s: killed" >&2
  wait "$pid"
}
cleanup() { [ -n "$pid" ] && { stop || true; }; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "examples: FAIL: $*" >&2; [ -f "$work/server.log" ] && tail -20 "$work/server.log" >&2; exit 1; }
pass() { echo "examples: ok: $*"; }

if ! command -v curl >/dev/null; then # smoke.sh needs it too; a fresh Debian may lack it
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || fail "curl is not installed (apt-get install curl)"
  echo "examples: installing curl with apt-get"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl) >/dev/null || fail "apt-get install curl"
fi
command -v node >/dev/null && command -v npm >/dev/null || fail "node and npm are not installed"

# npm ci first, in the background: it needs only the lockfile. No install
# scripts: none of these packages needs one (protobufjs's only checks the
# versions of its CLI's dependencies).
(cd examples/node-grpc && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) > "$work/npm.log" 2>&1 &
npm_pid=$!

# A config with two callers: "example", allowed everything, and "limited",
# whose bucket holds one call and refills in 100s, so that the examples can
# show RESOURCE_EXHAUSTED (HTTP 429) with its RetryInfo and Retry-After.
# Port 0 everywhere: the kernel picks, and the "serving" line names them.
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
limited=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/key"
chmod 600 "$work/key"
cat > "$work/config.yaml" <<YAML
grpc: {listen: "127.0.0.1:0"}
http: {listen: "127.0.0.1:0"}
http_api: {listen: "127.0.0.1:0"}
apps:
  - sdk_app_id: 1400000000
    default_ttl: 24h
    max_ttl: 8760h
    keys: [{id: primary, file: "$work/key"}]
callers:
  - name: example
    token_sha256: $(sha "$token")
    apps: ["*"]
    methods: [GenerateUserSig, VerifyUserSig, GeneratePrivateMapKey]
  - name: limited
    token_sha256: $(sha "$limited")
    apps: ["*"]
    methods: [GenerateUserSig, VerifyUserSig, GeneratePrivateMapKey]
    rate: {per_second: 0.01, burst: 1}
YAML

go build -o "$work/usersigd" ./cmd/usersigd
"$work/usersigd" --config "$work/config.yaml" > "$work/server.out" 2> "$work/server.log" &
pid=$!
for _ in $(seq 300); do
  grep -q '"msg":"serving"' "$work/server.log" && break
  kill -0 "$pid" 2>/dev/null || fail "usersigd exited"
  sleep 0.1
done
serving=$(grep -m1 '"msg":"serving"' "$work/server.log") || fail "usersigd did not start in 30s"
addr() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$serving" "$1"; }
grpc_addr=$(addr grpc)
api_addr=$(addr http_api)
pass "usersigd serving: gRPC on $grpc_addr, HTTP/JSON on $api_addr"

export USERSIG_APP=1400000000 USERSIG_TOKEN=$token USERSIG_LIMITED_TOKEN=$limited
# Each example gets a generous bound: a hang fails, slowness does not.
wait "$npm_pid" || { cat "$work/npm.log"; fail "npm ci in examples/node-grpc"; }
USERSIG_ADDR=$grpc_addr timeout 120 node examples/node-grpc/client.js || fail "examples/node-grpc"
pass "examples/node-grpc"
USERSIG_URL=http://$api_addr timeout 120 python3 examples/python-http/client.py || fail "examples/python-http"
pass "examples/python-http"
USERSIG_URL=http://$api_addr timeout 120 bash examples/curl/usersig.sh || fail "examples/curl"
pass "examples/curl"

for s in "$token" "$limited" "$(cat "$work/key")"; do
  grep -qF -- "$s" "$work/server.log" && fail "a key or token is in the server's log"
done
stop || fail "usersigd exited with $? after SIGTERM"
pid=
pass "all examples"
