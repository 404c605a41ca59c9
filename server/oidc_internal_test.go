package server

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"
	"time"
)

// TestVerifiedTokensBounded: the cache of verified ID tokens never holds
// more than maxVerifiedTokens, drops expired tokens first, and never
// answers with an expired one.
func TestVerifiedTokensBounded(t *testing.T) {
	var v verifiedTokens
	c := &caller{name: "app-users"}
	key := func(i int) (k [sha256.Size]byte) {
		binary.BigEndian.PutUint64(k[:], uint64(i))
		return k
	}
	future := time.Now().Add(time.Hour).UnixNano()
	past := time.Now().Add(-time.Second).UnixNano()
	// Half of a full cache has expired: a new token drops those, not the
	// live ones.
	for i := range maxVerifiedTokens {
		until := future
		if i%2 == 0 {
			until = past
		}
		v.put(key(i), verifiedToken{caller: c, userID: "u", until: until})
	}
	v.put(key(-1), verifiedToken{caller: c, userID: "new", until: future})
	if got := v.len(); got != maxVerifiedTokens/2+1 {
		t.Fatalf("after a put into a full cache, half expired: %d entries, want %d", got, maxVerifiedTokens/2+1)
	}
	for i := 1; i < 200; i += 2 {
		if _, ok := v.get(key(i)); !ok {
			t.Fatalf("live token %d was dropped while expired ones could go", i)
		}
	}
	if _, ok := v.get(key(0)); ok {
		t.Fatal("an expired token was answered")
	}
	// Four times the bound of live tokens: the cache stays within it.
	for i := range 4 * maxVerifiedTokens {
		v.put(key(maxVerifiedTokens+i), verifiedToken{caller: c, userID: "u", until: future})
		if n := v.len(); n > maxVerifiedTokens {
			t.Fatalf("%d entries after %d puts, above the bound %d", n, i+1, maxVerifiedTokens)
		}
	}
	if t2, ok := v.get(key(5*maxVerifiedTokens - 1)); !ok || t2.caller != c {
		t.Fatal("the newest token is not cached")
	}
}
