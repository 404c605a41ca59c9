package server

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// userIDs are n distinct user ids of 12 to 20 bytes, as a real app's are.
func userIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "user_" + strconv.Itoa(1_000_000_000+i*7919)
	}
	return ids
}

// TestUserBucketsMemory: a million distinct user ids hold a caller's
// table at max_users, whose cost per entry is bounded; below max_users,
// buckets full again are swept.
func TestUserBucketsMemory(t *testing.T) {
	const million = 1_000_000
	ids := userIDs(million)
	for _, tc := range []struct {
		name     string
		maxUsers int
		most     int // bytes per entry held, generously (see TestUserBucketsMemory's log)
	}{
		{"default max_users", DefaultMaxUsers, 160},
		{"max_users a million", million, 160},
	} {
		before := heapInUse()
		b := newUserBuckets(0.2, 5, tc.maxUsers) // a bucket is full again 25s after a call
		var evicted int
		start := time.Now()
		for i, id := range ids {
			if _, ev, ok := b.allow(id, int64(i)); !ok {
				t.Fatalf("%s: user %d's first call refused", tc.name, i)
			} else if ev {
				evicted++
			}
		}
		took := time.Since(start)
		held := heapInUse() - min(before, heapInUse())
		n := b.userLen()
		if n > tc.maxUsers {
			t.Errorf("%s: %d user ids held, above max_users %d", tc.name, n, tc.maxUsers)
		}
		if want := million - tc.maxUsers; evicted != want {
			t.Errorf("%s: %d evictions, want %d (one a new user id over max_users)", tc.name, evicted, want)
		}
		perEntry := float64(held) / float64(n)
		t.Logf("%s: %d distinct user ids: %d held, %d evicted, heap %.1f MiB (%.0f bytes an entry), %s (%s a call); %s %s/%s, %d CPUs",
			tc.name, million, n, evicted, float64(held)/(1<<20), perEntry, took.Round(time.Millisecond), took/million, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
		if perEntry > float64(tc.most) {
			t.Errorf("%s: %.0f bytes an entry, want at most %d", tc.name, perEntry, tc.most)
		}
		runtime.KeepAlive(b)
	}
	runtime.KeepAlive(ids)
}

// TestUserBucketsSweep: buckets full again are dropped, and a table that
// emptied is rebuilt small.
func TestUserBucketsSweep(t *testing.T) {
	b := newUserBuckets(1, 1, 1000)
	for i := range 1000 {
		b.allow(fmt.Sprint("a", i), 0)
	}
	if n := b.userLen(); n != 1000 {
		t.Fatalf("%d held after 1000 user ids, want 1000", n)
	}
	later := int64(2 * time.Second) // every bucket is full again
	for i := range 600 {
		if _, ev, ok := b.allow(fmt.Sprint("b", i), later); !ok || ev {
			t.Fatalf("b%d: ok %v evicted %v: a sweep should have made room", i, ok, ev)
		}
	}
	if n := b.userLen(); n > 600 {
		t.Errorf("%d held, want at most the 600 not yet full", n)
	}
}

// TestUserBucketsEviction: at max_users a new user id evicts a bucket
// nearest to full, so a user at the end of its budget stays limited while
// a few other users come and go.
func TestUserBucketsEviction(t *testing.T) {
	b := newUserBuckets(1, 2, 100)
	now := int64(0)
	for i := range 99 {
		b.allow(fmt.Sprint("idle", i), now) // one call each: near full
	}
	b.allow("busy", now)
	b.allow("busy", now)
	if _, _, ok := b.allow("busy", now); ok {
		t.Fatal("busy's third call at burst 2 allowed")
	}
	for i := range 20 {
		if _, ev, ok := b.allow(fmt.Sprint("new", i), now); !ok || !ev {
			t.Fatalf("new%d: ok %v evicted %v, want allowed with an eviction", i, ok, ev)
		}
	}
	if n := b.userLen(); n != 100 {
		t.Errorf("%d held, want max_users 100", n)
	}
	if retry, _, ok := b.allow("busy", now); ok || retry <= 0 || retry > time.Second {
		t.Errorf("busy after 20 new users: ok %v retry %s; want still refused, retry at most 1s", ok, retry)
	}
}

// BenchmarkUserBuckets: one call of a new user id at a time, the table at
// max_users (each call sweeps or evicts).
func BenchmarkUserBuckets(b *testing.B) {
	ids := userIDs(1 << 20)
	u := newUserBuckets(0.2, 5, DefaultMaxUsers)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		u.allow(ids[i&(1<<20-1)], int64(i))
	}
}
