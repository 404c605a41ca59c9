package server_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
	"github.com/usersig/usersig/server"
	"github.com/usersig/usersig/signer"
)

// otherUID owns the files "another local user" wrote (nobody). Tests run
// as root in CI, so they may chown; anyone else cannot, and the cases
// that need it fail rather than pass untested.
const otherUID = 65534

// TestFileModesAtStart: a config file or a key file that anyone but its
// owner may write, or that is owned by neither root nor the server's
// user, stops start-up with one line naming the file and the rule. So do
// the TLS files, by the same rules (and a TLS key readable by others).
func TestFileModesAtStart(t *testing.T) {
	key := strings.Repeat("k", 64)
	euid := os.Geteuid()
	tlsConfig := "grpc:\n  tls: {cert_file: \"{{dir}}/tls.crt\", key_file: \"{{dir}}/tls.key\", client_ca_file: \"{{dir}}/ca.crt\"}\n"
	for _, tc := range []struct {
		name   string
		files  map[string]string // "name:mode" as writeTree takes them
		config string            // before minimalApps and minimalCaller
		mode   os.FileMode       // the config's; 0600 when 0
		chown  string            // a file to give to otherUID
		want   []string
	}{
		{name: "config writable by others", mode: 0o666, files: map[string]string{"key": key},
			want: []string{"config {{dir}}/config.yaml: {{dir}}/config.yaml is writable by its group or others (mode 0666); run chmod go-w on it"}},
		{name: "config writable by its group", mode: 0o620, files: map[string]string{"key": key},
			want: []string{"config {{dir}}/config.yaml: {{dir}}/config.yaml is writable by its group or others (mode 0620); run chmod go-w on it"}},
		{name: "config owned by another user", files: map[string]string{"key": key}, chown: "config.yaml",
			want: []string{"config {{dir}}/config.yaml: {{dir}}/config.yaml is owned by uid 65534, neither root nor the server's user (uid " + strconv.Itoa(euid) + ")"}},
		{name: "key writable by others", files: map[string]string{"key:0602": key},
			want: []string{"config {{dir}}/config.yaml: apps[0].keys[0].file: {{dir}}/key is writable by its group or others (mode 0602); run chmod go-w on it"}},
		{name: "key writable by its group", files: map[string]string{"key:0620": key},
			want: []string{"config {{dir}}/config.yaml: apps[0].keys[0].file: {{dir}}/key is writable by its group or others (mode 0620); run chmod go-w on it"}},
		{name: "key owned by another user", files: map[string]string{"key:0400": key}, chown: "key",
			want: []string{"config {{dir}}/config.yaml: apps[0].keys[0].file: {{dir}}/key is owned by uid 65534, neither root nor the server's user (uid " + strconv.Itoa(euid) + ")"}},
		{name: "key readable and writable by others: both rules", files: map[string]string{"key:0666": key},
			want: []string{
				"config {{dir}}/config.yaml: apps[0].keys[0].file: {{dir}}/key is readable by others (mode 0666); run chmod o-rwx on it",
				"config {{dir}}/config.yaml: apps[0].keys[0].file: {{dir}}/key is writable by its group or others (mode 0666); run chmod go-w on it",
			}},
		{name: "a symlink's target decides: writable", files: map[string]string{"real.key:0602": key, "key": "->real.key"},
			want: []string{"config {{dir}}/config.yaml: apps[0].keys[0].file: {{dir}}/key is writable by its group or others (mode 0602); run chmod go-w on it"}},
		{name: "TLS files", config: tlsConfig, files: map[string]string{"key": key, "tls.crt:0664": "x", "tls.key:0644": "x", "ca.crt:0666": "x"},
			want: []string{
				"config {{dir}}/config.yaml: grpc.tls.cert_file: {{dir}}/tls.crt is writable by its group or others (mode 0664); run chmod go-w on it",
				"config {{dir}}/config.yaml: grpc.tls.key_file: {{dir}}/tls.key is readable by others (mode 0644); run chmod o-rwx on it",
				"config {{dir}}/config.yaml: grpc.tls.client_ca_file: {{dir}}/ca.crt is writable by its group or others (mode 0666); run chmod go-w on it",
			}},
		{name: "Redis password and CA files", config: "rate_limits:\n  backend: redis\n  redis: {addr: \"127.0.0.1:6379\", password_file: \"{{dir}}/redis-password\", tls: {ca_file: \"{{dir}}/redis-ca.crt\"}}\n",
			files: map[string]string{"key": key, "redis-password:0644": "pw", "redis-ca.crt:0666": "x"},
			want: []string{
				"config {{dir}}/config.yaml: rate_limits.redis.password_file: {{dir}}/redis-password is readable by others (mode 0644); run chmod o-rwx on it",
				"config {{dir}}/config.yaml: rate_limits.redis.tls.ca_file: {{dir}}/redis-ca.crt is writable by its group or others (mode 0666); run chmod go-w on it",
			}},
		{name: "TLS CA owned by another user", config: tlsConfig, files: map[string]string{"key": key, "tls.crt:0644": "x", "tls.key:0600": "x", "ca.crt:0644": "x"}, chown: "ca.crt",
			want: []string{"config {{dir}}/config.yaml: grpc.tls.client_ca_file: {{dir}}/ca.crt is owned by uid 65534, neither root nor the server's user (uid " + strconv.Itoa(euid) + ")"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeModeTree(t, tc.files)
			cfgPath := filepath.Join(dir, "config.yaml")
			mode := tc.mode
			if mode == 0 {
				mode = 0o600
			}
			writeMode(t, cfgPath, strings.ReplaceAll(tc.config+minimalApps+minimalCaller, "{{dir}}", dir), mode)
			if tc.chown != "" {
				if err := os.Chown(filepath.Join(dir, tc.chown), otherUID, -1); err != nil {
					t.Fatalf("chown (the tests run as root in CI): %v", err)
				}
			}
			_, err := server.LoadConfig(cfgPath)
			var ce *server.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("LoadConfig: %v, want a ConfigError", err)
			}
			got := strings.Split(err.Error(), "\n")
			want := strings.Split(strings.ReplaceAll(strings.Join(tc.want, "\n"), "{{dir}}", dir), "\n")
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("LoadConfig refused with\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
		})
	}
	// What stays allowed: a key group-readable (a Secret at 0440 with an
	// fsGroup), read-only, or reached through a symlink (Kubernetes' ..data);
	// a config readable by all; files owned by root or by the server's user.
	for name, files := range map[string]map[string]string{
		"key 0440":                         {"key:0440": key},
		"key 0400":                         {"key:0400": key},
		"key 0640 behind a symlink at 777": {"data/real.key:0640": key, "key": "->data/real.key"},
	} {
		dir := writeModeTree(t, files)
		writeMode(t, filepath.Join(dir, "config.yaml"), strings.ReplaceAll(minimalApps+minimalCaller, "{{dir}}", dir), 0o644)
		if _, err := server.LoadConfig(filepath.Join(dir, "config.yaml")); err != nil {
			t.Errorf("%s: refused: %v", name, err)
		}
	}
}

// TestWritableFilesAtReload replays the attack: another local user who
// may write the config appends a caller of his own, and one who may write
// a key file puts his key in it. The watcher refuses each change with one
// line naming the file and the rule, the old config stays in force (his
// caller cannot call, his tickets do not verify), and fixing the file's
// mode or owner reloads.
func TestWritableFilesAtReload(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	const (
		tokIntruder = "tok-intruder-1f2e3d4c5b6a79880"
		keyIntruder = "intruder-key-00112233445566778899aabbccddeeff00112233445566778899"
	)
	rejected := func(what, rule string) {
		t.Helper()
		waitFor(t, "the watcher to refuse "+what, func() bool {
			return len(ts.logs.lines(`"msg":"reload rejected; the config in force stays"`, rule)) > 0
		})
	}
	mint := func(name, token, userID string, want codes.Code) *usersigv1.GenerateUserSigResponse {
		t.Helper()
		r, err := ts.client.GenerateUserSig(ts.as(token), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: userID})
		wantCode(t, name, err, want, "")
		return r
	}

	// The config, made writable by others, gains a caller.
	appended := fixtureConfig + "  - name: intruder\n    token_sha256: " + tokenHash(tokIntruder) +
		"\n    apps: [\"*\"]\n    methods: [GenerateUserSig]\n"
	ts.writeFile("config.yaml", strings.ReplaceAll(appended, "{{dir}}", ts.dir), 0o666)
	rejected("a config writable by others", `config.yaml is writable by its group or others (mode 0666); run chmod go-w on it`)
	mint("the intruder's caller", tokIntruder, "administrator", codes.Unauthenticated)
	mint("backend, under the old config", tokBackend, "u1", codes.OK)

	// The same, group-writable.
	ts.writeFile("config.yaml", strings.ReplaceAll(appended, "{{dir}}", ts.dir), 0o620)
	rejected("a config writable by its group", `config.yaml is writable by its group or others (mode 0620)`)
	mint("the intruder's caller, group-writable config", tokIntruder, "administrator", codes.Unauthenticated)

	// The operator puts the config back.
	ts.writeConfig(fixtureConfig)
	waitFor(t, "the fixed config to reload", func() bool { return len(ts.logs.lines(`"msg":"config in force"`, `"generation":2`)) == 1 })

	// The signing key, made writable by others, is overwritten.
	ts.writeFile("primary.key", keyIntruder, 0o602)
	rejected("a key writable by others", `primary.key is writable by its group or others (mode 0602); run chmod go-w on it`)
	k, _ := signer.NewKey([]byte(keyIntruder))
	forged, err := k.UserSig(appA, "administrator", time.Hour, ts.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	v, err := ts.client.VerifyUserSig(ts.as(tokBackend), &usersigv1.VerifyUserSigRequest{SdkAppId: appA, UserId: "administrator", UserSig: forged.Ticket})
	if err != nil {
		t.Fatal(err)
	}
	if v.Valid || v.Status != usersigv1.VerifyStatus_VERIFY_STATUS_SIGNATURE_MISMATCH {
		t.Errorf("a ticket forged with the key written into a writable key file: %v, want SIGNATURE_MISMATCH", v)
	}
	r := mint("backend, under the old key", tokBackend, "u1", codes.OK)
	pk, _ := signer.NewKey([]byte(keyPrimary))
	if got := signer.Verify(r.UserSig, appA, "u1", []*signer.Key{pk}, ts.clock.Now()); got.Status != signer.Valid {
		t.Errorf("a ticket minted after the refused key verifies as %v with the key in force", got.Status)
	}

	// The key file, handed to another user (with the right content).
	ts.writeFile("primary.key", keyPrimary+"\n", 0o600)
	waitFor(t, "the fixed key to reload", func() bool { return len(ts.logs.lines(`"msg":"config in force"`, `"generation":3`)) == 1 })
	if err := os.Chown(filepath.Join(ts.dir, "primary.key"), otherUID, -1); err != nil {
		t.Fatalf("chown (the tests run as root in CI): %v", err)
	}
	rejected("a key owned by another user", `primary.key is owned by uid 65534, neither root nor the server's user (uid `+strconv.Itoa(os.Geteuid())+`)`)
	// A chown changes neither the mode, the size nor the time; the watcher
	// still notices that it is fixed.
	if err := os.Chown(filepath.Join(ts.dir, "primary.key"), os.Geteuid(), -1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the key given back to reload", func() bool { return len(ts.logs.lines(`"msg":"config in force"`, `"generation":4`)) == 1 })

	for _, s := range []string{tokIntruder, keyIntruder, forged.Ticket} {
		if strings.Contains(ts.logs.String(), s[:16]) {
			t.Errorf("the logs hold part of the intruder's token, key or ticket")
		}
	}
}

// writeModeTree writes files into a fresh directory, past the umask:
// "name:0602" sets a mode, "->target" makes a symlink, and a name with a
// slash makes its directory at 0777 (as a Kubernetes volume shows).
func writeModeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		mode := os.FileMode(0o600)
		if i := strings.IndexByte(name, ':'); i >= 0 {
			m, _ := parseMode(name[i+1:])
			name, mode = name[:i], m
		}
		p := filepath.Join(dir, name)
		if d := filepath.Dir(p); d != dir {
			if err := os.MkdirAll(d, 0o777); err != nil {
				t.Fatal(err)
			}
			os.Chmod(d, 0o777)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		writeMode(t, p, content, mode)
	}
	return dir
}

func writeMode(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
