#!/usr/bin/env bash
# Smoke test of the built usersigd binary, driven with grpcurl the way an
# operator would type it: every RPC, the auth failures, bad input, metrics,
# and the tickets checked against Tencent's official Node.js library
# (tls-sig-api-v2 from npm): our tickets pass its HMAC rule, and its
# tickets pass our VerifyUserSig.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "smoke: FAIL: $*" >&2; [ -f "$work/server.log" ] && tail -20 "$work/server.log" >&2; exit 1; }
pass() { echo "smoke: ok: $*"; }

key=5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
hash=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
printf '%s\n' "$key" > "$work/key"
chmod 600 "$work/key"
cat > "$work/config.yaml" <<YAML
grpc: {listen: "127.0.0.1:0"}
http: {listen: "127.0.0.1:0"}
apps:
  - sdk_app_id: 1400000000
    default_ttl: 4320h
    max_ttl: 8760h
    keys: [{id: primary, file: "$work/key"}]
callers:
  - name: smoke
    token_sha256: $hash
    apps: [1400000000]
    methods: [GenerateUserSig, VerifyUserSig, GeneratePrivateMapKey]
YAML

go build -o "$work/usersigd" ./cmd/usersigd
"$work/usersigd" --config "$work/config.yaml" 2> "$work/server.log" &
pid=$!
for _ in $(seq 100); do
  grep -q '"msg":"serving"' "$work/server.log" && break
  sleep 0.1
done
grep -q '"msg":"serving"' "$work/server.log" || fail "usersigd did not start"
# Port 0: the kernel picks free ports, and the "serving" line names them.
serving=$(grep -m1 '"msg":"serving"' "$work/server.log")
addr=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["grpc"])' "$serving")
http_addr=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["http"])' "$serving")
# On loopback, plaintext gRPC is fine: no warning (cmd/usersigd tests the other side).
grep -q 'without TLS' "$work/server.log" && fail "a plaintext warning on loopback"

call() { # call METHOD JSON [extra grpcurl args...]: prints the reply; never fails
  local m=$1 d=$2; shift 2
  grpcurl -plaintext "$@" -d "$d" "$addr" "usersig.v1.UserSigService/$m" 2>&1 || true
}
auth=(-H "authorization: Bearer $token")
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

grpcurl -plaintext "$addr" list | grep -qx usersig.v1.UserSigService || fail "grpcurl list"
grpcurl -plaintext "$addr" grpc.health.v1.Health/Check | grep -q SERVING || fail "health"
pass "grpcurl list and health, without a token"

out=$(call GenerateUserSig '{"user_id": "alice", "ttl": "86400s"}' "${auth[@]}")
sig=$(field userSig <<<"$out") || fail "GenerateUserSig: $out"
pass "GenerateUserSig"

# Tencent's official Node.js library, pinned.
npmdir="$work/npm"
mkdir -p "$npmdir"
(cd "$npmdir" && npm install --silent --no-audit --no-fund tls-sig-api-v2@1.0.2 >/dev/null) || fail "npm install tls-sig-api-v2"
node_check() { NODE_PATH="$npmdir/node_modules" node "$root/.ci/tencent-node.js" "$@"; }
node_check accept "$key" "$sig" || fail "Tencent's Node.js library refuses our UserSig"
pass "our UserSig passes the HMAC rule of Tencent's official Node.js library"

out=$(call VerifyUserSig "{\"user_id\": \"alice\", \"user_sig\": \"$sig\"}" "${auth[@]}")
grep -q '"status": "VERIFY_STATUS_VALID"' <<<"$out" || fail "VerifyUserSig of our ticket: $out"
grep -q '"kind": "TICKET_KIND_USER_SIG"' <<<"$out" || fail "VerifyUserSig of our ticket, kind: $out"
pass "VerifyUserSig of our ticket: VALID, kind USER_SIG"

node_sig=$(node_check usersig "$key" bob) || fail "Tencent's Node.js library could not mint"
out=$(call VerifyUserSig "{\"user_id\": \"bob\", \"user_sig\": \"$node_sig\"}" "${auth[@]}")
grep -q '"status": "VERIFY_STATUS_VALID"' <<<"$out" || fail "VerifyUserSig of a Node.js ticket: $out"
node_pmk=$(node_check pmk "$key" bob) || fail "Tencent's Node.js library could not mint a PrivateMapKey"
out=$(call VerifyUserSig "{\"user_id\": \"bob\", \"user_sig\": \"$node_pmk\"}" "${auth[@]}")
grep -q '"roomId": 4321' <<<"$out" && grep -q '"privilegeMap": 42' <<<"$out" || fail "VerifyUserSig of a Node.js PrivateMapKey: $out"
grep -q '"kind": "TICKET_KIND_PRIVATE_MAP_KEY"' <<<"$out" || fail "VerifyUserSig of a Node.js PrivateMapKey, kind: $out"
pass "VerifyUserSig of tickets minted by Tencent's official Node.js library"

out=$(call GeneratePrivateMapKey '{"user_id": "alice", "ttl": "300s", "room_str": "live-1", "privilege_map": 255}' "${auth[@]}")
pmk=$(field privateMapKey <<<"$out") || fail "GeneratePrivateMapKey: $out"
node_check accept "$key" "$pmk" || fail "Tencent's Node.js library refuses our PrivateMapKey"
out=$(call VerifyUserSig "{\"user_id\": \"alice\", \"user_sig\": \"$pmk\"}" "${auth[@]}")
grep -q '"roomStr": "live-1"' <<<"$out" || fail "VerifyUserSig of our PrivateMapKey: $out"
# A PrivateMapKey is a login ticket too: VALID for its user, kind told apart.
grep -q '"status": "VERIFY_STATUS_VALID"' <<<"$out" && grep -q '"kind": "TICKET_KIND_PRIVATE_MAP_KEY"' <<<"$out" ||
  fail "VerifyUserSig of our PrivateMapKey, status and kind: $out"
pass "GeneratePrivateMapKey"

expect() { # expect CODE WHAT REPLY
  grep -q "Code: $1" <<<"$3" || fail "$2: want $1, got: $3"
  pass "$2 -> $1"
}
expect Unauthenticated "no token" "$(call GenerateUserSig '{"user_id": "alice"}')"
expect Unauthenticated "unknown token" "$(call GenerateUserSig '{"user_id": "alice"}' -H 'authorization: Bearer nope')"
expect Unauthenticated "Basic scheme" "$(call GenerateUserSig '{"user_id": "alice"}' -H 'authorization: Basic dTpw')"
expect PermissionDenied "another app" "$(call GenerateUserSig '{"sdk_app_id": 1400000001, "user_id": "alice"}' "${auth[@]}")"
expect InvalidArgument "bad user id" "$(call GenerateUserSig '{"user_id": "a b"}' "${auth[@]}")"
expect InvalidArgument "ttl 0" "$(call GenerateUserSig '{"user_id": "alice", "ttl": "0s"}' "${auth[@]}")"
expect InvalidArgument "fractional ttl" "$(call GenerateUserSig '{"user_id": "alice", "ttl": "1.5s"}' "${auth[@]}")"
expect InvalidArgument "ttl above max_ttl" "$(call GenerateUserSig '{"user_id": "alice", "ttl": "8761h"}' "${auth[@]}")"
expect InvalidArgument "privilege 0" "$(call GeneratePrivateMapKey '{"user_id": "alice", "room_id": 1}' "${auth[@]}")"
out=$(call VerifyUserSig '{"user_id": "alice", "user_sig": "garbage"}' "${auth[@]}")
grep -q VERIFY_STATUS_MALFORMED <<<"$out" || fail "a malformed ticket: $out"
pass "a malformed ticket is an answer: VERIFY_STATUS_MALFORMED"

curl -sf "http://$http_addr/metrics" | grep -q '^usersig_tickets_issued_total{caller="smoke"' || fail "/metrics"
pass "/metrics"

for s in "$key" "$token" "$sig" "$pmk"; do
  grep -qF -- "$s" "$work/server.log" && fail "a secret or a ticket is in the server's log"
done
pass "no key, token or ticket in the log"

kill -TERM "$pid"
wait "$pid" || fail "usersigd exited with $? after SIGTERM"
pid=
pass "SIGTERM: drained and exited 0"
