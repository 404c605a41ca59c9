#!/usr/bin/env bash
# usersigd's HTTP/JSON API with curl: every route, two errors, and the
# OpenAPI document. Each call is the plain curl line you would type; the
# script checks each answer and exits 1 if one is wrong (CI runs it:
# .ci/examples.sh). It never prints a ticket: they are credentials.
#
#   USERSIG_TOKEN=... bash usersig.sh
#
# USERSIG_URL defaults to http://127.0.0.1:8080 (`usersigd --dev`);
# USERSIG_APP, the SDKAppID, may be left out when the caller can use one app.
set -euo pipefail
url=${USERSIG_URL:-http://127.0.0.1:8080}
: "${USERSIG_TOKEN:?set USERSIG_TOKEN (usersigd --dev prints one)}"
app=${USERSIG_APP:+"\"sdk_app_id\": $USERSIG_APP, "}
failed=0

# post ROUTE JSON [curl args...]: POSTs JSON with the bearer token; sets
# $status (the HTTP status) and $body (the JSON answer).
post() {
  local route=$1 json=$2 out
  shift 2
  out=$(curl -sS --max-time 10 -w '\n%{http_code}' -H "Authorization: Bearer $USERSIG_TOKEN" \
    -H 'Content-Type: application/json' -d "$json" "$@" "$url$route")
  status=${out##*$'\n'} body=${out%$'\n'*}
}
# field NAME: a string or number field of $body (flat JSON; a sketch, not a parser).
field() { sed -n 's/.*"'"$1"'": *"\{0,1\}\([^",}]*\).*/\1/p' <<<"$body" | head -1; }
# check WHAT STATUS REGEX: the last answer has that status and its body matches.
check() {
  if [ "$status" = "$2" ] && grep -Eq "$3" <<<"$body"; then
    echo "ok: $1: HTTP $status"
  else
    echo "FAIL: $1: want HTTP $2 and /$3/, got HTTP $status: $body"
    failed=1
  fi
}

# A UserSig for alice, valid a day.
post /v1/usersig:generate "{$app\"user_id\": \"alice\", \"ttl\": \"86400s\"}"
check "POST /v1/usersig:generate" 200 '"userSig": ?"[^"]+"'
sig=$(field userSig)
echo "    sdkAppId $(field sdkAppId) (a uint64: a JSON string), expireTime $(field expireTime), userSig ${#sig} characters"

# Verify it. A bad ticket is a 200 answer with "valid": false and a status.
post /v1/usersig:verify "{$app\"user_id\": \"alice\", \"user_sig\": \"$sig\"}"
check "POST /v1/usersig:verify" 200 '"status": ?"VERIFY_STATUS_VALID"'
post /v1/usersig:verify "{$app\"user_id\": \"alice\", \"user_sig\": \"garbage\"}"
check "POST /v1/usersig:verify, a malformed ticket" 200 '"valid": ?false'
echo "    status $(field status), malformedReason \"$(field malformedReason)\""

# A PrivateMapKey: room 1234, every privilege (255), five minutes.
post /v1/privatemapkey:generate "{$app\"user_id\": \"alice\", \"ttl\": \"300s\", \"room_id\": 1234, \"privilege_map\": 255}"
check "POST /v1/privatemapkey:generate" 200 '"privateMapKey": ?"[^"]+"'

# Errors: the status maps the gRPC code; the body has code, message, details.
post /v1/privatemapkey:generate "{$app\"user_id\": \"alice\", \"room_id\": 4294967303, \"privilege_map\": 255}"
check "room_id 4294967303 is refused, naming room_id" 400 '"field": ?"room_id"'
echo "    $body"
USERSIG_TOKEN=wrong post /v1/usersig:generate "{$app\"user_id\": \"alice\"}"
check "a wrong token" 401 '"code": ?16'

# The OpenAPI document: no token needed.
body=$(curl -sS --max-time 10 -w '\n%{http_code}' "$url/openapi.json")
status=${body##*$'\n'} body=${body%$'\n'*}
check "GET /openapi.json" 200 '"/v1/usersig:generate"'

[ "$failed" = 0 ] && echo "curl: all checks passed" || echo "curl: some checks failed"
exit "$failed"
