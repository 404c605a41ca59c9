package server_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usersig/usersig/server"
)

// writeTree writes files into a fresh directory; {{dir}} in contents is
// that directory. It returns the directory.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		mode := os.FileMode(0o600)
		if i := strings.IndexByte(name, ':'); i >= 0 { // "name:0644" sets the mode
			m, _ := parseMode(name[i+1:])
			name, mode = name[:i], m
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(content, "{{dir}}", dir)), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
	}
	return dir
}

func parseMode(s string) (os.FileMode, error) {
	var m uint32
	for _, c := range s {
		m = m*8 + uint32(c-'0')
	}
	return os.FileMode(m), nil
}

const minimalApps = `
apps:
  - sdk_app_id: 1400000000
    keys: [{id: k1, file: "{{dir}}/key"}]
`

var minimalCaller = `
callers:
  - name: backend
    token_sha256: ` + tokenHash(tokBackend) + `
    apps: [1400000000]
    methods: [GenerateUserSig]
`

// TestConfigErrors: each bad config stops start-up with one line per
// problem, naming the field; no line holds a secret.
func TestConfigErrors(t *testing.T) {
	t.Setenv("USERSIG_TEST_EMPTY", "")
	key := strings.Repeat("k", 64)
	for _, tc := range []struct {
		name   string
		files  map[string]string
		config string
		want   []string // one entry per expected line
	}{
		{"unknown key", nil, "grpc:\n  listen: 127.0.0.1:1\n  lisen: x\n" + minimalApps + minimalCaller,
			[]string{`line 3: unknown key "lisen" in grpc`}},
		{"unknown top-level key", nil, "aps: []\n" + minimalApps + minimalCaller,
			[]string{`line 1: unknown key "aps" in the top level`}},
		{"unknown caller key", nil, minimalApps + minimalCaller + "    rates: {per_second: 1}\n",
			[]string{`unknown key "rates" in a caller`}},
		{"unknown rate_per_user key", nil, minimalApps + minimalCaller + "    rate_per_user: {per_second: 1, max_user: 5}\n",
			[]string{`unknown key "max_user" in a caller's rate_per_user`}},
		{"rate_per_user per_second", map[string]string{"key": key}, minimalApps + minimalCaller + "    rate_per_user: {per_second: 0, burst: 5}\n",
			[]string{"callers[0].rate_per_user.per_second: must be above 0"}},
		{"rate_per_user burst and max_users", map[string]string{"key": key}, minimalApps + minimalCaller + "    rate_per_user: {per_second: 0.2, burst: -1, max_users: 20000000}\n",
			[]string{"callers[0].rate_per_user.burst: must not be negative", "callers[0].rate_per_user.max_users: must be 1 to 10000000 (default 100000)"}},
		{"empty file", nil, "", []string{"the file is empty"}},
		{"max_call_duration too short", map[string]string{"key": key}, "grpc: {max_call_duration: 50ms}\n" + minimalApps + minimalCaller,
			[]string{"grpc.max_call_duration: must be at least 100ms"}},
		{"not yaml", nil, "apps: [", []string{"did not find expected node content"}},
		{"missing key file", map[string]string{}, minimalApps + minimalCaller,
			[]string{"apps[0].keys[0].file: {{dir}}/key: no such file or directory"}},
		{"key file readable by others", map[string]string{"key:0644": key}, minimalApps + minimalCaller,
			[]string{"apps[0].keys[0].file: {{dir}}/key is readable by others (mode 0644); run chmod o-rwx on it"}},
		{"empty key file", map[string]string{"key": "\n"}, minimalApps + minimalCaller,
			[]string{"apps[0].keys[0].file: {{dir}}/key is empty"}},
		{"key env unset", nil, "apps:\n  - sdk_app_id: 1400000000\n    keys: [{id: k1, env: USERSIG_TEST_EMPTY}]\n" + minimalCaller,
			[]string{"apps[0].keys[0].env: $USERSIG_TEST_EMPTY is not set or is empty"}},
		{"key in file and env", nil, "apps:\n  - sdk_app_id: 1400000000\n    keys: [{id: k1, env: X, file: /x}]\n" + minimalCaller,
			[]string{"apps[0].keys[0]: set file or env, not both"}},
		{"bad duration", map[string]string{"key": key}, "apps:\n  - sdk_app_id: 1400000000\n    default_ttl: 180d\n    keys: [{id: k1, file: \"{{dir}}/key\"}]\n" + minimalCaller,
			[]string{`apps[0].default_ttl: "180d" is not a duration (write e.g. 720h, 30m or 90s)`}},
		{"default above max", map[string]string{"key": key}, "apps:\n  - sdk_app_id: 1400000000\n    default_ttl: 48h\n    max_ttl: 24h\n    keys: [{id: k1, file: \"{{dir}}/key\"}]\n" + minimalCaller,
			[]string{"apps[0].default_ttl: 48h is above max_ttl 24h"}},
		{"fractional ttl", map[string]string{"key": key}, "apps:\n  - sdk_app_id: 1400000000\n    max_ttl: 1.5s\n    default_ttl: 1s\n    keys: [{id: k1, file: \"{{dir}}/key\"}]\n" + minimalCaller,
			[]string{"apps[0].max_ttl: 1.5s is not a whole number of seconds"}},
		{"duplicate app", map[string]string{"key": key}, minimalApps + "  - sdk_app_id: 1400000000\n    keys: [{id: k1, file: \"{{dir}}/key\"}]\n" + minimalCaller,
			[]string{"apps[1].sdk_app_id: 1400000000 is configured twice"}},
		{"app id 0 and no keys", nil, "apps:\n  - sdk_app_id: 0\n" + minimalCaller,
			[]string{"apps[0].sdk_app_id: must be 1 to 4294967295", "apps[0].keys: at least one key is required", "callers[0].apps[0]: 1400000000 is not a configured app"}},
		{"a bad app is reported once", nil, minimalApps + minimalCaller, []string{"apps[0].keys[0].file"}},
		{"duplicate key id", map[string]string{"key": key}, "apps:\n  - sdk_app_id: 1400000000\n    keys: [{id: k1, file: \"{{dir}}/key\"}, {id: k1, file: \"{{dir}}/key\"}]\n" + minimalCaller,
			[]string{`apps[0].keys[1].id: "k1" is used by another key of this app`}},
		{"no callers", map[string]string{"key": key}, minimalApps, []string{"callers: at least one caller is required"}},
		{"caller policy", map[string]string{"key": key}, minimalApps + `
callers:
  - name: web
    token_sha256: abc
    apps: [1400000001, "x"]
    methods: [GenUserSig]
    max_ttl: 9000h
    user_id_pattern: '^u_(['
    rate: {per_second: 0}
`, []string{
			"callers[0].token_sha256: must be 64 hex digits",
			"callers[0].apps[0]: 1400000001 is not a configured app",
			`callers[0].apps[1]: "x" is neither an SDKAppID nor "*"`,
			`callers[0].methods[0]: "GenUserSig" is not GenerateUserSig, VerifyUserSig or GeneratePrivateMapKey`,
			"callers[0].user_id_pattern: error parsing regexp",
			"callers[0].rate.per_second: must be above 0",
		}},
		{"user_id_pattern that would escape its anchors", map[string]string{"key": key}, minimalApps + `
callers:
  - name: web
    token_sha256: ` + tokenHash(tokWeb) + `
    apps: [1400000000]
    methods: [GenerateUserSig]
    user_id_pattern: 'u_[0-9]+)|(x'
`, []string{"callers[0].user_id_pattern: error parsing regexp: unexpected ): `u_[0-9]+)|(x`"}},
		{"user_id_pattern with an open \\Q quote", map[string]string{"key": key}, minimalApps + `
callers:
  - name: web
    token_sha256: ` + tokenHash(tokWeb) + `
    apps: [1400000000]
    methods: [GenerateUserSig]
    user_id_pattern: 'u_\Q1'
`, []string{`callers[0].user_id_pattern: cannot be anchored to the whole user id (end a \Q quote with \E)`}},
		{"client certificate name of two callers", map[string]string{"key": key}, `
grpc:
  tls: {cert_file: /nonexistent/tls.crt, key_file: /nonexistent/tls.key, client_ca_file: /nonexistent/ca.crt}
` + minimalApps + `
callers:
  - name: a
    client_cert_names: [a.internal, shared.internal]
    apps: [1400000000]
    methods: [VerifyUserSig]
  - name: b
    client_cert_names: [b.internal, b.internal]
    apps: [1400000000]
    methods: [VerifyUserSig]
  - name: c
    client_cert_names: [shared.internal, b.internal]
    apps: [1400000000]
    methods: [VerifyUserSig]
  - name: d
    client_cert_names: [""]
    apps: [1400000000]
    methods: [VerifyUserSig]
`, []string{
			`callers[2].client_cert_names[0]: "shared.internal" is also listed by caller "a"`,
			`callers[2].client_cert_names[1]: "b.internal" is also listed by caller "b"`,
			`callers[3].client_cert_names[0]: must not be empty`,
		}},
		{"caller max_ttl above the app's", map[string]string{"key": key}, minimalApps + `
callers:
  - name: web
    token_sha256: ` + tokenHash(tokWeb) + `
    apps: ["*"]
    methods: [GenerateUserSig]
    max_ttl: 9000h
`, []string{"callers[0].max_ttl: 9000h is above app 1400000000's max_ttl 4320h"}},
		{"duplicate callers", map[string]string{"key": key}, minimalApps + minimalCaller + minimalCaller[len("\ncallers:\n"):],
			[]string{`callers[1].name: "backend" is used by another caller`, `callers[1].token_sha256: is also the token of caller "backend"`}},
		{"cert names without mTLS", map[string]string{"key": key}, minimalApps + `
callers:
  - name: svc
    client_cert_names: [svc.internal]
    apps: [1400000000]
    methods: [VerifyUserSig]
`, []string{"callers[0].client_cert_names: needs mutual TLS: set grpc.tls.client_ca_file"}},
		{"caller with no way in", map[string]string{"key": key}, minimalApps + "callers:\n  - name: x\n    apps: [1400000000]\n    methods: [VerifyUserSig]\n",
			[]string{"callers[0]: set token_sha256, client_cert_names or oidc"}},
		{"oidc callers", map[string]string{"key": key, "ca.pem": "not a certificate"}, minimalApps + `
callers:
  - name: both
    token_sha256: ` + tokenHash(tokWeb) + `
    oidc: {issuer: https://login.example.com, audience: a}
    apps: [1400000000]
    methods: [GenerateUserSig]
  - name: plain-http
    oidc: {issuer: http://login.example.com, user_id_claim: email}
    apps: [1400000000]
    methods: [GenerateUserSig]
  - name: not-a-url
    oidc: {issuer: "https://login.example.com/?tenant=1", audience: a, ca_file: "{{dir}}/ca.pem", required_claims: {groups: [a, b]}}
    apps: [1400000000]
    methods: [GenerateUserSig]
  - name: first
    oidc: {issuer: https://login.example.com/, audience: app, required_claims: {email_verified: true}}
    apps: [1400000000]
    methods: [GenerateUserSig]
  - name: second
    oidc: {issuer: https://login.example.com/, audience: app}
    apps: [1400000000]
    methods: [GenerateUserSig]
  - name: loopback
    oidc: {issuer: "http://127.0.0.1:8443", audience: app, max_calls_per_user: 2000}
    apps: [1400000000]
    methods: [GenerateUserSig]
`, []string{
			"callers[0].oidc: an OIDC caller is known by its ID tokens: drop token_sha256 and client_cert_names",
			"callers[1].oidc.issuer: must be https (http only on a loopback address)",
			"callers[1].oidc.audience: is required",
			"callers[2].oidc.issuer: must be an https URL with a host and no query, fragment or user",
			"callers[2].oidc.required_claims.groups: must be a string, a number or a boolean",
			"callers[2].oidc.ca_file: {{dir}}/ca.pem holds no PEM certificate",
			`callers[4].oidc: issuer and audience are also caller "first"'s`,
			"callers[5].oidc.max_calls_per_user: must be 1 to 1024",
		}},
		{"private_map_key policies", map[string]string{"key": key}, minimalApps + `
callers:
  - name: live
    token_sha256: ` + tokenHash(tokWeb) + `
    apps: [1400000000]
    methods: [GeneratePrivateMapKey]
    max_ttl: 1h
    private_map_key:
      privileges: [enter_room, fly]
      room_ids: ["1000-1999", 5000, "2000-1000", "0", "1-4294967296", "x"]
      room_str_pattern: 'live_(['
      max_ttl: 2h
  - name: empty
    token_sha256: ` + tokenHash(tokOps) + `
    apps: [1400000000]
    methods: [GenerateUserSig]
    private_map_key: {privileges: [], room_ids: []}
`, []string{
			`callers[0].private_map_key.privileges[1]: "fly" is not create_room, enter_room, send_audio, receive_audio, send_video, receive_video, send_substream or receive_substream`,
			`callers[0].private_map_key.room_ids[2]: "2000-1000" is neither a room id nor a range`,
			`callers[0].private_map_key.room_ids[3]: "0" is neither`,
			`callers[0].private_map_key.room_ids[4]: "1-4294967296" is neither`,
			`callers[0].private_map_key.room_ids[5]: "x" is neither`,
			"callers[0].private_map_key.room_str_pattern: error parsing regexp",
			"callers[0].private_map_key.max_ttl: 2h is above the caller's max_ttl 1h",
			"callers[1].private_map_key: the caller may not call GeneratePrivateMapKey",
			"callers[1].private_map_key.privileges: must list at least one privilege; leave it out to allow all",
			"callers[1].private_map_key.room_ids: must list at least one room id or range; leave it out to allow all",
		}},
		{"private_map_key max_ttl above an app's", map[string]string{"key": key}, minimalApps + `
callers:
  - name: live
    token_sha256: ` + tokenHash(tokWeb) + `
    apps: ["*"]
    methods: [GeneratePrivateMapKey]
    private_map_key: {max_ttl: 9000h}
`, []string{"callers[0].private_map_key.max_ttl: 9000h is above app 1400000000's max_ttl 4320h"}},
		{"rate_limits", map[string]string{"key": key, "redis-password": "pw"}, `
rate_limits:
  backend: redis
  on_backend_error: crash
  redis:
    addr: localhost
    password_file: "{{dir}}/redis-password"
    password_env: REDIS_PW
    timeout: 10s
` + minimalApps + minimalCaller, []string{
			`rate_limits.on_backend_error: "crash" is not local or deny`,
			"rate_limits.redis.addr: must be host:port",
			"rate_limits.redis: set password_file or password_env, not both",
			"rate_limits.redis.timeout: must be above 0s and at most 5s",
		}},
		{"rate_limits backends", map[string]string{"key": key}, "rate_limits: {backend: memcached}\n" + minimalApps + minimalCaller,
			[]string{`rate_limits.backend: "memcached" is not local or redis`}},
		{"rate_limits redis without its section", map[string]string{"key": key}, "rate_limits: {backend: redis}\n" + minimalApps + minimalCaller,
			[]string{"rate_limits.redis: is required with backend: redis"}},
		{"http_api without listen", map[string]string{"key": key}, "http_api: {cors: {allowed_origins: []}}\n" + minimalApps + minimalCaller,
			[]string{"http_api.listen: is required", "http_api.cors.allowed_origins: must list at least one origin"}},
		{"http_api origins", map[string]string{"key": key}, "http_api:\n  listen: 127.0.0.1:0\n  cors: {allowed_origins: [\"https://app.example.com\", \"https://*.example.com\", \"https://app.example.com/\", \"*\", \"app.example.com\", \"HTTPS://APP.example.com\"]}\n" + minimalApps + minimalCaller,
			[]string{`http_api.cors.allowed_origins[1]: "https://*.example.com" is not an origin`, `allowed_origins[2]: "https://app.example.com/" is not an origin`,
				`allowed_origins[3]: "*" is not an origin`, `allowed_origins[4]: "app.example.com" is not an origin`, `allowed_origins[5]: "HTTPS://APP.example.com" is not an origin`}},
		{"http_api tls", map[string]string{"key": key}, "http_api:\n  listen: 127.0.0.1:0\n  tls: {cert_file: x.pem}\n" + minimalApps + minimalCaller,
			[]string{"http_api.tls: cert_file and key_file are both required"}},
		{"http_api has no client certificates", map[string]string{"key": key}, "http_api:\n  listen: 127.0.0.1:0\n  tls: {cert_file: x.pem, key_file: y.pem, client_ca_file: ca.pem}\n" + minimalApps + minimalCaller,
			[]string{`unknown key "client_ca_file" in http_api.tls`}},
		{"shutdown and log", map[string]string{"key": key}, "shutdown: {delay: -1s, timeout: 0s}\nlog: {level: loud}\n" + minimalApps + minimalCaller,
			[]string{"shutdown.delay: -1s is negative", "shutdown.timeout: must be above 0s", `log.level: "loud" is not one of debug, info, warn, error`}},
	} {
		files := map[string]string{"config.yaml": tc.config}
		for k, v := range tc.files {
			files[k] = v
		}
		dir := writeTree(t, files)
		_, err := server.LoadConfig(filepath.Join(dir, "config.yaml"))
		var ce *server.ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("%s: LoadConfig error %v, want a ConfigError", tc.name, err)
			continue
		}
		if len(ce.Problems) != len(tc.want) {
			t.Errorf("%s: problems\n  %s\nwant %d:\n  %s", tc.name, strings.Join(ce.Problems, "\n  "), len(tc.want), strings.Join(tc.want, "\n  "))
			continue
		}
		for i, want := range tc.want {
			want = strings.ReplaceAll(want, "{{dir}}", dir)
			if !strings.Contains(ce.Problems[i], want) {
				t.Errorf("%s: problem %d = %q, want it to say %q", tc.name, i, ce.Problems[i], want)
			}
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if !strings.HasPrefix(line, "config "+filepath.Join(dir, "config.yaml")+": ") {
				t.Errorf("%s: line %q does not name the file", tc.name, line)
			}
			if strings.Contains(line, key) {
				t.Errorf("%s: a line holds the key", tc.name)
			}
		}
	}
}

func TestConfigDefaultsAndWarnings(t *testing.T) {
	dir := writeTree(t, map[string]string{"key:0440": "short-key", "config.yaml": minimalApps + minimalCaller})
	l, err := server.LoadConfig(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatalf("a group-readable key file is refused: %v", err)
	}
	c := l.Config
	if c.GRPC.Listen != server.DefaultListen || c.Log.Level != "info" || c.GRPC.MaxConcurrentCalls != server.DefaultMaxConcurrentCalls {
		t.Errorf("defaults: %+v", c)
	}
	if len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "is 9 bytes") || strings.Contains(l.Warnings[0], "short-key") {
		t.Errorf("warnings %q, want one about the short key that does not quote it", l.Warnings)
	}
	if len(l.Hash) != 12 {
		t.Errorf("hash %q, want 12 hex digits", l.Hash)
	}
}
