package signer_test

import (
	"bytes"
	"compress/zlib"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/usersig/usersig/signer"
)

// The benchmark ticket: user_0001 of app 1400000000, a 64-character key,
// 180 days.
const (
	benchAppID  = 1400000000
	benchUserID = "user_0001"
	benchSecret = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"
	benchTTL    = 180 * 24 * time.Hour
)

var benchNow = time.Unix(1700000000, 0)

// BenchmarkHMACFloor is the naive HMAC of one ticket's string to sign, the
// way Tencent's libraries compute it: the floor the ticket benchmarks are
// measured against.
func BenchmarkHMACFloor(b *testing.B) {
	key := []byte(benchSecret)
	msg := []byte("TLS.identifier:" + benchUserID + "\nTLS.sdkappid:" + strconv.Itoa(benchAppID) +
		"\nTLS.time:1700000000\nTLS.expire:15552000\n")
	b.ReportAllocs()
	for b.Loop() {
		h := hmac.New(sha256.New, key)
		h.Write(msg)
		h.Sum(nil)
	}
}

func BenchmarkGenerateUserSig(b *testing.B) {
	k := mustKey(b, benchSecret)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.UserSig(benchAppID, benchUserID, benchTTL, benchNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGeneratePrivateMapKey(b *testing.B) {
	k := mustKey(b, benchSecret)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.PrivateMapKey(benchAppID, benchUserID, benchTTL, signer.Room{ID: 10000}, signer.PrivilegeAll, benchNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyUserSig(b *testing.B) {
	k := mustKey(b, benchSecret)
	is, err := k.UserSig(benchAppID, benchUserID, benchTTL, benchNow)
	if err != nil {
		b.Fatal(err)
	}
	benchVerify(b, k, is.Ticket)
}

// BenchmarkVerifyUserSigZlib6 verifies a ticket laid out and compressed as
// Tencent's Node.js, Python, PHP, Java and C# libraries do: zlib level 6.
func BenchmarkVerifyUserSigZlib6(b *testing.B) {
	k := mustKey(b, benchSecret)
	is, err := k.UserSig(benchAppID, benchUserID, benchTTL, benchNow)
	if err != nil {
		b.Fatal(err)
	}
	d, err := signer.Decode(is.Ticket)
	if err != nil {
		b.Fatal(err)
	}
	doc := `{"TLS.ver":"2.0","TLS.identifier":"` + benchUserID + `","TLS.sdkappid":1400000000,"TLS.time":1700000000,"TLS.expire":15552000,"TLS.sig":"` + d.Sig + `"}`
	benchVerify(b, k, deflateTicket(b, doc, 6))
}

func benchVerify(b *testing.B, k *signer.Key, ticket string) {
	keys := []*signer.Key{k}
	now := benchNow.Add(time.Hour)
	if r := signer.Verify(ticket, benchAppID, benchUserID, keys, now); r.Status != signer.Valid {
		b.Fatalf("Verify = %v (%s), want VALID", r.Status, r.Reason)
	}
	b.ReportAllocs()
	for b.Loop() {
		if r := signer.Verify(ticket, benchAppID, benchUserID, keys, now); r.Status != signer.Valid {
			b.Fatal(r.Status)
		}
	}
}

// deflateTicket wraps a JSON document as a ticket at the given zlib level.
func deflateTicket(t testing.TB, doc string, level int) string {
	t.Helper()
	var buf bytes.Buffer
	w, err := zlib.NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(doc))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer("+", "*", "/", "-", "=", "_").Replace(base64.StdEncoding.EncodeToString(buf.Bytes()))
}
