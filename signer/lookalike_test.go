package signer

import (
	"bytes"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// TestLookalikeRunes holds sameLetter to every rune: it matches every rune
// that bytes.EqualFold (encoding/json's key matching) or a comparison of
// upper- or lower-cased strings takes for a letter of a TLS.* key, and only
// t and T match the T that tlsLookalike's fast path looks for.
func TestLookalikeRunes(t *testing.T) {
	var letters []byte // every byte of the TLS.* keys, once
	for _, k := range tlsKeys {
		for i := 0; i < len(k); i++ {
			if bytes.IndexByte(letters, k[i]) < 0 {
				letters = append(letters, k[i])
			}
		}
	}
	found := map[string]bool{}
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		if r >= utf8.RuneSelf && unicode.SimpleFold(r) == r && unicode.ToUpper(r) == r && unicode.ToLower(r) == r {
			continue // uncased and not ASCII: no reader takes it for a letter
		}
		s := string(r)
		for _, c := range letters {
			cs := string(rune(c))
			// Other readers compare upper and lower cases (Java's
			// equalsIgnoreCase), which EqualFold alone does not cover.
			//lint:ignore SA6005 see above
			cased := strings.ToUpper(s) == strings.ToUpper(cs) || strings.ToLower(s) == strings.ToLower(cs)
			want := bytes.EqualFold([]byte(s), []byte(cs)) || cased
			got := sameLetter(r, c)
			if want && !got {
				t.Errorf("sameLetter(%U, %q) = false; a case-insensitive reader takes it for %q", r, c, c)
			}
			if got && r >= utf8.RuneSelf {
				found[s+"="+cs] = true
			}
		}
		if r != 't' && r != 'T' && sameLetter(r, 'T') {
			t.Errorf("sameLetter(%U, 'T'): tlsLookalike's fast path would miss it", r)
		}
	}
	// The non-ASCII runes that stand for a letter of a TLS.* key.
	for _, want := range []string{"ſ=s", "ſ=S", "K=k", "ı=i", "İ=i"} {
		if !found[want] {
			t.Errorf("sameLetter misses %s", want)
		}
	}
	if len(found) != 5 {
		t.Logf("non-ASCII look-alikes: %v", found)
	}
}

func TestTLSLookalike(t *testing.T) {
	for key, want := range map[string]int{
		"TLS.ver": keyVer, "tls.VER": keyVer, "TLS.Identifier": keyIdentifier, "TLS.ſig": keySig,
		"TLS.sdKappid": keySDKAppID, "TLS.user_buf": keyUserBuf, "__T-L-S.time__": keyTime, "TLS.EXPIRE": keyExpire,
		"TLS.ıdentifier": keyIdentifier, "TLS.\u0130dentifier": keyIdentifier,
		"": -1, "T": -1, "TLS": -1, "TLS.": -1, "TLS.ver2": -1, "TLS.ve": -1, "TLS.version": -1, "TLS ver": -1,
		"TLSxver": -1, "xTLS.ver": -1, "TLS.v\u00e9r": -1, "TLS.\xffver": -1, "___": -1, "tls.sig\x00": -1,
	} {
		if got := tlsLookalike([]byte(key)); got != want {
			t.Errorf("tlsLookalike(%q) = %d, want %d", key, got, want)
		}
	}
}
