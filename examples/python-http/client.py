#!/usr/bin/env python3
"""A Python client of usersigd's HTTP/JSON API, with the standard library only.

It is documentation first and a test second: it calls every route, shows
the answers, reads the error bodies, and exits 1 if any answer is not what
it expects (CI runs it against the built server: .ci/examples.sh).

    USERSIG_TOKEN=... python3 client.py

Environment:
    USERSIG_URL            the HTTP/JSON API (default http://127.0.0.1:8080, as `usersigd --dev`)
    USERSIG_TOKEN          the caller's bearer token (`usersigd --dev` prints one)
    USERSIG_APP            the SDKAppID; may be empty when the caller can use one app only
    USERSIG_LIMITED_TOKEN  optional: the token of a caller with a rate limit of
                           burst 1, to show 429 with Retry-After and RetryInfo

The JSON is the proto's, as protojson writes it: requests may name fields
in snake_case (user_id) or lowerCamelCase (userId); answers use
lowerCamelCase, with every field present (valid: false), uint64 fields
(sdkAppId) as strings, Durations as "300s" and Timestamps as RFC 3339.
"""

import json
import os
import sys
import urllib.error
import urllib.request
from datetime import datetime

URL = os.environ.get("USERSIG_URL", "http://127.0.0.1:8080").rstrip("/")
TOKEN = os.environ.get("USERSIG_TOKEN", "")
APP = os.environ.get("USERSIG_APP", "")
LIMITED_TOKEN = os.environ.get("USERSIG_LIMITED_TOKEN", "")


class UserSigError(Exception):
    """An error answer: the HTTP status, and the body's gRPC code, message and details."""

    def __init__(self, status, body, retry_after):
        self.status = status
        self.code = body.get("code")  # the gRPC code: 3 INVALID_ARGUMENT, 16 UNAUTHENTICATED, ...
        self.message = body.get("message", "")
        self.details = body.get("details", [])  # google.rpc.BadRequest, google.rpc.RetryInfo
        self.retry_after = retry_after  # the Retry-After header (whole seconds) on 429, else None
        super().__init__(f"HTTP {status}: {self.message}")

    def detail(self, name):
        """The detail of type google.rpc.<name>, or None."""
        for d in self.details:
            if d.get("@type", "").endswith("/google.rpc." + name):
                return d
        return None

    def bad_field(self):
        """The field a google.rpc.BadRequest names, or None."""
        br = self.detail("BadRequest")
        return br["fieldViolations"][0]["field"] if br and br.get("fieldViolations") else None


def call(route, body, token=None):
    """POSTs the request message as JSON to a route; returns the answer, or raises UserSigError."""
    token = TOKEN if token is None else token
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    req = urllib.request.Request(URL + route, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            err = json.loads(raw)
        except ValueError:
            err = {"message": raw.decode(errors="replace")}
        raise UserSigError(e.code, err, e.headers.get("Retry-After")) from None


def parse_time(ts):
    """An RFC 3339 Timestamp ("2026-01-02T03:04:05Z") as a datetime."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


# ---- The checks ----
failures = 0


def check(what, ok, got=None):
    global failures
    if ok:
        print("ok: " + what)
    else:
        failures += 1
        print("FAIL: %s: got %s" % (what, json.dumps(got, default=str)))


def expect_error(what, status, route, body, token=None):
    """Makes a call that must fail with the HTTP status; returns the error."""
    try:
        call(route, body, token)
    except UserSigError as e:
        check("%s: HTTP %d" % (what, status), e.status == status, {"status": e.status, "message": e.message})
        print("    body: " + json.dumps({"code": e.code, "message": e.message, "details": e.details}))
        if e.retry_after is not None:
            print("    Retry-After: " + e.retry_after)
        return e
    check("%s: HTTP %d" % (what, status), False, "the call succeeded")
    return UserSigError(200, {}, None)


def main():
    if not TOKEN:
        raise SystemExit("set USERSIG_TOKEN (usersigd --dev prints one)")
    app = {"sdk_app_id": int(APP)} if APP else {}

    # POST /v1/usersig:generate. ttl is a Duration: "86400s".
    gen = call("/v1/usersig:generate", {**app, "user_id": "alice", "ttl": "86400s"})
    print(
        "generate: sdkAppId=%s userId=%s keyId=%s expireTime=%s userSig=(%d characters, a credential: never log it)"
        % (gen["sdkAppId"], gen["userId"], gen["keyId"], gen["expireTime"], len(gen["userSig"]))
    )
    check("generate: a userSig", isinstance(gen.get("userSig"), str) and gen["userSig"] != "", len(gen.get("userSig", "")))
    check("generate: sdkAppId, a uint64, is a JSON string", isinstance(gen["sdkAppId"], str), gen["sdkAppId"])
    lifetime = parse_time(gen["expireTime"]) - parse_time(gen["issueTime"])
    check("generate: ttl honoured", lifetime.total_seconds() == 86400, [gen["issueTime"], gen["expireTime"]])

    # lowerCamelCase works as well as snake_case in requests.
    camel = call("/v1/usersig:generate", {**app, "userId": "bob", "ttl": "60s"})
    check("generate with lowerCamelCase names (userId)", camel.get("userId") == "bob", camel.get("userId"))

    # POST /v1/usersig:verify. A ticket that fails is an answer (200), not an error.
    ver = call("/v1/usersig:verify", {**app, "user_id": "alice", "user_sig": gen["userSig"]})
    print("verify: valid=%s status=%s kind=%s tencentErrorCode=%s" % (ver["valid"], ver["status"], ver["kind"], ver["tencentErrorCode"]))
    check("verify: valid, VERIFY_STATUS_VALID", ver["valid"] is True and ver["status"] == "VERIFY_STATUS_VALID", ver)
    check("verify: kind TICKET_KIND_USER_SIG", ver["kind"] == "TICKET_KIND_USER_SIG", ver["kind"])

    bad = call("/v1/usersig:verify", {**app, "user_id": "alice", "user_sig": "garbage"})
    print("verify garbage: valid=%s status=%s malformedReason=%r" % (bad.get("valid"), bad.get("status"), bad.get("malformedReason")))
    check("verify garbage: \"valid\": false is present", bad.get("valid") is False, bad.get("valid"))
    check(
        "verify garbage: VERIFY_STATUS_MALFORMED, Tencent code 70003",
        bad["status"] == "VERIFY_STATUS_MALFORMED" and bad["tencentErrorCode"] == 70003,
        bad,
    )

    # POST /v1/privatemapkey:generate. room_id 1 to 4294967295 (a number or a
    # string), privilege_map 1 to 255 (255: everything).
    pmk = call("/v1/privatemapkey:generate", {**app, "user_id": "alice", "ttl": "300s", "room_id": 1234, "privilege_map": 255})
    print("privatemapkey: keyId=%s expireTime=%s privateMapKey=(%d characters)" % (pmk["keyId"], pmk["expireTime"], len(pmk["privateMapKey"])))
    pv = call("/v1/usersig:verify", {**app, "user_id": "alice", "user_sig": pmk["privateMapKey"]})
    grant = pv.get("privateMapKey", {})
    print("verify the PrivateMapKey: status=%s kind=%s privateMapKey=%s" % (pv["status"], pv["kind"], json.dumps(grant)))
    check(
        "privatemapkey: valid, for room 1234 with privileges 255",
        pv["status"] == "VERIFY_STATUS_VALID"
        and pv["kind"] == "TICKET_KIND_PRIVATE_MAP_KEY"
        and grant.get("roomId") == 1234
        and grant.get("privilegeMap") == 255,
        pv,
    )

    # The errors: the HTTP status maps the gRPC code, and the JSON body
    # carries the code, the message and the details.
    e = expect_error("room_id 4294967303 (above 2^32-1)", 400, "/v1/privatemapkey:generate", {**app, "user_id": "alice", "room_id": 4294967303, "privilege_map": 255})
    check("room_id 4294967303: code 3, BadRequest names room_id", e.code == 3 and e.bad_field() == "room_id", e.details)

    e = expect_error('user_id "a b"', 400, "/v1/usersig:generate", {**app, "user_id": "a b"})
    check('user_id "a b": BadRequest names user_id', e.bad_field() == "user_id", e.details)

    e = expect_error("an unknown field (usr_id)", 400, "/v1/usersig:generate", {**app, "usr_id": "alice"})
    check("an unknown field: the message names it", "usr_id" in e.message, e.message)

    e = expect_error("no token", 401, "/v1/usersig:generate", {**app, "user_id": "alice"}, token="")
    check("no token: code 16 UNAUTHENTICATED", e.code == 16, e.code)

    e = expect_error("an app the server does not have", 404, "/v1/usersig:generate", {"sdk_app_id": 1400000001, "user_id": "alice"})
    check("an app the server does not have: code 5 NOT_FOUND", e.code == 5, e.code)

    if LIMITED_TOKEN:
        # The caller's bucket holds 1 call: the second call at the latest is refused.
        try:
            call("/v1/usersig:generate", {**app, "user_id": "alice"}, token=LIMITED_TOKEN)
        except UserSigError:
            pass
        e = expect_error("over the rate limit", 429, "/v1/usersig:generate", {**app, "user_id": "alice"}, token=LIMITED_TOKEN)
        retry = e.detail("RetryInfo")
        check("over the rate limit: code 8, RetryInfo with a retryDelay", e.code == 8 and retry is not None and retry.get("retryDelay", "").endswith("s"), e.details)
        check("over the rate limit: Retry-After in whole seconds, at least 1", (e.retry_after or "").isdigit() and int(e.retry_after) >= 1, e.retry_after)
    else:
        print("(no USERSIG_LIMITED_TOKEN: the rate-limit example is not run)")

    # GET /openapi.json: the API described, from the same proto.
    with urllib.request.urlopen(URL + "/openapi.json", timeout=10) as resp:
        doc = json.load(resp)
    routes = sorted(doc.get("paths", {}))
    print("openapi.json: %s %s, routes %s" % ("swagger" if "swagger" in doc else "openapi", doc.get("swagger") or doc.get("openapi"), routes))
    check(
        "openapi.json describes the three routes",
        {"/v1/usersig:generate", "/v1/usersig:verify", "/v1/privatemapkey:generate"} <= set(routes),
        routes,
    )


if __name__ == "__main__":
    try:
        main()
    except (UserSigError, OSError, KeyError, ValueError) as err:
        failures += 1
        print("FAIL: %s: %s" % (type(err).__name__, err))
    print("python-http: all checks passed" if failures == 0 else "python-http: %d check(s) failed" % failures)
    sys.exit(0 if failures == 0 else 1)
