package signer_test

import (
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/usersig/usersig/signer"
)

// FuzzVerify feeds arbitrary tickets to Verify and Decode. Whatever the
// input: no panic, Verify and Decode agree on what is malformed, and a
// pooled decoder that saw the input still verifies a good ticket.
func FuzzVerify(f *testing.F) {
	vs := loadVectors(f)
	for _, v := range vs {
		f.Add(v.UserSig)
	}
	key := mustKey(f, exampleKey)
	good, err := key.UserSig(exampleAppID, exampleUser, time.Hour, time.Unix(exampleTime, 0))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good.Ticket)
	keys := []*signer.Key{key, mustKey(f, vs[0].Key)}
	at := time.Unix(exampleTime, 0)
	f.Fuzz(func(t *testing.T, ticket string) {
		r := signer.Verify(ticket, exampleAppID, exampleUser, keys, at)
		if r.Status < signer.Valid || r.Status > signer.Malformed {
			t.Fatalf("Verify returned status %d", int(r.Status))
		}
		d, err := signer.Decode(ticket)
		if (err != nil) != (r.Status == signer.Malformed) {
			t.Fatalf("Decode error %v, Verify status %v", err, r.Status)
		}
		if err != nil {
			if err.Error() != r.Reason {
				t.Fatalf("Decode says %q, Verify %q", err, r.Reason)
			}
		} else if r.Status != signer.SignatureMismatch {
			if r.KeyIndex < 0 || !r.IssueTime.Equal(d.IssueTime) || !r.ExpireTime.Equal(d.ExpireTime) {
				t.Fatalf("Verify %+v disagrees with Decode %+v", r, d)
			}
		}
		if g := signer.Verify(good.Ticket, exampleAppID, exampleUser, keys, at); g.Status != signer.Valid {
			t.Fatalf("after this input a good ticket verifies as %v", g.Status)
		}
		if again := signer.Verify(ticket, exampleAppID, exampleUser, keys, at); again.Status != r.Status || again.Reason != r.Reason {
			t.Fatalf("Verify gave %v then %v", r.Status, again.Status)
		}
	})
}

// tlsStruct is how a business server might read a ticket's document with
// encoding/json: into a struct, whose keys encoding/json matches without
// regard to case, the last of several matching members winning.
type tlsStruct struct {
	Ver        string      `json:"TLS.ver"`
	Identifier string      `json:"TLS.identifier"`
	SDKAppID   json.Number `json:"TLS.sdkappid"`
	Time       json.Number `json:"TLS.time"`
	Expire     json.Number `json:"TLS.expire"`
	UserBuf    *string     `json:"TLS.userbuf"`
	Sig        string      `json:"TLS.sig"`
}

// FuzzDecode checks the ticket's JSON reader against encoding/json: every
// document it accepts, encoding/json accepts and reads the same way, into
// a map (exact keys) and into a struct (keys matched without regard to
// case). So a document has one reading: either Decode rejects it, or
// encoding/json reads Decode's values.
func FuzzDecode(f *testing.F) {
	for _, v := range loadVectors(f) {
		if d, err := signer.Decode(v.UserSig); err == nil {
			doc, _ := json.Marshal(map[string]any{"TLS.ver": d.Version, "TLS.identifier": d.Identifier,
				"TLS.sdkappid": d.SDKAppID, "TLS.time": d.IssueTime.Unix(), "TLS.expire": d.Expire, "TLS.sig": d.Sig})
			f.Add(string(doc), uint8(6))
		}
	}
	const sig = `"TLS.sig":"LvA7d\/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4="`
	f.Add(`{"TLS.ver":"\u0032.0","TLS.identifier":"\ud83d\ude00\ud800x","TLS.sdkappid":0,"TLS.time":0,`+sig+`}`, uint8(0))
	// Documents with a second reading: a key that is a TLS.* key but for
	// case (Unicode folds and escapes too), and a second document.
	const rest = `"TLS.sdkappid":1,"TLS.time":2,"TLS.expire":3,"TLS.userbuf":"AQID",` + sig
	for _, doc := range []string{
		`{"TLS.ver":"2.0","TLS.identifier":"alice",` + rest + `,"TLS.Identifier":"administrator"}`,
		`{"TLS.ver":"2.0","TLS.identifier":"alice",` + rest + `,"TLS.\u0049dentifier":"administrator"}`,
		`{"TLS.ver":"2.0","TLS.identifier":"alice",` + rest + `,"TLS.ſig":"AAAA"}`,
		`{"TLS.ver":"2.0","TLS.identifier":"alice",` + rest + `,"TLS.sdKappid":7}`,
		`{"TLS.ver":"2.0","TLS.identifier":"alice",` + rest + `,"tls.USERBUF":"AAAA"}`,
		`{"TLS.ver":"2.0","TLS.identifier":"alice",` + rest + `,"TLS.Ver":"2.0"}`,
		`{"TLS.ver":"2.0","TLS.identifier":"alice",` + rest + `}` + "\x00" + `{"TLS.identifier":"administrator"}`,
		`{"TLS.ver":"2.0","TLS.identifier":"alice",` + rest + `}` + " \n",
	} {
		f.Add(doc, uint8(6))
	}
	f.Fuzz(func(t *testing.T, doc string, level uint8) {
		ticket := deflateTicket(t, doc, int(level%10))
		d, err := signer.Decode(ticket)
		if err != nil {
			return
		}
		if !json.Valid([]byte(doc)) {
			t.Fatalf("Decode accepted %q, which is not JSON", doc)
		}
		var m map[string]any
		dec := json.NewDecoder(stringsReader(doc))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("Decode accepted %q; encoding/json: %v", doc, err)
		}
		if m["TLS.ver"] != "2.0" {
			t.Fatalf("Decode accepted TLS.ver %v", m["TLS.ver"])
		}
		if id, ok := m["TLS.identifier"].(string); !ok || utf8.ValidString(d.Identifier) && id != d.Identifier {
			t.Fatalf("identifier %q, encoding/json read %q", d.Identifier, m["TLS.identifier"])
		}
		if n, ok := m["TLS.sdkappid"].(json.Number); !ok || n.String() != formatUint(d.SDKAppID) {
			t.Fatalf("sdkappid %d, encoding/json read %v", d.SDKAppID, m["TLS.sdkappid"])
		}
		if n, ok := m["TLS.time"].(json.Number); !ok || n.String() != formatUint(uint64(d.IssueTime.Unix())) {
			t.Fatalf("time %d, encoding/json read %v", d.IssueTime.Unix(), m["TLS.time"])
		}
		if d.Expire < 0 || d.IssueTime.Unix() > signer.MaxTime-d.Expire {
			t.Fatalf("expire %d accepted", d.Expire)
		}
		if n, ok := m["TLS.expire"].(json.Number); ok && n.String() != formatUint(uint64(d.Expire)) || !ok && d.Expire != 0 {
			t.Fatalf("expire %d, encoding/json read %v", d.Expire, m["TLS.expire"])
		}
		if err := json.Unmarshal([]byte(doc), new(map[string]any)); err != nil {
			t.Fatalf("Decode accepted %q; encoding/json.Unmarshal: %v", doc, err)
		}
		var s tlsStruct
		if err := json.Unmarshal([]byte(doc), &s); err != nil {
			t.Fatalf("Decode accepted %q; encoding/json into a struct: %v", doc, err)
		}
		valid := utf8.ValidString(d.Identifier)
		if s.Ver != d.Version || valid && s.Identifier != d.Identifier || s.SDKAppID.String() != formatUint(d.SDKAppID) ||
			s.Time.String() != formatUint(uint64(d.IssueTime.Unix())) || s.Expire.String() != formatUint(uint64(d.Expire)) && (s.Expire != "" || d.Expire != 0) {
			t.Fatalf("Decode read %+v; encoding/json, matching keys without case, read %+v", d, s)
		}
		if (s.UserBuf == nil) != (d.UserBuf == nil) {
			t.Fatalf("Decode read userbuf %x; encoding/json read %v", d.UserBuf, s.UserBuf)
		}
		if s.UserBuf != nil {
			if ub, err := base64.StdEncoding.DecodeString(*s.UserBuf); err != nil || string(ub) != string(d.UserBuf) {
				t.Fatalf("Decode read userbuf %x; encoding/json read %q", d.UserBuf, *s.UserBuf)
			}
		}
		if mac, err := base64.StdEncoding.DecodeString(s.Sig); err != nil || base64.StdEncoding.EncodeToString(mac) != d.Sig {
			t.Fatalf("Decode read TLS.sig %q; encoding/json read %q", d.Sig, s.Sig)
		}
	})
}
