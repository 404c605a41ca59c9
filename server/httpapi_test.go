package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
)

// apiConfig is the fixture with the HTTP API on a port the kernel picks.
var apiConfig = fixtureConfig + "http_api:\n  listen: 127.0.0.1:0\n"

// apiClient calls the HTTP API of a test server and remembers, for each
// call, the local address its connection came from.
type apiClient struct {
	ts   *testServer
	base string
	http *http.Client

	mu    sync.Mutex
	local string // the address of the last connection dialed
}

func newAPIClient(ts *testServer, scheme string, tc *tls.Config) *apiClient {
	c := &apiClient{ts: ts, base: scheme + "://" + ts.srv.APIAddr()}
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: tc != nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				c.mu.Lock()
				c.local = conn.LocalAddr().String()
				c.mu.Unlock()
			}
			return conn, err
		}}
	c.http = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ts.t.Cleanup(tr.CloseIdleConnections)
	return c
}

// apiAnswer is an HTTP answer: its status, headers and JSON body.
type apiAnswer struct {
	code   int
	header http.Header
	body   map[string]any
	raw    string
}

// call sends method path with body and headers ("Name: value").
func (c *apiClient) call(method, path, body string, headers ...string) apiAnswer {
	c.ts.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.ts.t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	return c.do(req)
}

func (c *apiClient) do(req *http.Request) apiAnswer {
	c.ts.t.Helper()
	resp, err := c.http.Do(req)
	if err != nil {
		c.ts.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := apiAnswer{code: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if len(raw) > 0 && resp.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			c.ts.t.Fatalf("%s %s: %d answer is not a JSON object: %v: %s", req.Method, req.URL.Path, resp.StatusCode, err, raw)
		}
	}
	for _, k := range []string{"userSig", "privateMapKey"} {
		if s, ok := a.body[k].(string); ok && len(s) > 16 {
			c.ts.seen.Store(s, true)
		}
	}
	return a
}

func (c *apiClient) post(path, body, token string, headers ...string) apiAnswer {
	c.ts.t.Helper()
	if token != "" {
		headers = append(headers, "Authorization: Bearer "+token)
	}
	return c.call(http.MethodPost, path, body, headers...)
}

// wantError checks an error answer: the HTTP status, the google.rpc.Status
// code, and when field is set a BadRequest detail naming it.
func wantError(t *testing.T, name string, a apiAnswer, httpStatus int, code codes.Code, field string) {
	t.Helper()
	if a.code != httpStatus {
		t.Errorf("%s: HTTP %d, want %d: %s", name, a.code, httpStatus, a.raw)
		return
	}
	if got, _ := a.body["code"].(float64); codes.Code(got) != code {
		t.Errorf("%s: body code %v, want %d (%s): %s", name, a.body["code"], code, code, a.raw)
	}
	if msg, _ := a.body["message"].(string); msg == "" {
		t.Errorf("%s: no message: %s", name, a.raw)
	}
	if _, ok := a.body["details"].([]any); !ok {
		t.Errorf("%s: no details list: %s", name, a.raw)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", name, ct)
	}
	if field == "" {
		return
	}
	for _, d := range a.body["details"].([]any) {
		d := d.(map[string]any)
		if d["@type"] != "type.googleapis.com/google.rpc.BadRequest" {
			continue
		}
		for _, v := range d["fieldViolations"].([]any) {
			if v.(map[string]any)["field"] == field {
				return
			}
		}
	}
	t.Errorf("%s: no google.rpc.BadRequest naming %s: %s", name, field, a.raw)
}

// TestHTTPAPIRoutes: each route takes its request as JSON, in snake_case
// or lowerCamelCase, and answers lowerCamelCase with every field, as
// grpcurl shows them; the tickets are the service's.
func TestHTTPAPIRoutes(t *testing.T) {
	ts := startServer(t, apiConfig)
	c := newAPIClient(ts, "http", nil)

	for _, body := range []string{`{"sdk_app_id": 1400000000, "user_id": "alice", "ttl": "3600s"}`, `{"sdkAppId": "1400000000", "userId": "alice", "ttl": "3600s"}`} {
		a := c.post("/v1/usersig:generate", body, tokBackend)
		if a.code != 200 || a.body["userId"] != "alice" || a.body["sdkAppId"] != "1400000000" || a.body["keyId"] != "primary" {
			t.Fatalf("generate %s: %d %s", body, a.code, a.raw)
		}
		if a.body["issueTime"] != "2025-06-15T15:06:40Z" || a.body["expireTime"] != "2025-06-15T16:06:40Z" {
			t.Errorf("generate: times %v %v", a.body["issueTime"], a.body["expireTime"])
		}
		sig := a.body["userSig"].(string)
		v := c.post("/v1/usersig:verify", `{"sdk_app_id": 1400000000, "user_id": "alice", "user_sig": "`+sig+`"}`, tokBackend)
		if v.code != 200 || v.body["valid"] != true || v.body["status"] != "VERIFY_STATUS_VALID" || v.body["kind"] != "TICKET_KIND_USER_SIG" {
			t.Errorf("verify: %d %s", v.code, v.raw)
		}
		// The same ticket over gRPC: the HTTP API minted a real one.
		r, err := ts.client.VerifyUserSig(ts.as(tokBackend), &usersigv1.VerifyUserSigRequest{SdkAppId: appA, UserId: "alice", UserSig: sig})
		if err != nil || !r.GetValid() {
			t.Errorf("the HTTP ticket over gRPC: %v %v", r, err)
		}
	}
	// A failed verification is an answer with every field: valid false.
	v := c.post("/v1/usersig:verify", `{"sdkAppId": 1400000000, "userId": "alice", "userSig": "not a ticket"}`, tokBackend)
	if v.code != 200 || v.body["valid"] != false || v.body["status"] != "VERIFY_STATUS_MALFORMED" || v.body["tencentErrorCode"] != float64(70003) || v.body["keyId"] != "" {
		t.Errorf("verify of garbage: %d %s", v.code, v.raw)
	}

	for _, body := range []string{`{"sdk_app_id": 1400000000, "user_id": "bob", "ttl": "300s", "room_id": 4294967295, "privilege_map": 42}`, `{"sdkAppId": 1400000000, "userId": "bob", "ttl": "300s", "roomId": "4294967295", "privilegeMap": 42}`} {
		p := c.post("/v1/privatemapkey:generate", body, tokBackend)
		if p.code != 200 || p.body["userId"] != "bob" {
			t.Fatalf("privatemapkey %s: %d %s", body, p.code, p.raw)
		}
		v := c.post("/v1/usersig:verify", `{"sdk_app_id": 1400000000, "user_id": "bob", "user_sig": "`+p.body["privateMapKey"].(string)+`"}`, tokBackend)
		pmk, _ := v.body["privateMapKey"].(map[string]any)
		if v.body["kind"] != "TICKET_KIND_PRIVATE_MAP_KEY" || pmk["roomId"] != float64(4294967295) || pmk["privilegeMap"] != float64(42) {
			t.Errorf("verify of the HTTP PrivateMapKey: %s", v.raw)
		}
	}
	p := c.post("/v1/privatemapkey:generate", `{"sdk_app_id": 1400000000, "user_id": "bob", "ttl": "300s", "room_str": "live-1", "privilege_map": 255}`, tokBackend)
	if p.code != 200 {
		t.Errorf("privatemapkey with room_str: %d %s", p.code, p.raw)
	}
}

// TestHTTPAPI64BitRoom: a room id or privilege map wider than 32 bits is
// refused over HTTP, as a number and as a string, never cut to 32 bits.
func TestHTTPAPI64BitRoom(t *testing.T) {
	ts := startServer(t, apiConfig)
	c := newAPIClient(ts, "http", nil)
	for _, tc := range []struct{ body, field string }{
		{`{"sdk_app_id": 1400000000, "user_id": "bob", "room_id": 4294967303, "privilege_map": 42}`, "room_id"},
		{`{"sdk_app_id": 1400000000, "user_id": "bob", "room_id": "4294967303", "privilege_map": 42}`, "room_id"},
		{`{"sdk_app_id": 1400000000, "user_id": "bob", "roomId": "18446744073709551615", "privilegeMap": 42}`, "room_id"},
		{`{"sdk_app_id": 1400000000, "user_id": "bob", "room_id": 7, "privilege_map": 4294967338}`, "privilege_map"},
	} {
		wantError(t, tc.body, c.post("/v1/privatemapkey:generate", tc.body, tokBackend), 400, codes.InvalidArgument, tc.field)
	}
	if n := len(ts.logs.lines(`"logger":"audit"`)); n != 0 {
		t.Errorf("%d tickets issued for refused rooms", n)
	}
}

// TestHTTPAPIErrors: each error's HTTP status, JSON body and details, for
// the service's errors and for those the gateway raises itself.
func TestHTTPAPIErrors(t *testing.T) {
	ts := startServer(t, apiConfig)
	c := newAPIClient(ts, "http", nil)
	gen := "/v1/usersig:generate"

	a := c.post(gen, `{"sdk_app_id": 1400000000, "user_id": "u1"}`, "")
	wantError(t, "no token", a, 401, codes.Unauthenticated, "")
	if h := a.header.Get("Www-Authenticate"); h != `Bearer realm="usersig"` {
		t.Errorf("401: WWW-Authenticate %q", h)
	}
	wantError(t, "unknown token", c.post(gen, `{"sdk_app_id": 1400000000, "user_id": "u1"}`, "nope"), 401, codes.Unauthenticated, "")
	wantError(t, "Basic scheme", c.post(gen, `{"sdk_app_id": 1400000000, "user_id": "u1"}`, "", "Authorization: Basic dTpw"), 401, codes.Unauthenticated, "")
	wantError(t, "method not allowed to the caller", c.post("/v1/privatemapkey:generate", `{"sdk_app_id": 1400000000, "user_id": "u_1", "room_id": 1, "privilege_map": 1}`, tokWeb), 403, codes.PermissionDenied, "")
	wantError(t, "another app", c.post(gen, `{"sdk_app_id": 1400000001, "user_id": "u_1"}`, tokWeb), 403, codes.PermissionDenied, "")
	wantError(t, "no such app", c.post("/v1/usersig:verify", `{"sdk_app_id": 1400009999, "user_id": "u1", "user_sig": "x"}`, tokOps), 404, codes.NotFound, "")
	wantError(t, "bad user id", c.post(gen, `{"sdk_app_id": 1400000000, "user_id": "a b"}`, tokBackend), 400, codes.InvalidArgument, "user_id")
	wantError(t, "ttl 0", c.post(gen, `{"sdk_app_id": 1400000000, "user_id": "u1", "ttl": "0s"}`, tokBackend), 400, codes.InvalidArgument, "ttl")
	wantError(t, "no room", c.post("/v1/privatemapkey:generate", `{"sdk_app_id": 1400000000, "user_id": "u1", "privilege_map": 1}`, tokBackend), 400, codes.InvalidArgument, "room")

	// Without credentials a POST is refused from its headers, before its
	// body is read (as the tap refuses a gRPC call): the answer comes
	// while the declared body has not been sent.
	raw, err := net.Dial("tcp", ts.srv.APIAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(raw, "POST /v1/usersig:generate HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n")
	line, err := bufio.NewReader(raw).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 401 ") {
		t.Errorf("a POST without credentials and with its body unsent: %q %v, want 401 at once", line, err)
	}

	// The gateway's own: bodies that are not the request's JSON.
	for _, tc := range []struct{ name, body, says string }{
		{"malformed JSON", `{"sdk_app_id": 1400000000, "user_id": "u1"`, "the request body is not valid JSON"},
		{"unknown field", `{"sdk_app_id": 1400000000, "user_id": "u1", "user": "x"}`, `the request body has unknown field "user" (line 1:`},
		{"duplicate field", `{"sdk_app_id": 1400000000, "user_id": "u1", "userId": "u2"}`, `duplicate field "userId"`},
		{"wrong type", `{"sdk_app_id": 1400000000, "user_id": 7}`, "in field userId"},
		{"not JSON", `user_id=u1`, "the request body is not valid JSON (line 1:1)"},
		// A ticket in the wrong field is not repeated in the answer.
		{"a ticket as the ttl", `{"sdk_app_id": 1400000000, "user_id": "u1", "ttl": "eJwtjVELgjAU` + strings.Repeat("A", 40) + `"}`, "the request body"},
	} {
		a := c.post(gen, tc.body, tokBackend)
		wantError(t, tc.name, a, 400, codes.InvalidArgument, "")
		if msg, _ := a.body["message"].(string); !strings.Contains(msg, tc.says) {
			t.Errorf("%s: message %q, want it to say %q", tc.name, msg, tc.says)
		}
		if strings.Contains(a.raw, "eJwtjVELgjAU") || strings.Contains(a.raw, `"u2"`) || strings.Contains(a.raw, "user_id=u1") {
			t.Errorf("%s: the answer repeats the request's values: %s", tc.name, a.raw)
		}
	}
	// Routing: no such path, and a route's path with another method.
	a = c.call(http.MethodGet, "/v1/nope", "")
	wantError(t, "no route", a, 404, codes.NotFound, "")
	a = c.call(http.MethodGet, gen, "", "Authorization: Bearer "+tokBackend)
	wantError(t, "GET on a POST route", a, 405, codes.Unimplemented, "")
	if a.header.Get("Allow") != "POST" {
		t.Errorf("405: Allow %q", a.header.Get("Allow"))
	}
	// X-HTTP-Method-Override does not turn a GET into a POST.
	wantError(t, "method override", c.call(http.MethodGet, gen, `{"sdk_app_id": 1400000000, "user_id": "u1"}`, "Authorization: Bearer "+tokBackend, "X-HTTP-Method-Override: POST"), 405, codes.Unimplemented, "")

	// Bodies over 64 KiB: declared, and streamed without a length.
	big := `{"sdk_app_id": 1400000000, "user_id": "u1", "user_sig": "` + strings.Repeat("x", 70<<10) + `"}`
	wantError(t, "65 KiB body", c.post("/v1/usersig:verify", big, tokBackend), 413, codes.InvalidArgument, "")
	req, _ := http.NewRequest(http.MethodPost, c.base+"/v1/usersig:verify", io.MultiReader(strings.NewReader(big)))
	req.ContentLength = -1 // chunked
	req.Header.Set("Authorization", "Bearer "+tokBackend)
	wantError(t, "65 KiB chunked body", c.do(req), 413, codes.InvalidArgument, "")
	// Under 64 KiB of JSON but over what the gRPC service takes (20 KiB):
	// 413 as well, not gRPC's RESOURCE_EXHAUSTED (429, "retry").
	mid := `{"sdk_app_id": 1400000000, "user_id": "u1", "user_sig": "` + strings.Repeat("x", 30<<10) + `"}`
	wantError(t, "30 KiB ticket", c.post("/v1/usersig:verify", mid, tokBackend), 413, codes.InvalidArgument, "")
	// A 16 KiB ticket, the longest valid one, is a request like any other.
	if a := c.post("/v1/usersig:verify", `{"sdk_app_id": 1400000000, "user_id": "u1", "user_sig": "`+strings.Repeat("x", 16<<10)+`"}`, tokBackend); a.code != 200 {
		t.Errorf("16 KiB ticket: %d %s", a.code, a.raw)
	}
	_, metrics := ts.httpGet("/metrics")
	for _, want := range []string{`usersig_http_api_refused_total{reason="body_too_large"} 3`, `usersig_http_api_refused_total{reason="no_route"} 1`, `usersig_http_api_refused_total{reason="method_not_allowed"} 2`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestHTTPAPIRateLimit: RESOURCE_EXHAUSTED is 429 with the RetryInfo in
// the body and Retry-After in whole seconds, rounded up.
func TestHTTPAPIRateLimit(t *testing.T) {
	ts := startServer(t, apiConfig)
	c := newAPIClient(ts, "http", nil)
	var a apiAnswer
	for i := 0; i < 10; i++ {
		if a = c.post("/v1/usersig:generate", `{"sdk_app_id": 1400000000, "user_id": "u1", "ttl": "60s"}`, tokLimited); a.code != 200 {
			break
		}
	}
	wantError(t, "over the rate", a, 429, codes.ResourceExhausted, "")
	var delay string
	for _, d := range a.body["details"].([]any) {
		if d := d.(map[string]any); d["@type"] == "type.googleapis.com/google.rpc.RetryInfo" {
			delay, _ = d["retryDelay"].(string)
		}
	}
	secs, err := time.ParseDuration(delay)
	if err != nil || secs <= 0 || secs > time.Second {
		t.Fatalf("429 without a RetryInfo of at most 1s: %s", a.raw)
	}
	if got := a.header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q for a retry delay of %s, want 1 (rounded up)", got, delay)
	}
}

// TestHTTPAPISameCall: an HTTP call is the same call as a gRPC one: the
// same audit line, call log line and metrics, with the HTTP client's
// address in the call log.
func TestHTTPAPISameCall(t *testing.T) {
	ts := startServer(t, apiConfig)
	c := newAPIClient(ts, "http", nil)
	if _, err := ts.client.GenerateUserSig(ts.as(tokBackend), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "same_user", Ttl: dur(600)}); err != nil {
		t.Fatal(err)
	}
	if a := c.post("/v1/usersig:generate", `{"sdk_app_id": 1400000000, "user_id": "same_user", "ttl": "600s"}`, tokBackend); a.code != 200 {
		t.Fatalf("HTTP: %d %s", a.code, a.raw)
	}
	audit := ts.logs.lines(`"logger":"audit"`, `"user_id":"same_user"`)
	if len(audit) != 2 {
		t.Fatalf("audit lines: %q", audit)
	}
	ts1 := regexp.MustCompile(`"ts":[0-9.e+]+,`)
	if a, b := ts1.ReplaceAllString(audit[0], ""), ts1.ReplaceAllString(audit[1], ""); a != b {
		t.Errorf("the audit lines differ:\n gRPC %s\n HTTP %s", a, b)
	}
	calls := ts.logs.lines(`"msg":"finished call"`, `"grpc.method":"GenerateUserSig"`, `"caller":"backend"`)
	if len(calls) != 2 {
		t.Fatalf("call log lines: %q", calls)
	}
	c.mu.Lock()
	local := c.local
	c.mu.Unlock()
	if !strings.Contains(calls[1], `"peer.address":"`+local+`"`) {
		t.Errorf("the HTTP call's log line does not name the HTTP client %s: %s", local, calls[1])
	}
	_, metrics := ts.httpGet("/metrics")
	for _, want := range []string{
		`grpc_server_handled_total{grpc_code="OK",grpc_method="GenerateUserSig",grpc_service="usersig.v1.UserSigService",grpc_type="unary"} 2`,
		`usersig_tickets_issued_total{caller="backend",kind="usersig",sdk_app_id="1400000000"} 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Refused calls count as gRPC ones do: an unknown token over HTTP is
	// an authentication failure.
	c.post("/v1/usersig:generate", `{"sdk_app_id": 1400000000, "user_id": "u1"}`, "nope")
	_, metrics = ts.httpGet("/metrics")
	if !strings.Contains(metrics, `usersig_auth_failures_total{reason="unknown_token"} 1`) {
		t.Errorf("an unknown token over HTTP is not counted as an authentication failure")
	}
}

// TestHTTPAPIForgedIdentity: no header but Authorization can name a
// caller or change what the server knows of the client: not gRPC
// metadata headers, not the key the gateway uses for the client's
// address, not forwarding headers. A caller bound to client certificates
// cannot be reached over HTTP, whatever the headers say; the API works
// while gRPC uses mutual TLS.
func TestHTTPAPIForgedIdentity(t *testing.T) {
	const tokSvc = "tok-svc-certbound-0a1b2c3d4e5f"
	config, ca := mutualTLS(t, apiConfig)
	config = strings.Replace(config, "http_api:", "  - name: svc\n    token_sha256: "+tokenHash(tokSvc)+"\n    client_cert_names: [svc.internal]\n    apps: [1400000000]\n    methods: [VerifyUserSig]\n  - name: certonly\n    client_cert_names: [certonly.internal]\n    apps: [1400000000]\n    methods: [VerifyUserSig]\nhttp_api:", 1)
	ts := startServer(t, config)
	c := newAPIClient(ts, "http", nil)
	verify := "/v1/usersig:verify"
	body := `{"sdk_app_id": 1400000000, "user_id": "u1", "user_sig": "x"}`
	if a := c.post(verify, body, tokBackend); a.code != 200 {
		t.Fatalf("a token caller over HTTP while gRPC uses mutual TLS: %d %s", a.code, a.raw)
	}
	for _, tc := range []struct {
		name    string
		token   string
		headers []string
	}{
		{"the token as gRPC metadata", "", []string{"Grpc-Metadata-Authorization: Bearer " + tokBackend}},
		{"the token in a binary metadata header", "", []string{"Grpc-Metadata-Authorization-Bin: " + "QmVhcmVyIA=="}},
		{"a certificate's name in forwarding headers", "", []string{"X-Forwarded-Client-Cert: Hash=1;Subject=\"CN=certonly.internal\"", "X-Client-Cert-Cn: certonly.internal", "Grpc-Metadata-X-Forwarded-Client-Cert: By=certonly.internal"}},
		{"a certificate-bound caller's token", tokSvc, []string{"X-Forwarded-Client-Cert: Hash=1;Subject=\"CN=svc.internal\"", "Grpc-Metadata-Usersig-Http-Client: 10.9.9.9:1"}},
	} {
		wantError(t, tc.name, c.post(verify, body, tc.token, tc.headers...), 401, codes.Unauthenticated, "")
	}
	// Headers that would set the client's address do not reach the call
	// log: it names the connection's own address.
	c.post(verify, `{"sdk_app_id": 1400000000, "user_id": "forged_addr", "user_sig": "x"}`, tokBackend,
		"Grpc-Metadata-Usersig-Http-Client: 10.9.9.9:1", "X-Forwarded-For: 10.9.9.9", "Forwarded: for=10.9.9.9", "X-Real-Ip: 10.9.9.9")
	// Nor can a gRPC client set it with the gateway's metadata key.
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	der, key := ca.issue(t, "stranger.internal", true)
	k, _ := x509.ParseECPrivateKey(key)
	grpcClient := dialTLS(t, ts, &tls.Config{RootCAs: pool, ServerName: "localhost",
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: k}}})
	ctx := metadata.AppendToOutgoingContext(ts.as(tokBackend), "usersig-http-client", "10.9.9.9:1")
	if _, err := grpcClient.VerifyUserSig(ctx, &usersigv1.VerifyUserSigRequest{SdkAppId: appA, UserId: "u1", UserSig: "x"}); err != nil {
		t.Fatal(err)
	}
	if lines := ts.logs.lines("10.9.9.9"); len(lines) > 0 {
		t.Errorf("a forged client address reached the logs: %q", lines)
	}
	if n := len(ts.logs.lines(`"msg":"finished call"`, `"grpc.method":"VerifyUserSig"`, `"caller":"backend"`, `"peer.address":"127.0.0.1:`)); n != 3 {
		t.Errorf("%d of the 3 VerifyUserSig calls logged with a loopback address", n)
	}
}

// TestHTTPAPICORS: without cors, no CORS headers at all; with it,
// preflights and answers for the listed origins only.
func TestHTTPAPICORS(t *testing.T) {
	preflight := func(c *apiClient, origin string) apiAnswer {
		return c.call(http.MethodOptions, "/v1/usersig:generate", "", "Origin: "+origin,
			"Access-Control-Request-Method: POST", "Access-Control-Request-Headers: authorization,content-type")
	}
	off := newAPIClient(startServer(t, apiConfig), "http", nil)
	if a := preflight(off, "https://app.example.com"); a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS off: a preflight was allowed: %v", a.header)
	}
	if a := off.post("/v1/usersig:generate", `{"sdk_app_id": 1400000000, "user_id": "u1"}`, tokBackend, "Origin: https://app.example.com"); a.code != 200 || a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS off: answer %d with %v", a.code, a.header)
	}

	ts := startServer(t, apiConfig+"  cors:\n    allowed_origins: [\"https://app.example.com\", \"http://localhost:3000\"]\n")
	on := newAPIClient(ts, "http", nil)
	for _, origin := range []string{"https://app.example.com", "http://localhost:3000"} {
		a := preflight(on, origin)
		if a.code/100 != 2 || a.header.Get("Access-Control-Allow-Origin") != origin ||
			!strings.Contains(a.header.Get("Access-Control-Allow-Methods"), "POST") ||
			!strings.Contains(strings.ToLower(a.header.Get("Access-Control-Allow-Headers")), "authorization") {
			t.Errorf("preflight from %s: %d %v", origin, a.code, a.header)
		}
	}
	for _, origin := range []string{"https://evil.example.com", "https://app.example.com.evil.example", "null"} {
		if a := preflight(on, origin); a.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight from %s was allowed: %v", origin, a.header)
		}
	}
	a := on.post("/v1/usersig:generate", `{"sdk_app_id": 1400000000, "user_id": "u1"}`, tokBackend, "Origin: https://app.example.com")
	if a.code != 200 || a.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("answer to an allowed origin: %d %v", a.code, a.header)
	}
	if a.header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("credentials (cookies) are allowed: %v", a.header)
	}
	// Errors carry the CORS headers too, and expose Retry-After, so that a
	// browser app can read why and when to retry.
	var limited apiAnswer
	for i := 0; i < 10; i++ {
		if limited = on.post("/v1/usersig:generate", `{"sdk_app_id": 1400000000, "user_id": "u1"}`, tokLimited, "Origin: https://app.example.com"); limited.code != 200 {
			break
		}
	}
	if limited.code != 429 || limited.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(limited.header.Get("Access-Control-Expose-Headers"), "Retry-After") {
		t.Errorf("429 to an allowed origin: %d %v", limited.code, limited.header)
	}
	if a := on.post("/v1/usersig:generate", `{"sdk_app_id": 1400000000, "user_id": "u1"}`, tokBackend, "Origin: https://evil.example.com"); a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("answer to another origin carries CORS headers: %v", a.header)
	}
}

// TestHTTPAPITLS: http_api.tls serves HTTPS (HTTP/2 where the client
// offers it) while gRPC is plaintext.
func TestHTTPAPITLS(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	srvCert, srvKey := ca.issue(t, "localhost", false)
	writePEM(t, dir+"/api.pem", "CERTIFICATE", srvCert)
	writePEM(t, dir+"/api-key.pem", "EC PRIVATE KEY", srvKey)
	ts := startServer(t, apiConfig+"  tls: {cert_file: "+dir+"/api.pem, key_file: "+dir+"/api-key.pem}\n")
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	c := newAPIClient(ts, "https", &tls.Config{RootCAs: pool, ServerName: "localhost"})
	req, _ := http.NewRequest(http.MethodPost, c.base+"/v1/usersig:generate", strings.NewReader(`{"sdk_app_id": 1400000000, "user_id": "u1"}`))
	req.Header.Set("Authorization", "Bearer "+tokBackend)
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || body["userSig"] == nil {
		t.Errorf("HTTPS: %d %s %v", resp.StatusCode, resp.Proto, body)
	}
	if sig, ok := body["userSig"].(string); ok {
		ts.seen.Store(sig, true)
	}
	// Plain HTTP to the TLS listener is refused.
	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get("http://" + ts.srv.APIAddr() + "/openapi.json"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS listener: %d", resp.StatusCode)
		}
	}
}

// TestHTTPAPIOpenAPI: the OpenAPI document is served, and every path it
// describes is a route of the API (and the reverse), with bearer auth and
// the error body described.
func TestHTTPAPIOpenAPI(t *testing.T) {
	ts := startServer(t, apiConfig)
	c := newAPIClient(ts, "http", nil)
	a := c.call(http.MethodGet, "/openapi.json", "")
	if a.code != 200 || a.header.Get("Content-Type") != "application/json" || a.body["swagger"] != "2.0" {
		t.Fatalf("GET /openapi.json: %d %v", a.code, a.header)
	}
	paths := a.body["paths"].(map[string]any)
	want := []string{"/v1/privatemapkey:generate", "/v1/usersig:generate", "/v1/usersig:verify"}
	if len(paths) != len(want) {
		t.Errorf("paths %v, want %v", paths, want)
	}
	for _, p := range want {
		op, ok := paths[p].(map[string]any)["post"].(map[string]any)
		if !ok {
			t.Errorf("no POST %s in the document", p)
			continue
		}
		for _, code := range []string{"200", "400", "401", "403", "429"} {
			if _, ok := op["responses"].(map[string]any)[code]; !ok {
				t.Errorf("POST %s: no %s response described", p, code)
			}
		}
		// The route exists: an empty request is a service error, not 404.
		if r := c.post(p, `{}`, tokBackend); r.code == 404 && r.body["code"] == float64(codes.NotFound) && strings.Contains(r.raw, "no such route") {
			t.Errorf("POST %s: the document's route is not served", p)
		}
	}
	sec, _ := json.Marshal(a.body["securityDefinitions"])
	if !strings.Contains(string(sec), `"name":"Authorization"`) {
		t.Errorf("securityDefinitions: %s", sec)
	}
	if _, ok := a.body["definitions"].(map[string]any)["rpcStatus"]; !ok {
		t.Errorf("the error body (rpcStatus) is not described")
	}
}

// TestHTTPAPIDrain: the API stops with the server and reports the drain
// like gRPC does; a call in flight finishes.
func TestHTTPAPIDrain(t *testing.T) {
	ts := startServer(t, strings.Replace(apiConfig, "reload:", "shutdown: {delay: 300ms, timeout: 5s}\nreload:", 1))
	c := newAPIClient(ts, "http", nil)
	if a := c.post("/v1/usersig:generate", `{"sdk_app_id": 1400000000, "user_id": "u1"}`, tokBackend); a.code != 200 {
		t.Fatalf("%d %s", a.code, a.raw)
	}
	addr := ts.srv.APIAddr()
	ts.stop()
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Errorf("the HTTP API still accepts connections after the drain")
	}
}

// TestHTTPAPIHeaderLimit: headers are bounded as on the gRPC listener.
func TestHTTPAPIHeaderLimit(t *testing.T) {
	ts := startServer(t, apiConfig)
	c := newAPIClient(ts, "http", nil)
	a := c.call(http.MethodPost, "/v1/usersig:generate", `{}`, "X-Pad: "+strings.Repeat("p", 16<<10))
	if a.code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("16 KiB of headers: %d", a.code)
	}
}

// dialTLS is a gRPC client of the test server over TLS.
func dialTLS(t *testing.T, ts *testServer, tc *tls.Config) usersigv1.UserSigServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(ts.srv.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return usersigv1.NewUserSigServiceClient(conn)
}
