package server

import (
	"net"
	"net/netip"
	"strconv"
	"syscall"
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
	l := newConnLimit(raw, max, perSource, newMetrics("test"), "grpc")
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
	l.callerCalled(clients[0].RemoteAddr(), clients[0].LocalAddr()) // the first carried a caller's call
	fourth := dial(t, l.Addr().String())
	<-accepted
	if !closedByServer(clients[1]) {
		t.Error("the oldest connection without a caller's call was not evicted")
	}
	if closedByServer(clients[0]) {
		t.Error("the connection that carried a caller's call was evicted")
	}
	l.callerCalled(clients[2].RemoteAddr(), clients[2].LocalAddr())
	l.callerCalled(fourth.RemoteAddr(), fourth.LocalAddr())
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
	dial(t, l.Addr().String())
	dial(t, l.Addr().String())
	sa := <-accepted
	<-accepted
	if c := dial(t, l.Addr().String()); !closedByServer(c) {
		t.Error("a third connection from one source was not refused")
	}
	sa.Close() // the server closes one: the source has room again
	if c := dial(t, l.Addr().String()); closedByServer(c) {
		t.Error("a connection was refused after one of its source's closed")
	}
	<-accepted

	exempt, accepted2 := newTestLimit(t, 100, 2, true)
	for i := 0; i < 4; i++ {
		c := dial(t, exempt.Addr().String())
		<-accepted2
		if closedByServer(c) {
			t.Fatalf("loopback connection %d was refused", i+1)
		}
	}
}

// dialFrom dials addr from the local address from (port 0: any), with
// SO_REUSEADDR and SO_REUSEPORT so that one local port can reach two
// server addresses.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	la, err := net.ResolveTCPAddr("tcp", from)
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{LocalAddr: la, Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) {
			if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); serr == nil {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf /* SO_REUSEPORT */, 1)
			}
		})
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestConnLimitKeysBothEnds: one client address and port reaching two of
// the listener's addresses is two connections, counted and forgotten
// apart.
func TestConnLimitKeysBothEnds(t *testing.T) {
	raw, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newConnLimit(raw, 100, 100, newMetrics("test"), "grpc")
	t.Cleanup(func() { l.Close() })
	accepted := acceptAll(t, l)
	port := raw.Addr().(*net.TCPAddr).Port
	a := dialFrom(t, "127.0.0.5:0", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	dialFrom(t, a.LocalAddr().String(), net.JoinHostPort("127.0.0.2", strconv.Itoa(port)))
	sa, sb := <-accepted, <-accepted
	count := func() (int, int) {
		l.mu.RLock()
		defer l.mu.RUnlock()
		return len(l.byAddr), l.bySource[sourceOf(addrPort(a.LocalAddr()).Addr())]
	}
	if conns, src := count(); conns != 2 || src != 2 {
		t.Errorf("two connections from one client port: %d counted, %d for its source; want 2 and 2", conns, src)
	}
	sa.Close()
	sb.Close()
	if conns, src := count(); conns != 0 || src != 0 {
		t.Errorf("after both closed: %d counted, %d for the source; want 0 and 0", conns, src)
	}
}

// TestConnLimitEvictsFromTheBusiestSource: at the cap, the stranger
// evicted is the oldest of the source holding the most connections, not
// an older one of a quieter source.
func TestConnLimitEvictsFromTheBusiestSource(t *testing.T) {
	l, accepted := newTestLimit(t, 4, 100, false)
	quiet := dialFrom(t, "127.0.0.3:0", l.Addr().String()) // the oldest
	<-accepted
	var busy []net.Conn
	for range 3 {
		busy = append(busy, dialFrom(t, "127.0.0.2:0", l.Addr().String()))
		<-accepted
	}
	dialFrom(t, "127.0.0.4:0", l.Addr().String())
	<-accepted
	if !closedByServer(busy[0]) {
		t.Error("the busiest source's oldest connection was not evicted")
	}
	if closedByServer(quiet) {
		t.Error("the quiet source's connection was evicted")
	}
}

// TestSourceOf: IPv4 addresses count alone, IPv6 ones by /64.
func TestSourceOf(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7/32",
		"::ffff:192.0.2.7":     "192.0.2.7/32",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
	} {
		if got := sourceOf(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("sourceOf(%s) = %s, want %s", in, got, want)
		}
	}
}
