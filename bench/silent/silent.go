// Package silent is a peer that takes TCP connections and never answers,
// as a dependency behind a firewall that drops packets, or a hung one,
// does. Tests point usersigd's identity providers and Redis at it.
package silent

import (
	"net"
	"sync"
	"testing"
)

// Listen serves a silent peer on a loopback port the kernel chooses until
// the test ends, and returns its address.
func Listen(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		held []net.Conn
	)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return l.Addr().String()
}
