package signer

import (
	"encoding/base64"
	"hash/adler32"
	"math/rand/v2"
	"strings"
	"testing"
)

var (
	stdRef    = base64.StdEncoding
	ticketRef = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789*-").WithPadding('_')
)

// TestBase64MatchesEncodingBase64 holds the hand-written codec to
// encoding/base64's output for every length up to 300.
func TestBase64MatchesEncodingBase64(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 300; n++ {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(r.Uint32())
		}
		for _, c := range []struct {
			a   *alphabet
			ref *base64.Encoding
		}{{stdAlphabet, stdRef}, {ticketAlphabet, ticketRef}} {
			want := c.ref.EncodeToString(src)
			got := string(c.a.appendEncode([]byte("prefix"), src))
			if got != "prefix"+want {
				t.Fatalf("appendEncode(%d bytes) = %q, want %q", n, got, want)
			}
			dec, err := appendDecode(c.a, []byte("p"), want, false)
			if err != nil || string(dec) != "p"+string(src) {
				t.Fatalf("appendDecode(%q) = %x, %v; want %x", want, dec, err, src)
			}
			unpadded := strings.TrimRight(want, string(rune(c.a.pad)))
			if _, err := appendDecode(c.a, nil, unpadded, false); err == nil && unpadded != want {
				t.Fatalf("appendDecode(%q) without padding succeeded with padOptional=false", unpadded)
			}
			dec, err = appendDecode(c.a, nil, []byte(unpadded), true)
			if err != nil || string(dec) != string(src) {
				t.Fatalf("appendDecode(%q, padOptional) = %x, %v; want %x", unpadded, dec, err, src)
			}
		}
	}
}

func TestBase64DecodeRejects(t *testing.T) {
	for _, s := range []string{
		"A", "AAAAA", "AAAAAAAAA", // a lone final character
		"AA=", "AAA", "AA=A", "A===", "====", // bad padding
		"AAA*", "AA.A", "AAAA AAA=", "AAAA\nAAA", "AAAAAAA\x00", "AAAA\xffAAA",
	} {
		if _, err := appendDecode(stdAlphabet, nil, s, false); err == nil {
			t.Errorf("appendDecode(std, %q) succeeded, want an error", s)
		}
		if _, err := stdRef.DecodeString(s); err == nil && !strings.ContainsAny(s, "\n") {
			t.Errorf("encoding/base64 accepts %q; the test case is wrong", s)
		}
	}
}

func FuzzBase64(f *testing.F) {
	f.Add("AAAA", true)
	f.Add("eJwtzFEL_", false)
	f.Fuzz(func(t *testing.T, s string, optional bool) {
		got, err := appendDecode(ticketAlphabet, nil, s, optional)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to the same bytes.
		re := ticketRef.EncodeToString(got)
		back, err := ticketRef.DecodeString(re)
		if err != nil || string(back) != string(got) {
			t.Fatalf("round trip of %q: %x vs %x", s, got, back)
		}
	})
}

func TestAdler32MatchesHashAdler32(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 7, 8, 9, 63, 64, 65, 5551, 5552, 5553, 20000, 70000} {
		for _, fill := range []string{"random", "0xff"} {
			b := make([]byte, n)
			for i := range b {
				if fill == "random" {
					b[i] = byte(r.Uint32())
				} else {
					b[i] = 0xff
				}
			}
			if got, want := adler32Sum(b), adler32.Checksum(b); got != want {
				t.Errorf("adler32Sum(%d %s bytes) = %08x, want %08x", n, fill, got, want)
			}
		}
	}
}
