package server_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
	"github.com/usersig/usersig/signer"
)

// rotationConfig has app 1400000000 with the keys listed, by file.
func rotationConfig(keyIDs ...string) string {
	var b strings.Builder
	b.WriteString("grpc: {listen: 127.0.0.1:0}\nreload: {interval: 0s}\napps:\n  - sdk_app_id: 1400000000\n    keys:\n")
	for _, id := range keyIDs {
		b.WriteString("      - {id: " + id + ", file: \"{{dir}}/" + id + ".key\"}\n")
	}
	b.WriteString("callers:\n  - name: backend\n    token_sha256: " + tokenHash(tokBackend) +
		"\n    apps: [1400000000]\n    methods: [GenerateUserSig, VerifyUserSig, GeneratePrivateMapKey]\n")
	return b.String()
}

// TestKeyRotation follows the documented procedure: add the new key
// second, reload, move it first, reload, remove the old one.
func TestKeyRotation(t *testing.T) {
	ts := startServer(t, rotationConfig("primary"))
	ts.writeFile("next.key", "next-key-a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c", 0o600)
	mint := func() *usersigv1.GenerateUserSigResponse {
		t.Helper()
		r, err := ts.client.GenerateUserSig(ts.as(tokBackend), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u1", Ttl: dur(3600)})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	verify := func(ticket string) *usersigv1.VerifyUserSigResponse {
		t.Helper()
		r, err := ts.client.VerifyUserSig(ts.as(tokBackend), &usersigv1.VerifyUserSigRequest{SdkAppId: appA, UserId: "u1", UserSig: ticket})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	reload := func(keys ...string) {
		t.Helper()
		ts.writeConfig(rotationConfig(keys...))
		if err := ts.srv.Reload(); err != nil {
			t.Fatalf("Reload with keys %v: %v", keys, err)
		}
	}
	before := mint()
	if before.KeyId != "primary" {
		t.Fatalf("signed by %q, want primary", before.KeyId)
	}
	reload("primary", "next")
	if r := mint(); r.KeyId != "primary" {
		t.Errorf("with next second: signed by %q, want primary still", r.KeyId)
	}
	reload("next", "primary")
	afterSwap := mint()
	if afterSwap.KeyId != "next" {
		t.Errorf("with next first: signed by %q, want next", afterSwap.KeyId)
	}
	if r := verify(before.UserSig); !r.Valid || r.KeyId != "primary" {
		t.Errorf("an old ticket after the swap: %v, want valid by key primary", r)
	}
	reload("next")
	if r := verify(before.UserSig); r.Status != usersigv1.VerifyStatus_VERIFY_STATUS_SIGNATURE_MISMATCH {
		t.Errorf("an old ticket after the old key is removed: %v, want SIGNATURE_MISMATCH", r)
	}
	if r := verify(afterSwap.UserSig); !r.Valid || r.KeyId != "next" {
		t.Errorf("a new ticket: %v, want valid by key next", r)
	}
	if n := len(ts.logs.lines(`"msg":"config in force"`, `"generation":4`)); n != 1 {
		t.Errorf("want a log line for generation 4 with its hash; logs:\n%s", ts.logs.String())
	}
}

// TestReloadUnderLoad reloads while callers call: no call is lost, and the
// new config decides who may call from then on.
func TestReloadUnderLoad(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	var (
		wg                 sync.WaitGroup
		stop               atomic.Bool
		backendOK, backErr atomic.Int64
		firstErr           atomic.Value
	)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				_, err := ts.client.GenerateUserSig(ts.as(tokBackend), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u1", Ttl: dur(60)})
				if err != nil {
					backErr.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				backendOK.Add(1)
			}
		}()
	}
	waitFor(t, "calls under load", func() bool { return backendOK.Load() > 200 })
	if _, err := ts.client.GenerateUserSig(ts.as(tokWeb), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u_1"}); err != nil {
		t.Fatalf("web before the reload: %v", err)
	}
	// The new config drops web and adds newbie; the watcher notices.
	const tokNewbie = "tok-newbie-5d4c3b2a19087f6e5d4c"
	newConfig := strings.Replace(fixtureConfig, "  - name: web\n    token_sha256: "+tokenHash(tokWeb),
		"  - name: newbie\n    token_sha256: "+tokenHash(tokNewbie), 1)
	ts.writeConfig(newConfig)
	waitFor(t, "the watcher's reload", func() bool { return len(ts.logs.lines(`"msg":"config in force"`, `"generation":2`)) == 1 })
	okAtReload := backendOK.Load()
	waitFor(t, "calls after the reload", func() bool { return backendOK.Load() > okAtReload+200 })
	stop.Store(true)
	wg.Wait()
	if n := backErr.Load(); n != 0 {
		t.Errorf("%d of backend's calls failed across the reload (first: %v)", n, firstErr.Load())
	}
	_, err := ts.client.GenerateUserSig(ts.as(tokWeb), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u_1"})
	wantCode(t, "web after the reload", err, codes.Unauthenticated, "")
	_, err = ts.client.GenerateUserSig(ts.as(tokNewbie), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u_1"})
	wantCode(t, "newbie after the reload", err, codes.OK, "")
	t.Logf("%d calls, none failed, across a reload", backendOK.Load())
}

// TestBadReloadKeepsOld: a config that fails validation is rejected with a
// log line per problem, and the one in force stays.
func TestBadReloadKeepsOld(t *testing.T) {
	noWatch := strings.Replace(fixtureConfig, "interval: 50ms", "interval: 0s", 1)
	ts := startServer(t, noWatch)
	call := func(name string) {
		t.Helper()
		_, err := ts.client.GenerateUserSig(ts.as(tokWeb), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u_1"})
		wantCode(t, name, err, codes.OK, "")
	}
	for _, tc := range []struct {
		name    string
		change  func()
		problem string
	}{
		{"unknown key", func() { ts.writeConfig(noWatch + "bogus: 1\n") }, `unknown key \"bogus\"`},
		{"bad regex", func() { ts.writeConfig(strings.Replace(noWatch, "'^u_[0-9]{1,16}$'", "'^u_[0-9'", 1)) }, "callers[1].user_id_pattern"},
		{"key file readable by others", func() { ts.writeFile("primary.key", "a-new-primary-key-0123456789abcdef0123456789abcdef", 0o644) }, "is readable by others"},
	} {
		tc.change()
		if err := ts.srv.Reload(); err == nil {
			t.Errorf("%s: Reload succeeded, want it rejected", tc.name)
		}
		if lines := ts.logs.lines(`"msg":"reload rejected; the config in force stays"`, tc.problem); len(lines) != 1 {
			t.Errorf("%s: want one log line naming %q, got %q", tc.name, tc.problem, lines)
		}
		call(tc.name + ": the old config still serves")
		// Put the fixture back.
		ts.writeFile("primary.key", keyPrimary+"\n", 0o600)
		ts.writeConfig(noWatch)
	}
	_, body := ts.httpGet("/metrics")
	if !strings.Contains(body, `usersig_config_reloads_total{result="failure"} 3`) || !strings.Contains(body, "usersig_config_generation 1") {
		t.Errorf("metrics do not count 3 failed reloads at generation 1:\n%s", grepLines(body, "usersig_config"))
	}
}

// TestReloadOnKeyFileChange: the watcher reloads when a key file changes;
// a bad change is rejected once, and fixing it reloads.
func TestReloadOnKeyFileChange(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	const newKey = "rotated-in-place-0123456789abcdef0123456789abcdef0123456789abcd"
	ts.writeFile("primary.key", newKey, 0o644)
	waitFor(t, "the watcher to reject an others-readable key file", func() bool {
		return len(ts.logs.lines(`"msg":"reload rejected; the config in force stays"`, "readable by others")) == 1
	})
	ts.writeFile("primary.key", newKey, 0o600)
	waitFor(t, "a reload after the key file was fixed", func() bool {
		return len(ts.logs.lines(`"msg":"config in force"`, `"generation":2`)) == 1
	})
	if n := len(ts.logs.lines("readable by others")); n != 1 {
		t.Errorf("the rejected change was logged %d times, want once", n)
	}
	r, err := ts.client.GenerateUserSig(ts.as(tokBackend), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	k, _ := signer.NewKey([]byte(newKey))
	if v := signer.Verify(r.UserSig, appA, "u1", []*signer.Key{k}, ts.clock.Now()); v.Status != signer.Valid {
		t.Errorf("a ticket after the key file changed verifies as %v with the new key", v.Status)
	}
	if strings.Contains(ts.logs.String(), newKey[:16]) {
		t.Errorf("the new key was logged")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestUserIDPatternCannotEscape: a user_id_pattern with an unbalanced ")"
// once closed the group it was wrapped in, so 'u_[0-9]+)|(x' let web mint
// for u_1zzz. Such a config is refused, naming the field, and web stays
// held to the pattern in force.
func TestUserIDPatternCannotEscape(t *testing.T) {
	noWatch := strings.Replace(fixtureConfig, "interval: 50ms", "interval: 0s", 1)
	ts := startServer(t, noWatch)
	mint := func(name, userID string, want codes.Code) {
		t.Helper()
		_, err := ts.client.GenerateUserSig(ts.as(tokWeb), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: userID})
		wantCode(t, name, err, want, "")
	}
	mint("u_1 under the pattern in force", "u_1", codes.OK)
	mint("u_1zzz under the pattern in force", "u_1zzz", codes.PermissionDenied)
	ts.writeConfig(strings.Replace(noWatch, "'^u_[0-9]{1,16}$'", "'u_[0-9]+)|(x'", 1))
	err := ts.srv.Reload()
	if err == nil || !strings.Contains(err.Error(), "callers[1].user_id_pattern: error parsing regexp: unexpected ): `u_[0-9]+)|(x`") {
		t.Errorf("Reload with an unbalanced pattern: %v, want it refused naming callers[1].user_id_pattern", err)
	}
	mint("u_1zzz after the refused reload", "u_1zzz", codes.PermissionDenied)
	// Without its own anchors, a balanced pattern still matches only
	// whole user ids.
	ts.writeConfig(strings.Replace(noWatch, "'^u_[0-9]{1,16}$'", "'u_[0-9]+|x'", 1))
	if err := ts.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	mint("u_1zzz under u_[0-9]+|x", "u_1zzz", codes.PermissionDenied)
	mint("xx under u_[0-9]+|x", "xx", codes.PermissionDenied)
	mint("x under u_[0-9]+|x", "x", codes.OK)
	mint("u_12 under u_[0-9]+|x", "u_12", codes.OK)
}

// TestConfigStale: usersig_config_stale is 1 while a reload has been
// refused and the files on disk differ from the config in force: a
// removed caller stays in force until the files are fixed. It falls to 0
// when the files in force are put back, even with no reload to notice
// (reload.interval 0s, SIGHUP only), and when a fixed config reloads.
func TestConfigStale(t *testing.T) {
	noWatch := strings.Replace(fixtureConfig, "interval: 50ms", "interval: 0s", 1)
	ts := startServer(t, noWatch)
	stale := func(when, want string) {
		t.Helper()
		_, body := ts.httpGet("/metrics")
		if !strings.Contains(body, "\nusersig_config_stale "+want+"\n") {
			t.Errorf("%s: want usersig_config_stale %s, /metrics says\n%s", when, want, grepLines(body, "usersig_config_stale"))
		}
	}
	webCalls := func(name string, want codes.Code) {
		t.Helper()
		_, err := ts.client.GenerateUserSig(ts.as(tokWeb), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u_1"})
		wantCode(t, name, err, want, "")
	}
	withoutWeb := strings.Replace(noWatch, "  - name: web\n", "  - name: web2\n", 1)
	withoutWeb = strings.Replace(withoutWeb, tokenHash(tokWeb), tokenHash("tok-web2-00000000000000000000"), 1)
	const keyNext = "next-old-key-fedcba9876543210fedcba9876543210fedcba987654321"
	stale("at start", "0")

	// removeWebWithBrokenKey removes web from the config but writes a key
	// file others may read: the reload is refused.
	removeWebWithBrokenKey := func() {
		t.Helper()
		ts.writeConfig(withoutWeb)
		ts.writeFile("old.key", keyNext, 0o644)
		if err := ts.srv.Reload(); err == nil {
			t.Fatal("Reload with an others-readable key file succeeded")
		}
	}

	// The operator removes web, but a key file is broken: the reload is
	// refused and web stays in force.
	removeWebWithBrokenKey()
	stale("after the refused reload", "1")
	webCalls("web, removed by the refused config", codes.OK)
	stale("read twice", "1")

	// Putting back the files in force is not stale, with no reload.
	ts.writeConfig(noWatch)
	stale("with the config put back but the key file not", "1")
	ts.writeFile("old.key", keyOld, 0o440)
	stale("with the files in force put back", "0")

	// Refused again; then fixed forward and reloaded.
	removeWebWithBrokenKey()
	stale("after the second refused reload", "1")
	ts.writeFile("old.key", keyNext, 0o440)
	stale("fixed on disk but not reloaded", "1")
	if err := ts.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	stale("after the fixed config reloaded", "0")
	webCalls("web, removed by the reloaded config", codes.Unauthenticated)

	// A refused reload of a config that differs only in the mode of a
	// file does not leave a stale config: what is in force is what the
	// files say.
	ts.writeFile("old.key", keyNext, 0o620)
	if err := ts.srv.Reload(); err == nil {
		t.Fatal("Reload with a group-writable key file succeeded")
	}
	stale("after a refused reload of the same contents", "0")
	if strings.Contains(ts.logs.String(), keyNext[:16]) {
		t.Errorf("the logs hold part of a key")
	}
}

// TestConfigStaleWatched: with the watcher, a broken key file makes the
// gauge 1, and fixing it reloads and makes it 0.
func TestConfigStaleWatched(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	const newKey = "rotated-in-place-0123456789abcdef0123456789abcdef0123456789abcd"
	ts.writeFile("primary.key", newKey, 0o644)
	waitFor(t, "the gauge to rise", func() bool {
		_, body := ts.httpGet("/metrics")
		return strings.Contains(body, "\nusersig_config_stale 1\n")
	})
	ts.writeFile("primary.key", newKey, 0o600)
	waitFor(t, "the gauge to fall after the fix reloaded", func() bool {
		_, body := ts.httpGet("/metrics")
		return strings.Contains(body, "\nusersig_config_stale 0\n") && strings.Contains(body, "\nusersig_config_generation 2\n")
	})
}

// TestStaticSettingsWarning: a reload warns that a start-only setting
// changed only when its value did, not when a comment moved the lines or
// the same duration is written another way.
func TestStaticSettingsWarning(t *testing.T) {
	noWatch := strings.Replace(fixtureConfig, "interval: 50ms", "interval: 0s", 1)
	ts := startServer(t, noWatch)
	warnings := func() int { return len(ts.logs.lines("this setting does not reload")) }
	for _, tc := range []struct {
		name   string
		config string
		warn   bool
	}{
		{"a comment above reload", strings.Replace(noWatch, "reload:", "# reloaded every tick\n\n\nreload:", 1), false},
		{"0s written as 0ms", strings.Replace(noWatch, "interval: 0s", "interval: 0ms", 1), false},
		{"max_call_duration 5s written out", strings.Replace(noWatch, "listen: 127.0.0.1:0\nhttp:", "listen: 127.0.0.1:0\n  max_call_duration: 5000ms\nhttp:", 1), false},
		{"http_api added", noWatch + "http_api: {listen: 127.0.0.1:0}\n", true},
		{"max_call_duration changed", strings.Replace(noWatch, "listen: 127.0.0.1:0\nhttp:", "listen: 127.0.0.1:0\n  max_call_duration: 7s\nhttp:", 1), true},
		{"rate_limits local written out", noWatch + "rate_limits: {backend: local, on_backend_error: local}\n", false},
		{"rate_limits to redis", noWatch + "rate_limits: {backend: redis, redis: {addr: 127.0.0.1:1}}\n", true},
	} {
		before := warnings()
		ts.writeConfig(tc.config)
		if err := ts.srv.Reload(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := warnings() > before; got != tc.warn {
			t.Errorf("%s: warned %v, want %v:\n%s", tc.name, got, tc.warn, ts.logs.lines("this setting does not reload"))
		}
	}
}
