package cli_test

import (
	"bytes"
	"compress/zlib"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usersig/usersig/cmd/usersig/cli"
)

const (
	secret = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"
	// xiaojun's UserSig from the documented example: app 1400000000, issued
	// at 1700000000 for 15552000 s.
	xiaojunSig = "LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4="
)

// result is what one run of the command printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// usersig runs the command as the binary would run it with args, stdin and
// an environment holding only env.
func usersig(env map[string]string, stdin string, args ...string) result {
	var out, errb strings.Builder
	code := cli.Run(args, strings.NewReader(stdin), &out, &errb, func(k string) string { return env[k] })
	return result{out.String(), errb.String(), code}
}

func writeKey(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// with returns base followed by more, leaving base alone.
func with(base []string, more ...string) []string {
	return append(append([]string{}, base...), more...)
}

func TestGenVerifyDecode(t *testing.T) {
	key := writeKey(t, secret+"\n")
	genArgs := []string{"gen", "--sdkappid", "1400000000", "--key-file", key, "--user-id", "xiaojun", "--ttl", "15552000s", "--at", "1700000000"}
	gen := usersig(nil, "", genArgs...)
	if gen.code != 0 || gen.stderr != "" || strings.Count(gen.stdout, "\n") != 1 {
		t.Fatalf("usersig %q = %+v, want one line and exit 0", genArgs, gen)
	}
	ticket := strings.TrimSpace(gen.stdout)
	// The same ticket from the environment instead of a file.
	envArgs := []string{"gen", "--sdkappid", "1400000000", "--user-id", "xiaojun", "--ttl", "15552000s", "--at", "1700000000"}
	if r := usersig(map[string]string{cli.KeyEnv: secret}, "", envArgs...); r.stdout != gen.stdout {
		t.Errorf("usersig %q with %s = %+v, want %q", envArgs, cli.KeyEnv, r, gen.stdout)
	}

	dec := usersig(nil, "", "decode", ticket)
	var d map[string]any
	if err := json.Unmarshal([]byte(dec.stdout), &d); err != nil || dec.code != 0 {
		t.Fatalf("usersig decode TICKET = %+v (%v)", dec, err)
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
		t.Run(tc.name, func(t *testing.T) {
			args := with([]string{"verify", "--sdkappid", "1400000000", "--key-file", key, "--user-id", "xiaojun"}, tc.args...)
			r := usersig(nil, tc.stdin, args...)
			var v map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || strings.Count(r.stdout, "\n") != 1 {
				t.Fatalf("usersig %q printed %q, want one JSON line (%v)", args, r.stdout, err)
			}
			if r.code != tc.code || v["status"] != tc.status || r.stderr != "" {
				t.Errorf("usersig %q = %+v, want exit %d status %s", args, r, tc.code, tc.status)
			}
			if v["valid"] != (tc.code == 0) {
				t.Errorf("usersig %q: valid = %v", args, v["valid"])
			}
			// The kind is reported once the MAC matched (expired included).
			wantKind := "TICKET_KIND_UNSPECIFIED"
			if tc.status == "VERIFY_STATUS_VALID" || tc.status == "VERIFY_STATUS_EXPIRED" {
				wantKind = "TICKET_KIND_USER_SIG"
			}
			if v["kind"] != wantKind {
				t.Errorf("usersig %q: kind = %v, want %s", args, v["kind"], wantKind)
			}
		})
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
		t.Run(tc.name, func(t *testing.T) {
			args := with(with([]string{"verify"}, tc.args...), "--at", "1700000000", ticket)
			r := usersig(nil, "", args...)
			var v map[string]any
			json.Unmarshal([]byte(r.stdout), &v)
			if r.code != tc.code || v["status"] != tc.status || v["keyId"] != tc.keyID {
				t.Errorf("usersig %q = %+v, want exit %d status %s key %q", args, r, tc.code, tc.status, tc.keyID)
			}
		})
	}
}

func TestGenPrivateMapKey(t *testing.T) {
	key := writeKey(t, secret)
	gen := []string{"gen", "--sdkappid", "1400000000", "--key-file", key, "--user-id", "xiaojun", "--ttl", "15552000s", "--at", "1700000000"}
	verify := []string{"verify", "--sdkappid", "1400000000", "--key-file", key, "--user-id", "xiaojun", "--at", "1700000000"}
	for _, tc := range []struct {
		name string
		args []string
		room map[string]any
	}{
		{"numeric room", []string{"--room-id", "10000"}, map[string]any{"roomId": 10000.0, "privilegeMap": 255.0}},
		{"string room", []string{"--room-str", "live-room_42", "--privilege", "42"}, map[string]any{"roomStr": "live-room_42", "privilegeMap": 42.0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := with(gen, tc.args...)
			g := usersig(nil, "", args...)
			if g.code != 0 {
				t.Fatalf("usersig %q = %+v", args, g)
			}
			r := usersig(nil, g.stdout, verify...)
			var v struct {
				Status        string         `json:"status"`
				Kind          string         `json:"kind"`
				PrivateMapKey map[string]any `json:"privateMapKey"`
			}
			json.Unmarshal([]byte(r.stdout), &v)
			if r.code != 0 || v.Status != "VERIFY_STATUS_VALID" || v.Kind != "TICKET_KIND_PRIVATE_MAP_KEY" {
				t.Fatalf("usersig %q of the ticket of %q = %+v, want VALID and kind TICKET_KIND_PRIVATE_MAP_KEY", verify, args, r)
			}
			for k, want := range tc.room {
				if v.PrivateMapKey[k] != want {
					t.Errorf("usersig %q: privateMapKey.%s = %v, want %v", args, k, v.PrivateMapKey[k], want)
				}
			}
			if v.PrivateMapKey["expireTime"] != "2024-05-12T22:13:20Z" {
				t.Errorf("usersig %q: privateMapKey.expireTime = %v, want the ticket's expiry", args, v.PrivateMapKey["expireTime"])
			}
		})
	}
	// The documented PrivateMapKey example, byte for byte in its userbuf.
	args := with(gen, "--room-id", "10000")
	dec := usersig(nil, usersig(nil, "", args...).stdout, "decode")
	if !strings.Contains(dec.stdout, `"userbuf":"AAAHeGlhb2p1blNyTgAAACcQZkE/AAAAAP8AAAAA"`) || !strings.Contains(dec.stdout, `"sig":"y9Avb5xwHgIgoABbGakLaE0xs+v/dLcIPegbWfcbRLI="`) {
		t.Errorf("decode of usersig %q, the documented PrivateMapKey, printed %+v", args, dec)
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
		args []string
		want string
	}{
		{"no command", nil, "no command"},
		{"unknown command", []string{"sign"}, "argument 1 is not a command"},
		{"unknown flag", []string{"gen", "--bogus"}, "argument 2 is not a known flag"},
		{"missing sdkappid", []string{"gen", "--key-file", key, "--user-id", "u"}, "--sdkappid is required"},
		{"sdkappid above 32 bits", []string{"gen", "--sdkappid", "4294967296", "--key-file", key, "--user-id", "u"}, "--sdkappid must be 1 to 4294967295"},
		{"sdkappid not a number", []string{"gen", "--sdkappid", "abc"}, "--sdkappid: not a valid number"},
		{"sdkappid without a value", []string{"gen", "--user-id", "u", "--sdkappid"}, "--sdkappid needs a value"},
		{"missing user id", with([]string{"gen"}, base...), "--user-id is required"},
		{"invalid user id", with([]string{"gen", "--user-id", "a b"}, base...), "--user-id must be 1 to 32 bytes"},
		{"33-byte user id", with([]string{"gen", "--user-id", strings.Repeat("u", 33)}, base...), "--user-id must be 1 to 32 bytes"},
		{"no key", []string{"gen", "--sdkappid", "1400000000", "--user-id", "u"}, "no key: pass --key-file or set USERSIG_KEY"},
		{"unreadable key file", []string{"gen", "--sdkappid", "1400000000", "--user-id", "u", "--key-file", "/nonexistent/key"}, "--key-file: no such file or directory"},
		{"empty key file", []string{"gen", "--sdkappid", "1400000000", "--user-id", "u", "--key-file", empty}, "is empty"},
		{"ttl 0", with([]string{"gen", "--user-id", "u", "--ttl", "0s"}, base...), "--ttl must be at least 1s"},
		{"fractional ttl", with([]string{"gen", "--user-id", "u", "--ttl", "1.5s"}, base...), "--ttl must be a whole number of seconds"},
		{"ttl past 2106", with([]string{"gen", "--user-id", "u", "--ttl", "876000h"}, base...), "--ttl must end by 2106"},
		{"bad ttl", with([]string{"gen", "--user-id", "u", "--ttl", "soon"}, base...), "--ttl: not a valid duration"},
		{"negative at", with([]string{"gen", "--user-id", "u", "--at", "-5"}, base...), "--at must be a Unix time"},
		{"two rooms", with([]string{"gen", "--user-id", "u", "--room-id", "1", "--room-str", "a"}, base...), "exclude each other"},
		{"room 0", with([]string{"gen", "--user-id", "u", "--room-id", "0"}, base...), "--room-id must be 1 to 4294967295"},
		{"room above 32 bits", with([]string{"gen", "--user-id", "u", "--room-id", "4294967296"}, base...), "--room-id must be 1 to 4294967295"},
		{"bad room str", with([]string{"gen", "--user-id", "u", "--room-str", `"quoted"`}, base...), "--room-str must be 1 to 64 bytes"},
		{"privilege 0", with([]string{"gen", "--user-id", "u", "--room-id", "1", "--privilege", "0"}, base...), "--privilege must be 1 to 255"},
		{"privilege 256", with([]string{"gen", "--user-id", "u", "--room-id", "1", "--privilege", "256"}, base...), "--privilege must be 1 to 255"},
		{"privilege without a room", with([]string{"gen", "--user-id", "u", "--privilege", "1"}, base...), "--privilege needs --room-id or --room-str"},
		{"stray argument", with([]string{"gen", "--user-id", "u", "extra"}, base...), "argument 4 is unexpected"},
		{"stray argument after --", with(with([]string{"gen", "--user-id", "u"}, base...), "--", "extra"), "argument 9 is unexpected"},
		{"verify without a ticket", with([]string{"verify", "--user-id", "u"}, base...), "no ticket"},
		{"verify two tickets", with([]string{"verify", "--user-id", "u", "a", "b"}, base...), "argument 5 is a second ticket: want one ticket"},
		{"verify invalid user id", with([]string{"verify", "--user-id", "u!", "ticket"}, base...), "--user-id must be"},
		{"verify unreadable key", []string{"verify", "--sdkappid", "1", "--user-id", "u", "--key-file", "/nonexistent", "t"}, "--key-file"},
		{"decode without a ticket", []string{"decode"}, "no ticket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := usersig(nil, "", tc.args...)
			if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("usersig %q = exit %d, stdout %q, stderr %q; want exit 2, no stdout, one line naming %q",
					tc.args, r.code, r.stdout, r.stderr, tc.want)
			}
			if strings.Contains(r.stderr, secret) {
				t.Errorf("usersig %q: the key appeared on stderr", tc.args)
			}
		})
	}
}

func TestDecodeMalformed(t *testing.T) {
	args := []string{"decode", "eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwkEhUNHilOzEgoLMFCUrQxMDKIDIlGTmpipZGZobWJgbWhqaWUJEUysKMotSlayMYcqKM9OVrJQKwgwsDFKdsl1SjCvdDCKr8r1Ss"}
	r := usersig(nil, "", args...)
	if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, "usersig decode: malformed: ") {
		t.Errorf("usersig %q, a truncated ticket, = %+v, want exit 1 and a malformed reason", args, r)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"gen", "-h"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := usersig(nil, "", args...)
			if r.code != 0 || !strings.Contains(r.stdout, "usersig gen") || r.stderr != "" {
				t.Errorf("usersig %q = %+v, want the usage on stdout", args, r)
			}
		})
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
	verify := []string{"verify", "--sdkappid", "1400000000", "--key-file", key, "--user-id", "xiaojun", "--at", "1700000000"}
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
		t.Run(tc.name, func(t *testing.T) {
			ticket := signedTicket(t, "xiaojun", tc.at, tc.expire, "")
			v := usersig(nil, ticket, verify...)
			var vr map[string]any
			if err := json.Unmarshal([]byte(v.stdout), &vr); err != nil || v.stderr != "" {
				t.Fatalf("usersig %q of TLS.time %d, TLS.expire %d = %+v, want one JSON answer and nothing on stderr (%v)", verify, tc.at, tc.expire, v, err)
			}
			d := usersig(nil, ticket, "decode")
			if tc.reason != "" {
				if v.code != 1 || vr["status"] != "VERIFY_STATUS_MALFORMED" || vr["malformedReason"] != tc.reason {
					t.Errorf("usersig %q of TLS.time %d, TLS.expire %d = %+v, want exit 1, MALFORMED: %s", verify, tc.at, tc.expire, v, tc.reason)
				}
				if d.code != 1 || d.stdout != "" || d.stderr != "usersig decode: malformed: "+tc.reason+"\n" {
					t.Errorf("usersig decode of TLS.time %d, TLS.expire %d = %+v, want exit 1 and the reason", tc.at, tc.expire, d)
				}
				return
			}
			if v.code != 0 || vr["status"] != "VERIFY_STATUS_VALID" || vr["issueTime"] != tc.issue || vr["expireTime"] != tc.until {
				t.Errorf("usersig %q of TLS.time %d, TLS.expire %d = %+v, want VALID from %s until %s", verify, tc.at, tc.expire, v, tc.issue, tc.until)
			}
			var dr map[string]any
			if err := json.Unmarshal([]byte(d.stdout), &dr); err != nil || d.code != 0 || dr["issueTime"] != tc.issue || dr["expireTime"] != tc.until ||
				dr["time"] != float64(tc.at) || dr["expire"] != float64(tc.expire) {
				t.Errorf("usersig decode of TLS.time %d, TLS.expire %d = %+v, want times %s..%s (%v)", tc.at, tc.expire, d, tc.issue, tc.until, err)
			}
		})
	}
}

// TestDecodeKind: decode names what a ticket is as usersig.v1.TicketKind
// names it.
func TestDecodeKind(t *testing.T) {
	key := writeKey(t, secret)
	gen := []string{"gen", "--sdkappid", "1400000000", "--key-file", key, "--user-id", "u", "--at", "1700000000"}
	for _, tc := range []struct {
		name   string
		gen    []string // the flags gen adds; nil for ticket
		ticket string
		kind   string
	}{
		{name: "UserSig", gen: []string{}, kind: "TICKET_KIND_USER_SIG"},
		{name: "PrivateMapKey", gen: []string{"--room-id", "10000"}, kind: "TICKET_KIND_PRIVATE_MAP_KEY"},
		{name: "PrivateMapKey, string room", gen: []string{"--room-str", "r1"}, kind: "TICKET_KIND_PRIVATE_MAP_KEY"},
		{name: "other userbuf", ticket: signedTicket(t, "u", 1700000000, 60, "AQID"), kind: "TICKET_KIND_OTHER_USER_BUF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ticket := tc.ticket
			if tc.gen != nil {
				g := usersig(nil, "", with(gen, tc.gen...)...)
				if g.code != 0 {
					t.Fatalf("usersig %q = %+v", with(gen, tc.gen...), g)
				}
				ticket = g.stdout
			}
			r := usersig(nil, ticket, "decode")
			var d map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || r.code != 0 || d["kind"] != tc.kind {
				t.Errorf("usersig decode of the %s = %+v, want kind %s (%v)", tc.name, r, tc.kind, err)
			}
		})
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
		t.Run(tc.name, func(t *testing.T) {
			r := usersig(nil, "", tc.args...)
			if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("usersig %q = exit %d, stdout %q, stderr %q; want exit 2, one line naming %q", tc.args, r.code, r.stdout, r.stderr, tc.want)
			}
			mark := strings.TrimLeft(tc.secret, "-")[:12]
			for _, s := range []string{mark, ticket[:12], secret[:12]} {
				if strings.Contains(r.stdout+r.stderr, s) {
					t.Errorf("usersig %q: the output repeats what was passed (%q): %q", tc.args, s, r.stderr)
				}
			}
		})
	}
}
