package main_test

import (
	"bytes"
	"compress/zlib"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// bin is the usersig binary, built once for all tests.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "usersig-cli")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "usersig")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		panic("building usersig: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	secret = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"
	// xiaojun's UserSig from the documented example: app 1400000000, issued
	// at 1700000000 for 15552000 s.
	xiaojunSig = "LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4="
)

type run struct {
	stdout, stderr string
	code           int
}

func usersig(t *testing.T, env []string, stdin string, args ...string) run {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return run{out.String(), errb.String(), code}
}

func writeKey(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestGenVerifyDecode(t *testing.T) {
	key := writeKey(t, secret+"\n")
	gen := usersig(t, nil, "", "gen", "--sdkappid", "1400000000", "--key-file", key, "--user-id", "xiaojun", "--ttl", "15552000s", "--at", "1700000000")
	if gen.code != 0 || gen.stderr != "" || strings.Count(gen.stdout, "\n") != 1 {
		t.Fatalf("gen = %+v, want one line and exit 0", gen)
	}
	ticket := strings.TrimSpace(gen.stdout)
	// The same ticket from the environment instead of a file.
	if env := usersig(t, []string{"USERSIG_KEY=" + secret}, "", "gen", "--sdkappid", "1400000000", "--user-id", "xiaojun", "--ttl", "15552000s", "--at", "1700000000"); env.stdout != gen.stdout {
		t.Errorf("gen with USERSIG_KEY = %+v, want %q", env, gen.stdout)
	}

	dec := usersig(t, nil, "", "decode", ticket)
	var d map[string]any
	if err := json.Unmarshal([]byte(dec.stdout), &d); err != nil || dec.code != 0 {
		t.Fatalf("decode = %+v (%v)", dec, err)
	}
	if d["sig"] != xiaojunSig || d["identifier"] != "xiaojun" || d["sdkAppId"] != 1400000000.0 || d["time"] != 1700000000.0 || d["expire"] != 15552000.0 {
		t.Errorf("decode printed %v, want the documented example with sig %s", d, xiaojunSig)
	}

	for _, tc := range []struct {
		name   string
		args   []string
		stdin  string
		code   int
		status string
	}{
		{"valid", []string{"--at", "1700000000", ticket}, "", 0, "VERIFY_STATUS_VALID"},
		{"from stdin", []string{"--at", "1700000000"}, ticket + "\n", 0, "VERIFY_STATUS_VALID"},
		{"dash is stdin", []string{"--at", "1700000000", "-"}, ticket, 0, "VERIFY_STATUS_VALID"},
		{"expired", []string{"--at", "1715552001", ticket}, "", 1, "VERIFY_STATUS_EXPIRED"},
		{"malformed", []string{"--at", "1700000000", "not-a-ticket"}, "", 1, "VERIFY_STATUS_MALFORMED"},
		{"truncated", []string{"--at", "1700000000", ticket[:40]}, "", 1, "VERIFY_STATUS_MALFORMED"},
	} {
		args := append([]string{"verify", "--sdkappid", "1400000000", "--key-file", key, "--user-id", "xiaojun"}, tc.args...)
		r := usersig(t, nil, tc.stdin, args...)
		var v map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || strings.Count(r.stdout, "\n") != 1 {
			t.Errorf("%s: verify printed %q, want one JSON line (%v)", tc.name, r.stdout, err)
			continue
		}
		if r.code != tc.code || v["status"] != tc.status || r.stderr != "" {
			t.Errorf("%s: verify = %+v, want exit %d status %s", tc.name, r, tc.code, tc.status)
		}
		if v["valid"] != (tc.code == 0) {
			t.Errorf("%s: valid = %v", tc.name, v["valid"])
		}
		// The kind is reported once the MAC matched (expired included).
		wantKind := "TICKET_KIND_UNSPECIFIED"
		if tc.status == "VERIFY_STATUS_VALID" || tc.status == "VERIFY_STATUS_EXPIRED" {
			wantKind = "TICKET_KIND_USER_SIG"
		}
		if v["kind"] != wantKind {
			t.Errorf("%s: kind = %v, want %s", tc.name, v["kind"], wantKind)
		}
	}
	// Another user and another app, and a rotated key list.
	other := writeKey(t, "the-new-key-0123456789abcdef0123456789abcdef")
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		status string
		keyID  string
	}{
		{"other user", []string{"--sdkappid", "1400000000", "--key-file", key, "--user-id", "xiaoming"}, 1, "VERIFY_STATUS_USER_ID_MISMATCH", key},
		{"other app", []string{"--sdkappid", "1400000001", "--key-file", key, "--user-id", "xiaojun"}, 1, "VERIFY_STATUS_SDK_APP_ID_MISMATCH", key},
		{"other key", []string{"--sdkappid", "1400000000", "--key-file", other, "--user-id", "xiaojun"}, 1, "VERIFY_STATUS_SIGNATURE_MISMATCH", ""},
		{"old key second", []string{"--sdkappid", "1400000000", "--key-file", other, "--key-file", key, "--user-id", "xiaojun"}, 0, "VERIFY_STATUS_VALID", key},
	} {
		r := usersig(t, nil, "", append(append([]string{"verify"}, tc.args...), "--at", "1700000000", ticket)...)
		var v map[string]any
		json.Unmarshal([]byte(r.stdout), &v)
		if r.code != tc.code || v["status"] != tc.status || v["keyId"] != tc.keyID {
			t.Errorf("%s: verify = %+v, want exit %d status %s key %q", tc.name, r, tc.code, tc.status, tc.keyID)
		}
	}
}

func TestGenPrivateMapKey(t *testing.T) {
	key := writeKey(t, secret)
	for _, tc := range []struct {
		name string
		args []string
		room map[string]any
	}{
		{"numeric room", []string{"--room-id", "10000"}, map[string]any{"roomId": 10000.0, "privilegeMap": 255.0}},
		{"string room", []string{"--room-str", "live-room_42", "--privilege", "42"}, map[string]any{"roomStr": "live-room_42", "privilegeMap": 42.0}},
	} {
		gen := usersig(t, nil, "", append([]string{"gen", "--sdkappid", "1400000000", "--key-file", key, "--user-id", "xiaojun", "--ttl", "15552000s", "--at", "1700000000"}, tc.args...)...)
		if gen.code != 0 {
			t.Fatalf("%s: gen = %+v", tc.name, gen)
		}
		r := usersig(t, nil, gen.stdout, "verify", "--sdkappid", "1400000000", "--key-file", key, "--user-id", "xiaojun", "--at", "1700000000")
		var v struct {
			Status        string         `json:"status"`
			Kind          string         `json:"kind"`
			PrivateMapKey map[string]any `json:"privateMapKey"`
		}
		json.Unmarshal([]byte(r.stdout), &v)
		if r.code != 0 || v.Status != "VERIFY_STATUS_VALID" || v.Kind != "TICKET_KIND_PRIVATE_MAP_KEY" {
			t.Fatalf("%s: verify = %+v, want VALID and kind TICKET_KIND_PRIVATE_MAP_KEY", tc.name, r)
		}
		for k, want := range tc.room {
			if v.PrivateMapKey[k] != want {
				t.Errorf("%s: privateMapKey.%s = %v, want %v", tc.name, k, v.PrivateMapKey[k], want)
			}
		}
		if v.PrivateMapKey["expireTime"] != "2024-05-12T22:13:20Z" {
			t.Errorf("%s: privateMapKey.expireTime = %v, want the ticket's expiry", tc.name, v.PrivateMapKey["expireTime"])
		}
	}
	// The documented PrivateMapKey example, byte for byte in its userbuf.
	gen := usersig(t, nil, "", "gen", "--sdkappid", "1400000000", "--key-file", key, "--user-id", "xiaojun", "--ttl", "15552000s", "--at", "1700000000", "--room-id", "10000")
	dec := usersig(t, nil, gen.stdout, "decode")
	if !strings.Contains(dec.stdout, `"userbuf":"AAAHeGlhb2p1blNyTgAAACcQZkE/AAAAAP8AAAAA"`) || !strings.Contains(dec.stdout, `"sig":"y9Avb5xwHgIgoABbGakLaE0xs+v/dLcIPegbWfcbRLI="`) {
		t.Errorf("decode of the documented PrivateMapKey printed %s", dec.stdout)
	}
}

// TestUsageErrors: one line on stderr naming the problem, exit 2, nothing
// on stdout.
func TestUsageErrors(t *testing.T) {
	key := writeKey(t, secret)
	empty := writeKey(t, "\n")
	base := []string{"--sdkappid", "1400000000", "--key-file", key}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"no command", nil, nil, "no command"},
		{"unknown command", nil, []string{"sign"}, "argument 1 is not a command"},
		{"unknown flag", nil, []string{"gen", "--bogus"}, "argument 2 is not a known flag"},
		{"missing sdkappid", nil, []string{"gen", "--key-file", key, "--user-id", "u"}, "--sdkappid is required"},
		{"sdkappid above 32 bits", nil, []string{"gen", "--sdkappid", "4294967296", "--key-file", key, "--user-id", "u"}, "--sdkappid must be 1 to 4294967295"},
		{"sdkappid not a number", nil, []string{"gen", "--sdkappid", "abc"}, "--sdkappid: not a valid number"},
		{"sdkappid without a value", nil, []string{"gen", "--user-id", "u", "--sdkappid"}, "--sdkappid needs a value"},
		{"missing user id", nil, append([]string{"gen"}, base...), "--user-id is required"},
		{"invalid user id", nil, append([]string{"gen", "--user-id", "a b"}, base...), "--user-id must be 1 to 32 bytes"},
		{"33-byte user id", nil, append([]string{"gen", "--user-id", strings.Repeat("u", 33)}, base...), "--user-id must be 1 to 32 bytes"},
		{"no key", nil, []string{"gen", "--sdkappid", "1400000000", "--user-id", "u"}, "no key: pass --key-file or set USERSIG_KEY"},
		{"unreadable key file", nil, []string{"gen", "--sdkappid", "1400000000", "--user-id", "u", "--key-file", "/nonexistent/key"}, "--key-file: no such file or directory"},
		{"empty key file", nil, []string{"gen", "--sdkappid", "1400000000", "--user-id", "u", "--key-file", empty}, "is empty"},
		{"ttl 0", nil, append([]string{"gen", "--user-id", "u", "--ttl", "0s"}, base...), "--ttl must be at least 1s"},
		{"fractional ttl", nil, append([]string{"gen", "--user-id", "u", "--ttl", "1.5s"}, base...), "--ttl must be a whole number of seconds"},
		{"ttl past 2106", nil, append([]string{"gen", "--user-id", "u", "--ttl", "876000h"}, base...), "--ttl must end by 2106"},
		{"bad ttl", nil, append([]string{"gen", "--user-id", "u", "--ttl", "soon"}, base...), "--ttl: not a valid duration"},
		{"negative at", nil, append([]string{"gen", "--user-id", "u", "--at", "-5"}, base...), "--at must be a Unix time"},
		{"two rooms", nil, append([]string{"gen", "--user-id", "u", "--room-id", "1", "--room-str", "a"}, base...), "exclude each other"},
		{"room 0", nil, append([]string{"gen", "--user-id", "u", "--room-id", "0"}, base...), "--room-id must be 1 to 4294967295"},
		{"room above 32 bits", nil, append([]string{"gen", "--user-id", "u", "--room-id", "4294967296"}, base...), "--room-id must be 1 to 4294967295"},
		{"bad room str", nil, append([]string{"gen", "--user-id", "u", "--room-str", `"quoted"`}, base...), "--room-str must be 1 to 64 bytes"},
		{"privilege 0", nil, append([]string{"gen", "--user-id", "u", "--room-id", "1", "--privilege", "0"}, base...), "--privilege must be 1 to 255"},
		{"privilege 256", nil, append([]string{"gen", "--user-id", "u", "--room-id", "1", "--privilege", "256"}, base...), "--privilege must be 1 to 255"},
		{"privilege without a room", nil, append([]string{"gen", "--user-id", "u", "--privilege", "1"}, base...), "--privilege needs --room-id or --room-str"},
		{"stray argument", nil, append([]string{"gen", "--user-id", "u", "extra"}, base...), "argument 4 is unexpected"},
		{"stray argument after --", nil, append(append([]string{"gen", "--user-id", "u"}, base...), "--", "extra"), "argument 9 is unexpected"},
		{"verify without a ticket", nil, append([]string{"verify", "--user-id", "u"}, base...), "no ticket"},
		{"verify two tickets", nil, append([]string{"verify", "--user-id", "u", "a", "b"}, base...), "argument 5 is a second ticket: want one ticket"},
		{"verify invalid user id", nil, append([]string{"verify", "--user-id", "u!", "ticket"}, base...), "--user-id must be"},
		{"verify unreadable key", nil, []string{"verify", "--sdkappid", "1", "--user-id", "u", "--key-file", "/nonexistent", "t"}, "--key-file"},
		{"decode without a ticket", nil, []string{"decode"}, "no ticket"},
	} {
		r := usersig(t, tc.env, "", tc.args...)
		if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%s: usersig %q = exit %d, stdout %q, stderr %q; want exit 2, no stdout, one line naming %q",
				tc.name, tc.args, r.code, r.stdout, r.stderr, tc.want)
		}
		if strings.Contains(r.stderr, secret) {
			t.Errorf("%s: the key appeared on stderr", tc.name)
		}
	}
}

func TestDecodeMalformed(t *testing.T) {
	r := usersig(t, nil, "", "decode", "eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwkEhUNHilOzEgoLMFCUrQxMDKIDIlGTmpipZGZobWJgbWhqaWUJEUysKMotSlayMYcqKM9OVrJQKwgwsDFKdsl1SjCvdDCKr8r1Ss")
	if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, "usersig decode: malformed: ") {
		t.Errorf("decode of a truncated ticket = %+v, want exit 1 and a malformed reason", r)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"gen", "-h"}} {
		r := usersig(t, nil, "", args...)
		if r.code != 0 || !strings.Contains(r.stdout, "usersig gen") || r.stderr != "" {
			t.Errorf("usersig %q = %+v, want the usage on stdout", args, r)
		}
	}
}

// signedTicket is a ticket for user of app 1400000000, signed with secret
// as Tencent's libraries sign it, laid out as their Node.js library lays it
// out; userbuf64 is "" for none. It reaches what gen will not mint.
func signedTicket(t *testing.T, user string, at, expire int64, userbuf64 string) string {
	t.Helper()
	msg := fmt.Sprintf("TLS.identifier:%s\nTLS.sdkappid:1400000000\nTLS.time:%d\nTLS.expire:%d\n", user, at, expire)
	ub := ""
	if userbuf64 != "" {
		msg += "TLS.userbuf:" + userbuf64 + "\n"
		ub = `,"TLS.userbuf":"` + userbuf64 + `"`
	}
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(msg))
	doc := fmt.Sprintf(`{"TLS.ver":"2.0","TLS.identifier":"%s","TLS.sdkappid":1400000000,"TLS.time":%d,"TLS.expire":%d%s,"TLS.sig":"%s"}`,
		user, at, expire, ub, base64.StdEncoding.EncodeToString(h.Sum(nil)))
	var z bytes.Buffer
	w := zlib.NewWriter(&z)
	w.Write([]byte(doc))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer("+", "*", "/", "-", "=", "_").Replace(base64.StdEncoding.EncodeToString(z.Bytes()))
}

// TestLifetimeBound: a correctly signed ticket may carry times up to
// 9999-12-31T23:59:59Z, the last second a protobuf Timestamp holds, and
// verify and decode print them; a second later it is MALFORMED, answered
// in JSON with exit 1, never a failure to print.
func TestLifetimeBound(t *testing.T) {
	const maxTime = 253402300799 // 9999-12-31T23:59:59Z
	key := writeKey(t, secret)
	for _, tc := range []struct {
		name         string
		at, expire   int64
		reason       string // "" for VALID
		issue, until string
	}{
		{"expiry at the bound", 1700000000, maxTime - 1700000000, "", "2023-11-14T22:13:20Z", "9999-12-31T23:59:59Z"},
		{"issued at the bound", maxTime, 0, "", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"},
		{"expiry a second past", 1700000000, maxTime - 1700000000 + 1, "the ticket's TLS.time + TLS.expire is past 9999-12-31T23:59:59Z", "", ""},
		{"issued a second past", maxTime + 1, 0, "the ticket's TLS.time is past 9999-12-31T23:59:59Z", "", ""},
		{"largest expire", 0, 1<<63 - 1, "the ticket's TLS.time + TLS.expire is past 9999-12-31T23:59:59Z", "", ""},
	} {
		ticket := signedTicket(t, "xiaojun", tc.at, tc.expire, "")
		v := usersig(t, nil, ticket, "verify", "--sdkappid", "1400000000", "--key-file", key, "--user-id", "xiaojun", "--at", "1700000000")
		var vr map[string]any
		if err := json.Unmarshal([]byte(v.stdout), &vr); err != nil || v.stderr != "" {
			t.Errorf("%s: verify = %+v, want one JSON answer and nothing on stderr (%v)", tc.name, v, err)
			continue
		}
		d := usersig(t, nil, ticket, "decode")
		if tc.reason != "" {
			if v.code != 1 || vr["status"] != "VERIFY_STATUS_MALFORMED" || vr["malformedReason"] != tc.reason {
				t.Errorf("%s: verify = %+v, want exit 1, MALFORMED: %s", tc.name, v, tc.reason)
			}
			if d.code != 1 || d.stdout != "" || d.stderr != "usersig decode: malformed: "+tc.reason+"\n" {
				t.Errorf("%s: decode = %+v, want exit 1 and the reason", tc.name, d)
			}
			continue
		}
		if v.code != 0 || vr["status"] != "VERIFY_STATUS_VALID" || vr["issueTime"] != tc.issue || vr["expireTime"] != tc.until {
			t.Errorf("%s: verify = %+v, want VALID from %s until %s", tc.name, v, tc.issue, tc.until)
		}
		var dr map[string]any
		if err := json.Unmarshal([]byte(d.stdout), &dr); err != nil || d.code != 0 || dr["issueTime"] != tc.issue || dr["expireTime"] != tc.until ||
			dr["time"] != float64(tc.at) || dr["expire"] != float64(tc.expire) {
			t.Errorf("%s: decode = %+v, want times %s..%s (%v)", tc.name, d, tc.issue, tc.until, err)
		}
	}
}

// TestDecodeKind: decode names what a ticket is as usersig.v1.TicketKind
// names it.
func TestDecodeKind(t *testing.T) {
	key := writeKey(t, secret)
	gen := func(args ...string) string {
		r := usersig(t, nil, "", append([]string{"gen", "--sdkappid", "1400000000", "--key-file", key, "--user-id", "u", "--at", "1700000000"}, args...)...)
		if r.code != 0 {
			t.Fatalf("gen %q = %+v", args, r)
		}
		return r.stdout
	}
	for _, tc := range []struct{ name, ticket, kind string }{
		{"UserSig", gen(), "TICKET_KIND_USER_SIG"},
		{"PrivateMapKey", gen("--room-id", "10000"), "TICKET_KIND_PRIVATE_MAP_KEY"},
		{"PrivateMapKey, string room", gen("--room-str", "r1"), "TICKET_KIND_PRIVATE_MAP_KEY"},
		{"other userbuf", signedTicket(t, "u", 1700000000, 60, "AQID"), "TICKET_KIND_OTHER_USER_BUF"},
	} {
		r := usersig(t, nil, tc.ticket, "decode")
		var d map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || r.code != 0 || d["kind"] != tc.kind {
			t.Errorf("%s: decode = %+v, want kind %s (%v)", tc.name, r, tc.kind, err)
		}
	}
}

// TestNoEcho puts a secret in every wrong place on the command line: the
// usage error names a position or a flag, and neither stdout nor stderr
// holds the secret.
func TestNoEcho(t *testing.T) {
	key := writeKey(t, secret)
	ticket := signedTicket(t, "xiaojun", 1700000000, 60, "")
	const (
		pastedTicket = "eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwkEhUNHilOzEgoLMFCUrQxMDKIDIlGTmpipZGZob"
		pem          = "-----BEGIN PRIVATE KEY-----MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
	)
	gen := []string{"gen", "--sdkappid", "1400000000", "--key-file", key, "--user-id", "u"}
	verify := []string{"verify", "--sdkappid", "1400000000", "--key-file", key, "--user-id", "xiaojun"}
	with := func(base []string, more ...string) []string { return append(append([]string{}, base...), more...) }
	for _, tc := range []struct {
		name   string
		args   []string
		secret string
		want   string
	}{
		{"unknown command", []string{pastedTicket}, pastedTicket, "usersig: argument 1 is not a command"},
		{"key as the command", []string{secret, "gen"}, secret, "argument 1 is not a command"},
		{"gen stray argument", with(gen, pastedTicket), pastedTicket, "argument 8 is unexpected"},
		{"gen stray key", with(gen, secret), secret, "argument 8 is unexpected"},
		{"gen stray argument after --", with(gen, "--", secret), secret, "argument 9 is unexpected"},
		{"unknown flag", with(gen, "--"+pastedTicket), pastedTicket, "argument 8 is not a known flag"},
		{"unknown flag, one dash", with(gen, "-"+secret), secret, "argument 8 is not a known flag"},
		{"unknown flag with a value", with(gen, "--"+secret+"=x"), secret, "argument 8 is not a known flag"},
		{"unknown flag's value", with(gen, "--key="+secret), secret, "argument 8 is not a known flag"},
		{"PEM as a flag", with(gen, pem), pem, "argument 8 is not a known flag"},
		{"PEM as verify's ticket", with(verify, pem), pem, "argument 8 is not a known flag"},
		{"PEM to decode", []string{"decode", pem}, pem, "argument 2 is not a known flag"},
		{"decode unknown flag", []string{"decode", "--" + pastedTicket}, pastedTicket, "argument 2 is not a known flag"},
		{"sdkappid", []string{"gen", "--sdkappid", secret}, secret, "--sdkappid: not a valid number"},
		{"sdkappid=", []string{"verify", "--sdkappid=" + pastedTicket}, pastedTicket, "--sdkappid: not a valid number"},
		{"at", with(verify, "--at", secret), secret, "--at: not a valid number"},
		{"ttl", with(gen, "--ttl", pastedTicket), pastedTicket, "--ttl: not a valid duration"},
		{"ttl=", with(gen, "--ttl="+secret), secret, "--ttl: not a valid duration"},
		{"room-id", with(gen, "--room-id", secret), secret, "--room-id: not a valid number"},
		{"privilege", with(gen, "--room-id", "1", "--privilege", pastedTicket), pastedTicket, "--privilege: not a valid number"},
		{"user-id", []string{"gen", "--sdkappid", "1400000000", "--key-file", key, "--user-id", pastedTicket}, pastedTicket, "--user-id must be"},
		{"room-str", with(gen, "--room-str", pastedTicket), pastedTicket, "--room-str must be"},
		{"key-file", []string{"gen", "--sdkappid", "1400000000", "--key-file", secret, "--user-id", "u"}, secret, "--key-file: no such file or directory"},
		{"verify second ticket", with(verify, ticket, pastedTicket), pastedTicket, "argument 9 is a second ticket"},
		{"verify ticket then key", with(verify, ticket, secret), secret, "argument 9 is a second ticket"},
		{"decode second ticket", []string{"decode", ticket, pastedTicket}, pastedTicket, "argument 3 is a second ticket"},
	} {
		r := usersig(t, nil, "", tc.args...)
		if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 2, one line naming %q", tc.name, r.code, r.stdout, r.stderr, tc.want)
		}
		mark := strings.TrimLeft(tc.secret, "-")[:12]
		for _, s := range []string{mark, ticket[:12], secret[:12]} {
			if strings.Contains(r.stdout+r.stderr, s) {
				t.Errorf("%s: the output repeats what was passed (%q): %q", tc.name, s, r.stderr)
			}
		}
	}
}
