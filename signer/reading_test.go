package signer_test

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/usersig/usersig/signer"
)

// signedDoc is a ticket document for user_0001 whose TLS.sig is the right
// MAC (by exampleKey) of the fields it holds: extra is spliced in as the
// first member, after is appended after the closing brace.
func signedDoc(extra, after string) string {
	const user, t0, exp = "user_0001", 1750000000, 3600
	sig := naiveSig(exampleKey, user, exampleAppID, t0, exp, nil)
	if extra != "" {
		extra += ","
	}
	return fmt.Sprintf(`{%s"TLS.ver":"2.0","TLS.identifier":"%s","TLS.sdkappid":%d,"TLS.time":%d,"TLS.expire":%d,"TLS.sig":"%s"}%s`,
		extra, user, exampleAppID, t0, exp, sig, after)
}

// TestOneReading: a correctly signed ticket that another JSON reader could
// read differently is MALFORMED, for a reason that names the rule and
// quotes nothing of the ticket; the spellings that have one reading still
// verify.
func TestOneReading(t *testing.T) {
	second := `{"TLS.ver":"2.0","TLS.identifier":"administrator","TLS.sdkappid":1400000000,"TLS.time":1750000000,"TLS.expire":3600,"TLS.sig":"x"}`
	const (
		trailing = "the ticket's document has something other than whitespace after its closing brace"
		caseOf   = "the ticket's document has a key that is %s only when case is ignored"
	)
	for _, tc := range []struct {
		name, doc string
		reason    string // "" for VALID
	}{
		{"control: signed", signedDoc("", ""), ""},
		{"trailing whitespace", signedDoc("", " \t\r\n \n"), ""},
		{"unknown members", signedDoc(`"tls":1,"TLS.version":"x","TLS.sig2":null,"T":true,"x":"TLS.identifier"`, ""), ""},
		{"escaped exact key", signedDoc("", "")[:1] + `"\u0054LS.\u0069dentifier":"user_0001",` + strings.Replace(signedDoc("", "")[1:], `"TLS.identifier":"user_0001",`, "", 1), ""},
		{"NUL then a second document", signedDoc("", "\x00"+second), trailing},
		{"NUL alone", signedDoc("", "\x00"), trailing},
		{"newline then a second document", signedDoc("", "\n"+second), trailing},
		{"trailing garbage", signedDoc("", "x"), trailing},
		{"trailing brace", signedDoc("", "}"), trailing},
		{"form feed is not JSON whitespace", signedDoc("", "\f"), trailing},
		{"non-breaking space", signedDoc("", "\u00a0"), trailing},
		{"TLS.Identifier", signedDoc(`"TLS.Identifier":"administrator"`, ""), fmt.Sprintf(caseOf, "TLS.identifier")},
		{"TLS.Identifier after the real one", strings.Replace(signedDoc("", ""), `}`, `,"TLS.Identifier":"administrator"}`, 1), fmt.Sprintf(caseOf, "TLS.identifier")},
		{"tls.ver", signedDoc(`"tls.ver":"1.0"`, ""), fmt.Sprintf(caseOf, "TLS.ver")},
		{"TLS.SDKAPPID", signedDoc(`"TLS.SDKAPPID":1400000001`, ""), fmt.Sprintf(caseOf, "TLS.sdkappid")},
		{"TLS.Time", signedDoc(`"TLS.Time":0`, ""), fmt.Sprintf(caseOf, "TLS.time")},
		{"TLS.EXPIRE", signedDoc(`"TLS.EXPIRE":99999999`, ""), fmt.Sprintf(caseOf, "TLS.expire")},
		{"TLS.UserBuf", signedDoc(`"TLS.UserBuf":"AQID"`, ""), fmt.Sprintf(caseOf, "TLS.userbuf")},
		{"TLS.Sig", signedDoc(`"TLS.Sig":"AAAA"`, ""), fmt.Sprintf(caseOf, "TLS.sig")},
		{"long s (U+017F)", signedDoc(`"TLS.ſig":"AAAA"`, ""), fmt.Sprintf(caseOf, "TLS.sig")},
		{"long s in TLS", signedDoc(`"TLſ.identifier":"administrator"`, ""), fmt.Sprintf(caseOf, "TLS.identifier")},
		{"Kelvin sign (U+212A)", signedDoc(`"TLS.sdKappid":1400000001`, ""), fmt.Sprintf(caseOf, "TLS.sdkappid")},
		{"dotless i (U+0131)", signedDoc(`"TLS.ıdentifier":"administrator"`, ""), fmt.Sprintf(caseOf, "TLS.identifier")},
		{"dotted I (U+0130)", signedDoc(`"TLS.İdentifier":"administrator"`, ""), fmt.Sprintf(caseOf, "TLS.identifier")},
		{"escaped capital", signedDoc(`"TLS.\u0049dentifier":"administrator"`, ""), fmt.Sprintf(caseOf, "TLS.identifier")},
		{"escaped long s", signedDoc(`"TLS.\u017fig":"AAAA"`, ""), fmt.Sprintf(caseOf, "TLS.sig")},
		{"escaped Kelvin sign", signedDoc(`"TLS.sd\u212Aappid":1`, ""), fmt.Sprintf(caseOf, "TLS.sdkappid")},
		{"escaped lower-case t", signedDoc(`"\u0074LS.time":0`, ""), fmt.Sprintf(caseOf, "TLS.time")},
		{"underscore (encoding/json/v2 ignores it)", signedDoc(`"TLS.user_buf":"AQID"`, ""), fmt.Sprintf(caseOf, "TLS.userbuf")},
		{"leading dash", signedDoc(`"-tls.sig":"AAAA"`, ""), fmt.Sprintf(caseOf, "TLS.sig")},
		{"nested value under a look-alike", signedDoc(`"TLS.Identifier":{"a":1}`, ""), fmt.Sprintf(caseOf, "TLS.identifier")},
	} {
		for _, level := range []int{0, 6} {
			ticket := deflateTicket(t, tc.doc, level)
			r := signer.Verify(ticket, exampleAppID, "user_0001", []*signer.Key{mustKey(t, exampleKey)}, time.Unix(1750000000, 0))
			_, err := signer.Decode(ticket)
			if tc.reason == "" {
				if r.Status != signer.Valid || err != nil {
					t.Errorf("%s (level %d): Verify = %v (%s), Decode error %v; want VALID", tc.name, level, r.Status, r.Reason, err)
				}
				continue
			}
			if r.Status != signer.Malformed || r.Reason != tc.reason || r.KeyIndex != -1 {
				t.Errorf("%s (level %d): Verify = %v (%q) key %d; want MALFORMED (%q)", tc.name, level, r.Status, r.Reason, r.KeyIndex, tc.reason)
			}
			if err == nil || err.Error() != tc.reason {
				t.Errorf("%s (level %d): Decode error %v, want %q", tc.name, level, err, tc.reason)
			}
			for _, q := range []string{"administrator", "user_0001", "ſ", "K", "ı", "İ", "Identifier", "1400000000"} {
				if strings.Contains(r.Reason, q) {
					t.Errorf("%s: the reason %q quotes the ticket (%q)", tc.name, r.Reason, q)
				}
			}
		}
	}
}

// TestOtherSpellings: the spellings doc.go lists as accepted verify alike,
// and Decode reports one canonical TLS.sig for all of them.
func TestOtherSpellings(t *testing.T) {
	key := mustKey(t, exampleKey)
	is, err := key.UserSig(exampleAppID, "user_0001", time.Hour, time.Unix(1750000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	want, err := signer.Decode(is.Ticket)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.NewReplacer("*", "+", "-", "/", "_", "=").Replace(is.Ticket))
	if err != nil {
		t.Fatal(err)
	}
	enc := func(b []byte) string {
		return strings.NewReplacer("+", "*", "/", "-", "=", "_").Replace(base64.StdEncoding.EncodeToString(b))
	}
	// TLS.sig's last character carries two unused bits; set one, and
	// escape a slash or plus.
	sig := want.Sig
	last := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", sig[42])
	oddSig := sig[:42] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[last|1]) + "="
	if oddSig == sig {
		oddSig = sig[:42] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[last|2]) + "="
	}
	oddSig = strings.NewReplacer("/", `\/`, "+", `\u002b`).Replace(oddSig)
	doc := `{"TLS.ver":"2.0","TLS.identifier":"user_0001","TLS.sdkappid":1400000000,"TLS.expire":3600,"TLS.time":1750000000,"TLS.sig":"` + oddSig + `"}`
	var z bytes.Buffer
	w, _ := zlib.NewWriterLevel(&z, 9)
	w.Write([]byte(doc))
	w.Close()
	for name, ticket := range map[string]string{
		"as minted":                     is.Ticket,
		"padding left out":              strings.TrimRight(is.Ticket, "_"),
		"bytes after the Adler-32":      enc(append(append([]byte{}, raw...), "anything at all"...)),
		"odd TLS.sig spelling, level 9": enc(z.Bytes()),
	} {
		r := signer.Verify(ticket, exampleAppID, "user_0001", []*signer.Key{key}, time.Unix(1750000000, 0))
		if r.Status != signer.Valid {
			t.Errorf("%s: Verify = %v (%s), want VALID", name, r.Status, r.Reason)
		}
		d, err := signer.Decode(ticket)
		if err != nil || d.Sig != want.Sig {
			t.Errorf("%s: Decode Sig %q (%v), want the canonical %q", name, d.Sig, err, want.Sig)
		}
	}
}

// TestTimeBound: TLS.time and TLS.time + TLS.expire may reach MaxTime,
// 9999-12-31T23:59:59Z, and not a second more.
func TestTimeBound(t *testing.T) {
	if got := time.Unix(signer.MaxTime, 0).UTC().Format(time.RFC3339); got != "9999-12-31T23:59:59Z" {
		t.Fatalf("MaxTime is %s", got)
	}
	key := mustKey(t, exampleKey)
	for _, tc := range []struct {
		name         string
		time, expire int64
		reason       string
	}{
		{"expiry at the bound", 1700000000, signer.MaxTime - 1700000000, ""},
		{"issued at the bound", signer.MaxTime, 0, ""},
		{"expiry a second past", 1700000000, signer.MaxTime - 1700000000 + 1, "the ticket's TLS.time + TLS.expire is past 9999-12-31T23:59:59Z"},
		{"issued a second past", signer.MaxTime + 1, 0, "the ticket's TLS.time is past 9999-12-31T23:59:59Z"},
		{"expire at int64 max", 1, 1<<63 - 1, "the ticket's TLS.time + TLS.expire is past 9999-12-31T23:59:59Z"},
	} {
		doc := fmt.Sprintf(`{"TLS.ver":"2.0","TLS.identifier":"u","TLS.sdkappid":1400000000,"TLS.expire":%d,"TLS.time":%d,"TLS.sig":"%s"}`,
			tc.expire, tc.time, naiveSig(exampleKey, "u", exampleAppID, tc.time, tc.expire, nil))
		ticket := deflateTicket(t, doc, 6)
		r := signer.Verify(ticket, exampleAppID, "u", []*signer.Key{key}, time.Unix(1700000000, 0))
		d, err := signer.Decode(ticket)
		if tc.reason != "" {
			if r.Status != signer.Malformed || r.Reason != tc.reason || err == nil || err.Error() != tc.reason {
				t.Errorf("%s: Verify = %v (%q), Decode error %v; want MALFORMED (%q)", tc.name, r.Status, r.Reason, err, tc.reason)
			}
			continue
		}
		if r.Status != signer.Valid || r.ExpireTime.Unix() != tc.time+tc.expire || r.IssueTime.Unix() != tc.time {
			t.Errorf("%s: Verify = %+v, want VALID until %d", tc.name, r, tc.time+tc.expire)
		}
		if err != nil || d.ExpireTime.Format(time.RFC3339) != "9999-12-31T23:59:59Z" {
			t.Errorf("%s: Decode = %+v, %v", tc.name, d, err)
		}
	}
}

// TestKind: what a ticket is, from its userbuf; nothing for a forgery.
func TestKind(t *testing.T) {
	key := mustKey(t, exampleKey)
	now := time.Unix(1750000000, 0)
	mint := func(is signer.Issued, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return is.Ticket
	}
	us := mint(key.UserSig(exampleAppID, "u", time.Hour, now))
	d, _ := signer.Decode(us)
	forged := deflateTicket(t, fmt.Sprintf(`{"TLS.ver":"2.0","TLS.identifier":"admin","TLS.sdkappid":%d,"TLS.expire":3600,"TLS.time":%d,"TLS.sig":"%s"}`,
		exampleAppID, now.Unix(), d.Sig), 6)
	for _, tc := range []struct {
		name, ticket, user string
		status             signer.Status
		kind               signer.Kind
		decoded            signer.Kind
	}{
		{"UserSig", us, "u", signer.Valid, signer.KindUserSig, signer.KindUserSig},
		{"PrivateMapKey", mint(key.PrivateMapKey(exampleAppID, "u", time.Hour, signer.Room{ID: 7}, 255, now)), "u", signer.Valid, signer.KindPrivateMapKey, signer.KindPrivateMapKey},
		{"PrivateMapKey, string room", mint(key.PrivateMapKey(exampleAppID, "u", time.Hour, signer.Room{Str: "r"}, 1, now)), "u", signer.Valid, signer.KindPrivateMapKey, signer.KindPrivateMapKey},
		{"other userbuf", mint(key.UserSigWithUserBuf(exampleAppID, "u", time.Hour, []byte("opaque bytes"), now)), "u", signer.Valid, signer.KindOtherUserBuf, signer.KindOtherUserBuf},
		{"PrivateMapKey for another user is still one", mint(key.PrivateMapKey(exampleAppID, "u", time.Hour, signer.Room{ID: 7}, 255, now)), "v", signer.UserIDMismatch, signer.KindPrivateMapKey, signer.KindPrivateMapKey},
		{"forged", forged, "admin", signer.SignatureMismatch, 0, signer.KindUserSig},
		{"malformed", "eJw", "u", signer.Malformed, 0, 0},
	} {
		r := signer.Verify(tc.ticket, exampleAppID, tc.user, []*signer.Key{key}, now)
		if r.Status != tc.status || r.Kind != tc.kind {
			t.Errorf("%s: Verify = %v kind %v, want %v kind %v", tc.name, r.Status, r.Kind, tc.status, tc.kind)
		}
		d, _ := signer.Decode(tc.ticket)
		if d.Kind != tc.decoded {
			t.Errorf("%s: Decode kind %v, want %v", tc.name, d.Kind, tc.decoded)
		}
	}
	for k, want := range map[signer.Kind]string{0: "UNSPECIFIED", signer.KindUserSig: "USER_SIG",
		signer.KindPrivateMapKey: "PRIVATE_MAP_KEY", signer.KindOtherUserBuf: "OTHER_USER_BUF", 4: "UNSPECIFIED"} {
		if k.String() != want {
			t.Errorf("Kind(%d) = %s, want %s", int(k), k, want)
		}
	}
}

// TestVectorKinds: over the official vectors, a ticket whose MAC matched
// is of the vector's kind, and Decode's kind follows the userbuf.
func TestVectorKinds(t *testing.T) {
	counts := map[signer.Kind]int{}
	for i, v := range loadVectors(t) {
		r := signer.Verify(v.UserSig, v.SDKAppID, v.Identifier, []*signer.Key{mustKey(t, v.Key)}, time.Unix(v.VerifyAt, 0))
		want := map[string]signer.Kind{"usersig": signer.KindUserSig, "pmk": signer.KindPrivateMapKey,
			"pmkstr": signer.KindPrivateMapKey, "buf": signer.KindOtherUserBuf}[v.Kind]
		if r.KeyIndex < 0 {
			want = 0
		}
		if r.Kind != want {
			t.Errorf("vector %d (%s, %v): kind %v, want %v", i+1, v.Kind, r.Status, r.Kind, want)
		}
		counts[r.Kind]++
		d, err := signer.Decode(v.UserSig)
		if err != nil {
			continue
		}
		if (d.Kind == signer.KindUserSig) != (d.UserBuf == nil) || (d.Kind == signer.KindPrivateMapKey) != (d.PrivateMap != nil) || d.Kind == 0 {
			t.Errorf("vector %d: Decode kind %v with userbuf %x", i+1, d.Kind, d.UserBuf)
		}
		if r.KeyIndex >= 0 && d.Kind != r.Kind {
			t.Errorf("vector %d: Decode kind %v, Verify kind %v", i+1, d.Kind, r.Kind)
		}
	}
	for _, k := range []signer.Kind{0, signer.KindUserSig, signer.KindPrivateMapKey, signer.KindOtherUserBuf} {
		if counts[k] == 0 {
			t.Errorf("no vector is of kind %v", k)
		}
	}
}
