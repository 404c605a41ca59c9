package signer_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/usersig/usersig/signer"
)

// The documented example of ../docs (Tencent's format description).
const (
	exampleKey    = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"
	exampleAppID  = 1400000000
	exampleUser   = "xiaojun"
	exampleTime   = 1700000000
	exampleExpire = 15552000
)

// naiveSig computes TLS.sig the way Tencent's libraries do, independently
// of the package: HMAC-SHA256 over the string to sign, standard base64.
func naiveSig(key, identifier string, sdkAppID uint64, t, expire int64, userbuf64 *string) string {
	msg := fmt.Sprintf("TLS.identifier:%s\nTLS.sdkappid:%d\nTLS.time:%d\nTLS.expire:%d\n", identifier, sdkAppID, t, expire)
	if userbuf64 != nil {
		msg += "TLS.userbuf:" + *userbuf64 + "\n"
	}
	h := hmac.New(sha256.New, []byte(key))
	h.Write([]byte(msg))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

func TestDocumentedUserSig(t *testing.T) {
	const want = "LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4="
	if got := naiveSig(exampleKey, exampleUser, exampleAppID, exampleTime, exampleExpire, nil); got != want {
		t.Fatalf("the documented string to sign gives %s, want %s", got, want)
	}
	k := mustKey(t, exampleKey)
	is, err := k.UserSig(exampleAppID, exampleUser, exampleExpire*time.Second, time.Unix(exampleTime, 0))
	if err != nil {
		t.Fatal(err)
	}
	d, err := signer.Decode(is.Ticket)
	if err != nil {
		t.Fatal(err)
	}
	if d.Sig != want {
		t.Errorf("UserSig(xiaojun).TLS.sig = %s, want %s", d.Sig, want)
	}
	if d.Version != "2.0" || d.Identifier != exampleUser || d.SDKAppID != exampleAppID ||
		d.IssueTime.Unix() != exampleTime || d.Expire != exampleExpire || d.UserBuf != nil || d.PrivateMap != nil {
		t.Errorf("Decode(UserSig(xiaojun)) = %+v", d)
	}
	if is.IssueTime.Unix() != exampleTime || is.ExpireTime.Unix() != exampleTime+exampleExpire {
		t.Errorf("Issued times %v..%v, want %d..%d", is.IssueTime, is.ExpireTime, exampleTime, exampleTime+exampleExpire)
	}
}

func TestDocumentedPrivateMapKey(t *testing.T) {
	const (
		wantUserBuf = "AAAHeGlhb2p1blNyTgAAACcQZkE/AAAAAP8AAAAA"
		wantSig     = "y9Avb5xwHgIgoABbGakLaE0xs+v/dLcIPegbWfcbRLI="
	)
	ub := wantUserBuf
	if got := naiveSig(exampleKey, exampleUser, exampleAppID, exampleTime, exampleExpire, &ub); got != wantSig {
		t.Fatalf("the documented string to sign gives %s, want %s", got, wantSig)
	}
	k := mustKey(t, exampleKey)
	is, err := k.PrivateMapKey(exampleAppID, exampleUser, exampleExpire*time.Second, signer.Room{ID: 10000}, signer.PrivilegeAll, time.Unix(exampleTime, 0))
	if err != nil {
		t.Fatal(err)
	}
	d, err := signer.Decode(is.Ticket)
	if err != nil {
		t.Fatal(err)
	}
	if got := base64.StdEncoding.EncodeToString(d.UserBuf); got != wantUserBuf {
		t.Errorf("PrivateMapKey(xiaojun, 10000, 255) userbuf = %s, want %s", got, wantUserBuf)
	}
	if d.Sig != wantSig {
		t.Errorf("PrivateMapKey(xiaojun, 10000, 255).TLS.sig = %s, want %s", d.Sig, wantSig)
	}
	want := signer.PrivateMap{UserID: exampleUser, SDKAppID: exampleAppID, RoomID: 10000,
		ExpireTime: time.Unix(exampleTime+exampleExpire, 0).UTC(), PrivilegeMap: 255}
	if d.PrivateMap == nil || *d.PrivateMap != want {
		t.Errorf("Decode(...).PrivateMap = %+v, want %+v", d.PrivateMap, want)
	}
}

// TestMintMatchesTencentGo mints every ticket the vectors hold from
// Tencent's Go library and wants the same bytes.
func TestMintMatchesTencentGo(t *testing.T) {
	n := 0
	for _, v := range loadVectors(t) {
		if v.Source != "official-go" {
			continue
		}
		k := mustKey(t, v.Key)
		ttl, now := time.Duration(v.Expire)*time.Second, time.Unix(v.Time, 0)
		var is signer.Issued
		var err error
		switch v.Kind {
		case "usersig":
			is, err = k.UserSig(v.SDKAppID, v.Identifier, ttl, now)
		case "pmk", "pmkstr":
			is, err = k.PrivateMapKey(v.SDKAppID, v.Identifier, ttl, signer.Room{ID: v.RoomID, Str: v.RoomStr}, v.Privilege, now)
		default:
			continue
		}
		if err != nil {
			t.Fatalf("%s %s: %v", v.Kind, v.Identifier, err)
		}
		if is.Ticket != v.UserSig {
			t.Errorf("%s for %s: minted\n%s\nTencent's Go library minted\n%s", v.Kind, v.Identifier, is.Ticket, v.UserSig)
		}
		n++
	}
	if n < 10 {
		t.Fatalf("compared %d tickets, want the official-go vectors (at least 10)", n)
	}
}

func TestRoundTrip(t *testing.T) {
	k := mustKey(t, exampleKey)
	now := time.Unix(1750000000, 0)
	ttl := 86400 * time.Second
	for _, tc := range []struct {
		name string
		mint func() (signer.Issued, error)
		want *signer.PrivateMap
	}{
		{"usersig", func() (signer.Issued, error) { return k.UserSig(exampleAppID, "user_0001", ttl, now) }, nil},
		{"userbuf", func() (signer.Issued, error) {
			return k.UserSigWithUserBuf(exampleAppID, "user_0001", ttl, []byte{0xde, 0xad, 0xbe, 0xef}, now)
		}, nil},
		{"room id", func() (signer.Issued, error) {
			return k.PrivateMapKey(exampleAppID, "user_0001", ttl, signer.Room{ID: 4294967295}, 42, now)
		}, &signer.PrivateMap{UserID: "user_0001", SDKAppID: exampleAppID, RoomID: 4294967295, PrivilegeMap: 42}},
		{"room str", func() (signer.Issued, error) {
			return k.PrivateMapKey(exampleAppID, "user_0001", ttl, signer.Room{Str: "live room #1 {a|b}~,"}, 1, now)
		}, &signer.PrivateMap{UserID: "user_0001", SDKAppID: exampleAppID, RoomStr: "live room #1 {a|b}~,", PrivilegeMap: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is, err := tc.mint()
			if err != nil {
				t.Fatal(err)
			}
			if strings.ContainsAny(is.Ticket, "+/=") {
				t.Errorf("ticket %q holds a character of standard base64", is.Ticket)
			}
			r := signer.Verify(is.Ticket, exampleAppID, "user_0001", []*signer.Key{k}, now.Add(ttl))
			if r.Status != signer.Valid || r.KeyIndex != 0 {
				t.Fatalf("Verify = %v (%s) key %d, want VALID key 0", r.Status, r.Reason, r.KeyIndex)
			}
			if !r.IssueTime.Equal(now) || !r.ExpireTime.Equal(now.Add(ttl)) || !r.ExpireTime.Equal(is.ExpireTime) {
				t.Errorf("Verify times %v..%v, want %v..%v", r.IssueTime, r.ExpireTime, now, now.Add(ttl))
			}
			if tc.want == nil {
				if r.PrivateMap != nil {
					t.Errorf("PrivateMap = %+v, want nil", r.PrivateMap)
				}
				return
			}
			// One clock reading: the userbuf's expiry is TLS.time + TLS.expire.
			want := *tc.want
			want.ExpireTime = is.ExpireTime
			if r.PrivateMap == nil || *r.PrivateMap != want {
				t.Errorf("PrivateMap = %+v, want %+v", r.PrivateMap, want)
			}
		})
	}
}

func TestVerifyStatus(t *testing.T) {
	oldKey, newKey := mustKey(t, exampleKey), mustKey(t, "another-key-of-the-same-app-0123456789abcdef")
	now := time.Unix(1750000000, 0)
	ttl := 3600 * time.Second
	issued, err := oldKey.UserSig(exampleAppID, "user_0001", ttl, now)
	if err != nil {
		t.Fatal(err)
	}
	ticket := issued.Ticket
	// A forgery: the ticket's identifier changed, its MAC kept. It must
	// come back as a signature mismatch, not as a user id mismatch.
	d, _ := signer.Decode(ticket)
	forged := deflateTicket(t, fmt.Sprintf(`{"TLS.ver":"2.0","TLS.identifier":"admin","TLS.sdkappid":%d,"TLS.expire":3600,"TLS.time":%d,"TLS.sig":"%s"}`,
		exampleAppID, now.Unix(), d.Sig), 6)
	otherApp := deflateTicket(t, fmt.Sprintf(`{"TLS.ver":"2.0","TLS.identifier":"user_0001","TLS.sdkappid":1400000001,"TLS.expire":3600,"TLS.time":%d,"TLS.sig":"%s"}`,
		now.Unix(), naiveSig(exampleKey, "user_0001", 1400000001, now.Unix(), 3600, nil)), 6)
	for _, tc := range []struct {
		name     string
		ticket   string
		app      uint64
		user     string
		keys     []*signer.Key
		at       time.Time
		want     signer.Status
		keyIndex int
	}{
		{"valid", ticket, exampleAppID, "user_0001", []*signer.Key{oldKey}, now, signer.Valid, 0},
		{"valid through the last second", ticket, exampleAppID, "user_0001", []*signer.Key{oldKey}, now.Add(ttl), signer.Valid, 0},
		{"expired one second later", ticket, exampleAppID, "user_0001", []*signer.Key{oldKey}, now.Add(ttl + time.Second), signer.Expired, 0},
		{"another user", ticket, exampleAppID, "user_0002", []*signer.Key{oldKey}, now, signer.UserIDMismatch, 0},
		{"user ids are case-sensitive", ticket, exampleAppID, "USER_0001", []*signer.Key{oldKey}, now, signer.UserIDMismatch, 0},
		{"another app", ticket, 1400000001, "user_0001", []*signer.Key{oldKey}, now, signer.SDKAppIDMismatch, 0},
		{"app checked before user", ticket, 1400000001, "user_0002", []*signer.Key{oldKey}, now, signer.SDKAppIDMismatch, 0},
		{"user checked before expiry", ticket, exampleAppID, "user_0002", []*signer.Key{oldKey}, now.Add(2 * ttl), signer.UserIDMismatch, 0},
		{"ticket of another app, same key", otherApp, exampleAppID, "user_0001", []*signer.Key{oldKey}, now, signer.SDKAppIDMismatch, 0},
		{"another key", ticket, exampleAppID, "user_0001", []*signer.Key{newKey}, now, signer.SignatureMismatch, -1},
		{"no keys", ticket, exampleAppID, "user_0001", nil, now, signer.SignatureMismatch, -1},
		{"old key second after rotation", ticket, exampleAppID, "user_0001", []*signer.Key{newKey, oldKey}, now, signer.Valid, 1},
		{"forged identifier", forged, exampleAppID, "admin", []*signer.Key{oldKey}, now, signer.SignatureMismatch, -1},
		{"forged identifier, expected user", forged, exampleAppID, "user_0001", []*signer.Key{oldKey}, now, signer.SignatureMismatch, -1},
	} {
		r := signer.Verify(tc.ticket, tc.app, tc.user, tc.keys, tc.at)
		if r.Status != tc.want || r.KeyIndex != tc.keyIndex {
			t.Errorf("%s: Verify = %v (%s) key %d, want %v key %d", tc.name, r.Status, r.Reason, r.KeyIndex, tc.want, tc.keyIndex)
		}
		if r.Status != signer.Malformed && r.Reason != "" {
			t.Errorf("%s: Reason %q set for %v", tc.name, r.Reason, r.Status)
		}
		if r.Status == signer.SignatureMismatch && (!r.IssueTime.IsZero() || !r.ExpireTime.IsZero()) {
			t.Errorf("%s: a signature mismatch revealed times %v..%v", tc.name, r.IssueTime, r.ExpireTime)
		}
	}
}

// TestVerifyLayouts verifies one ticket laid out every way the official
// libraries lay it out.
func TestVerifyLayouts(t *testing.T) {
	const user, t0, exp = "user_0001", 1750000000, 3600
	ub := "AQID/w==" // bytes 01 02 03 ff; holds a /
	sig := naiveSig(exampleKey, user, exampleAppID, t0, exp, nil)
	sigUB := naiveSig(exampleKey, user, exampleAppID, t0, exp, &ub)
	sigNoExpire := naiveSig(exampleKey, user, exampleAppID, t0, 0, nil)
	esc := func(s string) string { return strings.ReplaceAll(s, "/", `\/`) }
	for _, tc := range []struct {
		name  string
		doc   string
		level int
		at    int64
		want  signer.Status
	}{
		{"node", `{"TLS.ver":"2.0","TLS.identifier":"user_0001","TLS.sdkappid":1400000000,"TLS.time":1750000000,"TLS.expire":3600,"TLS.sig":"` + sig + `"}`, 6, t0, signer.Valid},
		{"go v1.4, stored", `{"TLS.ver":"2.0","TLS.identifier":"user_0001","TLS.sdkappid":1400000000,"TLS.expire":3600,"TLS.time":1750000000,"TLS.sig":"` + sig + "\"}\n", 0, t0, signer.Valid},
		{"go v1.3, alphabetical", `{"TLS.expire":3600,"TLS.identifier":"user_0001","TLS.sdkappid":1400000000,"TLS.sig":"` + sig + `","TLS.time":1750000000,"TLS.ver":"2.0"}`, 6, t0, signer.Valid},
		{"python spacing", `{"TLS.ver": "2.0", "TLS.identifier": "user_0001", "TLS.sdkappid": 1400000000, "TLS.expire": 3600, "TLS.time": 1750000000, "TLS.sig": "` + sig + `"}`, 6, t0, signer.Valid},
		{"php escapes", esc(`{"TLS.ver":"2.0","TLS.identifier":"user_0001","TLS.sdkappid":1400000000,"TLS.expire":3600,"TLS.time":1750000000,"TLS.userbuf":"` + ub + `","TLS.sig":"` + sigUB + `"}`), 6, t0, signer.Valid},
		{"cpp order, level 1", `{"TLS.ver":"2.0","TLS.sdkappid":1400000000,"TLS.identifier":"user_0001","TLS.time":1750000000,"TLS.expire":3600,"TLS.sig":"` + sig + `"}`, 1, t0, signer.Valid},
		{"c# userbuf after sig", `{"TLS.ver":"2.0","TLS.identifier":"user_0001","TLS.sdkappid":1400000000,"TLS.expire":3600,"TLS.time":1750000000,"TLS.sig":"` + sigUB + `","TLS.userbuf":"` + ub + `"}`, 6, t0, signer.Valid},
		{"unicode escapes", `{"TLS.ver":"\u0032.0","TLS.identifier":"user\u005F0001","TLS.sdkappid":1400000000,"TLS.expire":3600,"TLS.time":1750000000,"TLS.sig":"` + strings.ReplaceAll(sig, "+", `\u002b`) + `"}`, 9, t0, signer.Valid},
		{"tabs and newlines", "\r\n\t{\n\t\"TLS.ver\" :\t\"2.0\" ,\n\"TLS.identifier\":\"user_0001\",\"TLS.sdkappid\":1400000000,\"TLS.expire\":3600,\"TLS.time\":1750000000,\"TLS.sig\":\"" + sig + "\"\n}\n\n", 6, t0, signer.Valid},
		{"unknown members ignored", `{"x":null,"y":true,"z":-1.5e3,"w":"s","TLS.ver":"2.0","TLS.identifier":"user_0001","TLS.sdkappid":1400000000,"TLS.expire":3600,"TLS.time":1750000000,"TLS.sig":"` + sig + `"}`, 6, t0, signer.Valid},
		{"missing expire means 0", `{"TLS.ver":"2.0","TLS.identifier":"user_0001","TLS.sdkappid":1400000000,"TLS.time":1750000000,"TLS.sig":"` + sigNoExpire + `"}`, 6, t0, signer.Valid},
		{"missing expire, a second later", `{"TLS.ver":"2.0","TLS.identifier":"user_0001","TLS.sdkappid":1400000000,"TLS.time":1750000000,"TLS.sig":"` + sigNoExpire + `"}`, 6, t0 + 1, signer.Expired},
		{"userbuf dropped", `{"TLS.ver":"2.0","TLS.identifier":"user_0001","TLS.sdkappid":1400000000,"TLS.expire":3600,"TLS.time":1750000000,"TLS.sig":"` + sigUB + `"}`, 6, t0, signer.SignatureMismatch},
		{"userbuf added", `{"TLS.ver":"2.0","TLS.identifier":"user_0001","TLS.sdkappid":1400000000,"TLS.expire":3600,"TLS.time":1750000000,"TLS.userbuf":"` + ub + `","TLS.sig":"` + sig + `"}`, 6, t0, signer.SignatureMismatch},
		{"lifetime stretched", `{"TLS.ver":"2.0","TLS.identifier":"user_0001","TLS.sdkappid":1400000000,"TLS.expire":36000,"TLS.time":1750000000,"TLS.sig":"` + sig + `"}`, 6, t0, signer.SignatureMismatch},
	} {
		for _, ticket := range []string{deflateTicket(t, tc.doc, tc.level), strings.TrimRight(deflateTicket(t, tc.doc, tc.level), "_")} {
			r := signer.Verify(ticket, exampleAppID, user, []*signer.Key{mustKey(t, exampleKey)}, time.Unix(tc.at, 0))
			if r.Status != tc.want {
				t.Errorf("%s: Verify = %v (%s), want %v", tc.name, r.Status, r.Reason, tc.want)
			}
		}
	}
}

// TestMalformed feeds hostile tickets to Verify and Decode: each must come
// back malformed, for the reason named, without a panic.
func TestMalformed(t *testing.T) {
	const tail = `"TLS.identifier":"user_0001","TLS.sdkappid":1400000000,"TLS.expire":3600,"TLS.time":1750000000,"TLS.sig":"LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4="}`
	good := deflateTicket(t, `{"TLS.ver":"2.0",`+tail, 6)
	stored := deflateTicket(t, `{"TLS.ver":"2.0",`+tail, 0)
	raw := func(b []byte) string {
		return strings.NewReplacer("+", "*", "/", "-", "=", "_").Replace(base64.StdEncoding.EncodeToString(b))
	}
	rawStored, _ := base64.StdEncoding.DecodeString(strings.NewReplacer("*", "+", "-", "/", "_", "=").Replace(stored))
	badAdler := append([]byte{}, rawStored...)
	badAdler[len(badAdler)-1] ^= 1
	for _, tc := range []struct {
		name, ticket, reason string
	}{
		{"empty", "", "empty"},
		{"too long", strings.Repeat("A", signer.MaxTicketLen+1), "longer than"},
		{"3 MB", strings.Repeat("eJw", 1<<20), "longer than"},
		{"not the ticket alphabet", "eJw+" + good[4:], "alphabet"},
		{"standard base64 padding", strings.ReplaceAll(good, "_", "="), "alphabet"},
		{"a lone character", good[:len(strings.TrimRight(good, "_"))/4*4+1], "alphabet"},
		{"not zlib", raw([]byte("hello, world")), "not a zlib stream"},
		{"zlib with a preset dictionary", raw([]byte{0x78, 0xbb, 0, 0, 0, 0}), "not a zlib stream"},
		{"truncated", good[:len(good)/2], ""},
		{"truncated stored", stored[:len(stored)-12], "truncated"},
		{"stored checksum", raw(badAdler), "checksum"},
		{"zlib of text", deflateTicket(t, "hello", 6), "not a JSON object"},
		{"zlib of nothing", deflateTicket(t, "", 6), "not a JSON object"},
		{"json array", deflateTicket(t, `["TLS.ver","2.0"]`, 6), "not a JSON object"},
		{"json string", deflateTicket(t, `"TLS.ver"`, 6), "not a JSON object"},
		{"nested object", deflateTicket(t, `{"x":{"TLS.ver":"2.0"},"TLS.ver":"2.0",`+tail, 6), "nested"},
		{"deeply nested", deflateTicket(t, `{"x":`+strings.Repeat("[", 3000)+strings.Repeat("]", 3000)+`,"TLS.ver":"2.0",`+tail, 9), "nested"},
		{"trailing garbage", deflateTicket(t, `{"TLS.ver":"2.0",`+tail+`{}`, 6), "after its closing brace"},
		{"unterminated", deflateTicket(t, `{"TLS.ver":"2.0",`+tail[:len(tail)-2], 6), "not a JSON object"},
		{"missing comma", deflateTicket(t, `{"TLS.ver":"2.0" `+tail, 6), "not a JSON object"},
		{"control character", deflateTicket(t, `{"TLS.ver":"2.0","TLS.identifier":"user`+"\x01"+`0001",`+tail[29:], 6), "not a JSON object"},
		{"bad escape", deflateTicket(t, `{"TLS.ver":"2\.0",`+tail, 6), "not a JSON object"},
		{"short unicode escape", deflateTicket(t, `{"TLS.ver":"\u32",`+tail, 6), "not a JSON object"},
		{"duplicate member", deflateTicket(t, `{"TLS.ver":"2.0","TLS.sdkappid":1,`+tail, 6), "repeats"},
		{"version 1.0", deflateTicket(t, `{"TLS.ver":"1.0",`+tail, 6), `TLS.ver is not "2.0"`},
		{"version as a number", deflateTicket(t, `{"TLS.ver":2.0,`+tail, 6), "TLS.ver is not a string"},
		{"no version", deflateTicket(t, `{`+tail, 6), "no TLS.ver"},
		{"no identifier", deflateTicket(t, `{"TLS.ver":"2.0",`+tail[29:], 6), "no TLS.identifier"},
		{"identifier as a number", deflateTicket(t, `{"TLS.ver":"2.0","TLS.identifier":1,`+tail[29:], 6), "TLS.identifier is not a string"},
		{"sdkappid as a string", deflateTicket(t, strings.Replace(`{"TLS.ver":"2.0",`+tail, `1400000000`, `"1400000000"`, 1), 6), "TLS.sdkappid is not a non-negative integer"},
		{"sdkappid above 2^64", deflateTicket(t, strings.Replace(`{"TLS.ver":"2.0",`+tail, `1400000000`, `18446744073709551616`, 1), 6), "TLS.sdkappid is not a non-negative integer"},
		{"time as a fraction", deflateTicket(t, strings.Replace(`{"TLS.ver":"2.0",`+tail, `1750000000`, `1750000000.0`, 1), 6), "TLS.time is not a non-negative integer"},
		{"time with an exponent", deflateTicket(t, strings.Replace(`{"TLS.ver":"2.0",`+tail, `1750000000`, `175e7`, 1), 6), "TLS.time is not a non-negative integer"},
		{"negative expire", deflateTicket(t, strings.Replace(`{"TLS.ver":"2.0",`+tail, `3600`, `-3600`, 1), 6), "TLS.expire is not a non-negative integer"},
		{"leading zero", deflateTicket(t, strings.Replace(`{"TLS.ver":"2.0",`+tail, `3600`, `03600`, 1), 6), "not a JSON object"},
		{"expire overflows", deflateTicket(t, strings.Replace(`{"TLS.ver":"2.0",`+tail, `3600`, `9223372036854775807`, 1), 6), "TLS.time + TLS.expire is past 9999-12-31T23:59:59Z"},
		{"time past 9999", deflateTicket(t, strings.Replace(`{"TLS.ver":"2.0",`+tail, `1750000000`, `253402300800`, 1), 6), "TLS.time is past 9999-12-31T23:59:59Z"},
		{"time above int64", deflateTicket(t, strings.Replace(`{"TLS.ver":"2.0",`+tail, `1750000000`, `9223372036854775808`, 1), 6), "TLS.time is not a non-negative integer"},
		{"short sig", deflateTicket(t, strings.Replace(`{"TLS.ver":"2.0",`+tail, `LvA7`, ``, 1), 6), "TLS.sig is not"},
		{"sig not base64", deflateTicket(t, strings.Replace(`{"TLS.ver":"2.0",`+tail, `LvA7`, `Lv.7`, 1), 6), "TLS.sig is not"},
		{"userbuf not base64", deflateTicket(t, `{"TLS.ver":"2.0","TLS.userbuf":"***",`+tail, 6), "TLS.userbuf is not"},
		{"zlib bomb", deflateTicket(t, `{"TLS.ver":"2.0","x":"`+strings.Repeat(" ", 10<<20)+`",`+tail, 9), "inflates to more than"},
	} {
		r := signer.Verify(tc.ticket, exampleAppID, "user_0001", []*signer.Key{mustKey(t, exampleKey)}, time.Unix(1750000000, 0))
		if r.Status != signer.Malformed || !strings.Contains(r.Reason, tc.reason) || r.KeyIndex != -1 {
			t.Errorf("%s: Verify = %v (%q) key %d, want MALFORMED (%q)", tc.name, r.Status, r.Reason, r.KeyIndex, tc.reason)
		}
		if _, err := signer.Decode(tc.ticket); err == nil || err.Error() != r.Reason {
			t.Errorf("%s: Decode error %v, want %q", tc.name, err, r.Reason)
		}
		if len(tc.ticket) > 24 && strings.Contains(r.Reason, tc.ticket[:24]) {
			t.Errorf("%s: the reason quotes the ticket", tc.name)
		}
	}
}

func TestValidation(t *testing.T) {
	k := mustKey(t, exampleKey)
	now := time.Unix(1750000000, 0)
	day := 86400 * time.Second
	for _, tc := range []struct {
		name        string
		err         error
		field, rule string
	}{
		{"empty user id", signer.ValidateUserID(""), "user_id", signer.RuleUserID},
		{"33-byte user id", signer.ValidateUserID(strings.Repeat("a", 33)), "user_id", signer.RuleUserID},
		{"unicode user id", signer.ValidateUserID("用户"), "user_id", signer.RuleUserID},
		{"NUL in user id", signer.ValidateUserID("a\x00b"), "user_id", signer.RuleUserID},
		{"space in user id", signer.ValidateUserID("a b"), "user_id", signer.RuleUserID},
		{"dot in user id", signer.ValidateUserID("a.b"), "user_id", signer.RuleUserID},
		{"32-byte user id", signer.ValidateUserID(strings.Repeat("aZ9_-", 6) + "ab"), "", ""},
		{"app 0", signer.ValidateSDKAppID(0), "sdk_app_id", signer.RuleSDKAppID},
		{"app above 32 bits", signer.ValidateSDKAppID(1 << 32), "sdk_app_id", signer.RuleSDKAppID},
		{"privilege 0", signer.ValidatePrivilegeMap(0), "privilege_map", signer.RulePrivilegeMap},
		{"privilege 256", signer.ValidatePrivilegeMap(256), "privilege_map", signer.RulePrivilegeMap},
		{"privilege 2^32+42, which 32 bits would read as 42", signer.ValidatePrivilegeMap(1<<32 + 42), "privilege_map", signer.RulePrivilegeMap},
		{"room id 0", signer.ValidateRoomID(0), "room_id", signer.RuleRoomID},
		{"room id 2^32+7, which 32 bits would read as 7", signer.ValidateRoomID(1<<32 + 7), "room_id", signer.RuleRoomID},
		{"room id 4294967295", signer.ValidateRoomID(4294967295), "", ""},
		{"room str too long", signer.ValidateRoomStr(strings.Repeat("r", 65)), "room_str", signer.RuleRoomStr},
		{"room str quote", signer.ValidateRoomStr(`a"b`), "room_str", signer.RuleRoomStr},
		{"room str 64 bytes of every allowed kind", signer.ValidateRoomStr(" !#$%&()+-:;<=.>?@[]^_{}|~,azAZ09" + strings.Repeat("x", 31)), "", ""},
		{"ttl 0", mintErr(k.UserSig(exampleAppID, "u", 0, now)), "ttl", signer.RuleTTLPositive},
		{"negative ttl", mintErr(k.UserSig(exampleAppID, "u", -time.Second, now)), "ttl", signer.RuleTTLPositive},
		{"fractional ttl", mintErr(k.UserSig(exampleAppID, "u", 1500*time.Millisecond, now)), "ttl", signer.RuleTTLWhole},
		{"ttl past 2106", mintErr(k.UserSig(exampleAppID, "u", 100*365*day, now)), "ttl", signer.RuleTTLRange},
		{"ttl to the last second", mintErr(k.UserSig(exampleAppID, "u", time.Duration(signer.MaxExpiry-now.Unix())*time.Second, now)), "", ""},
		{"mint with a bad user", mintErr(k.UserSig(exampleAppID, "a b", day, now)), "user_id", signer.RuleUserID},
		{"mint for app 0", mintErr(k.UserSig(0, "u", day, now)), "sdk_app_id", signer.RuleSDKAppID},
		{"no room", mintErr(k.PrivateMapKey(exampleAppID, "u", day, signer.Room{}, 255, now)), "room", signer.RuleRoomOneOf},
		{"two rooms", mintErr(k.PrivateMapKey(exampleAppID, "u", day, signer.Room{ID: 1, Str: "a"}, 255, now)), "room", signer.RuleRoomOneOf},
		{"bad room str", mintErr(k.PrivateMapKey(exampleAppID, "u", day, signer.Room{Str: "a\nb"}, 255, now)), "room_str", signer.RuleRoomStr},
		{"bad privilege", mintErr(k.PrivateMapKey(exampleAppID, "u", day, signer.Room{ID: 1}, 0, now)), "privilege_map", signer.RulePrivilegeMap},
		{"empty userbuf", mintErr(k.UserSigWithUserBuf(exampleAppID, "u", day, nil, now)), "userbuf", signer.RuleUserBuf},
		{"long userbuf", mintErr(k.UserSigWithUserBuf(exampleAppID, "u", day, make([]byte, signer.MaxUserBuf+1), now)), "userbuf", signer.RuleUserBuf},
		{"longest userbuf", mintErr(k.UserSigWithUserBuf(exampleAppID, "u", day, make([]byte, signer.MaxUserBuf), now)), "", ""},
	} {
		if tc.field == "" {
			if tc.err != nil {
				t.Errorf("%s: %v, want no error", tc.name, tc.err)
			}
			continue
		}
		var fe *signer.FieldError
		if !errors.As(tc.err, &fe) || fe.Field != tc.field || fe.Rule != tc.rule {
			t.Errorf("%s: error %v, want %s: %s", tc.name, tc.err, tc.field, tc.rule)
			continue
		}
		if want := tc.field + ": " + tc.rule; fe.Error() != want {
			t.Errorf("%s: message %q, want %q", tc.name, fe.Error(), want)
		}
	}
}

func mintErr(_ signer.Issued, err error) error { return err }

func TestKeyNeverPrints(t *testing.T) {
	if _, err := signer.NewKey(nil); !errors.Is(err, signer.ErrEmptyKey) {
		t.Errorf("NewKey(nil) error = %v, want ErrEmptyKey", err)
	}
	k := mustKey(t, exampleKey)
	holder := struct{ Key *signer.Key }{k}
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k), fmt.Sprintf("%v %+v %#v", holder, holder, holder)} {
		if strings.Contains(s, exampleKey) || strings.Contains(s, exampleKey[:8]) {
			t.Errorf("formatting a Key printed its secret: %s", s)
		}
	}
}

func TestStatusNames(t *testing.T) {
	for s, want := range map[signer.Status][2]any{
		signer.Valid: {"VALID", int32(0)}, signer.Expired: {"EXPIRED", int32(70001)},
		signer.SignatureMismatch: {"SIGNATURE_MISMATCH", int32(70009)}, signer.UserIDMismatch: {"USER_ID_MISMATCH", int32(70013)},
		signer.SDKAppIDMismatch: {"SDK_APP_ID_MISMATCH", int32(70014)}, signer.Malformed: {"MALFORMED", int32(70003)},
		signer.Status(0): {"UNSPECIFIED", int32(70003)},
	} {
		if s.String() != want[0] || s.TencentErrorCode() != want[1] {
			t.Errorf("Status(%d) = %s %d, want %v %v", int(s), s, s.TencentErrorCode(), want[0], want[1])
		}
	}
}
