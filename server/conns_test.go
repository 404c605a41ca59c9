package server

import (
	"net"
	"testing"
	"time"
)

// acceptAll serves l's Accept in the background and returns the accepted
// server-side connections as they come.
func acceptAll(t *testing.T, l net.Listener) <-chan net.Conn {
	t.Helper()
	ch := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(ch)
				return
			}
			ch <- c
		}
	}()
	return ch
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reports whether the server closed c: a read gets EOF
// (or a reset) rather than timing out.
func closedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	ne, ok := err.(net.Error)
	return err != nil && !(ok && ne.Timeout())
}

func newTestLimit(t *testing.T, max, perSource int, exemptLoopback bool) (*connLimit, <-chan net.Conn) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newConnLimit(raw, max, perSource, newMetrics("test"))
	l.exemptLoopback = exemptLoopback
	t.Cleanup(func() { l.Close() })
	return l, acceptAll(t, l)
}

// TestConnLimitEvictsStrangers: at the cap a new connection closes the
// oldest one that never carried a caller's call; when every connection
// has, a new one is refused.
func TestConnLimitEvictsStrangers(t *testing.T) {
	l, accepted := newTestLimit(t, 3, 100, true)
	var clients [3]net.Conn
	for i := range clients {
		clients[i] = dial(t, l.Addr().String())
		<-accepted
	}
	l.callerCalled(clients[0].LocalAddr()) // the first carried a caller's call
	fourth := dial(t, l.Addr().String())
	<-accepted
	if !closedByServer(clients[1]) {
		t.Error("the oldest connection without a caller's call was not evicted")
	}
	if closedByServer(clients[0]) {
		t.Error("the connection that carried a caller's call was evicted")
	}
	l.callerCalled(clients[2].LocalAddr())
	l.callerCalled(fourth.LocalAddr())
	fifth := dial(t, l.Addr().String())
	if !closedByServer(fifth) {
		t.Error("with every connection a caller's, a new one was not refused")
	}
	if closedByServer(clients[2]) || closedByServer(fourth) {
		t.Error("a caller's connection was closed to admit a stranger")
	}
}

// TestConnLimitPerSource: one address may hold perSource connections;
// loopback is exempt unless the limit says otherwise.
func TestConnLimitPerSource(t *testing.T) {
	l, accepted := newTestLimit(t, 100, 2, false)
	a, b := dial(t, l.Addr().String()), dial(t, l.Addr().String())
	<-accepted
	<-accepted
	if c := dial(t, l.Addr().String()); !closedByServer(c) {
		t.Error("a third connection from one source was not refused")
	}
	a.Close()
	waitUntil(t, func() bool {
		l.mu.RLock()
		defer l.mu.RUnlock()
		return l.bySource[addrPort(b.LocalAddr()).Addr()] == 2 || len(l.byAddr) <= 2
	})
	if closedByServer(b) {
		t.Error("the second connection was closed")
	}

	exempt, accepted2 := newTestLimit(t, 100, 2, true)
	for i := 0; i < 4; i++ {
		c := dial(t, exempt.Addr().String())
		<-accepted2
		if closedByServer(c) {
			t.Fatalf("loopback connection %d was refused", i+1)
		}
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
