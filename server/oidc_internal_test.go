package server

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
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

// TestVerifiedTokensMemory: a full cache of verified ID tokens, with user
// ids of 28 bytes (Firebase's), costs a bounded amount per token.
func TestVerifiedTokensMemory(t *testing.T) {
	c := &caller{name: "app-users"}
	future := time.Now().Add(time.Hour).UnixNano()
	ids := make([]string, maxVerifiedTokens)
	for i := range ids {
		ids[i] = fmt.Sprintf("uid%025d", i)
	}
	before := heapInUse()
	var v verifiedTokens
	for _, id := range ids {
		v.put(sha256.Sum256([]byte(id)), verifiedToken{caller: c, userID: id, until: future})
	}
	held := heapInUse() - min(before, heapInUse())
	per := float64(held) / float64(v.len())
	t.Logf("%d verified tokens cached: heap %.1f MiB, %.0f bytes a token (the user ids' own bytes are shared with the test's); %s, %d CPUs",
		v.len(), float64(held)/(1<<20), per, runtime.Version(), runtime.NumCPU())
	if per > 200 {
		t.Errorf("%.0f bytes a cached token, want at most 200", per)
	}
	runtime.KeepAlive(&v)
	runtime.KeepAlive(ids)
}
