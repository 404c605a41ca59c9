package server

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// connLimit bounds the gRPC listener's connections, each of which costs
// the server buffers, goroutines and the streams grpc-go keeps for it. A
// plain cap would let whoever fills it shut every other client out, so:
//
//   - at the cap, a new connection closes the oldest one that has never
//     carried a caller's call (one with valid credentials) and takes its
//     place; only when every connection has carried one is a new one
//     refused. A client with credentials gets in by evicting an idle
//     stranger, and stays once it has called;
//   - one source address may hold at most perSource connections, so one
//     host cannot fill the cap alone. Loopback is exempt: behind a
//     sidecar proxy every client is 127.0.0.1, and local users are
//     trusted with the port anyway (see SECURITY.md).
type connLimit struct {
	net.Listener
	max, perSource int
	exemptLoopback bool

	mu       sync.RWMutex
	byAddr   map[netip.AddrPort]*limitedConn
	bySource map[netip.Addr]int

	evicted, refused prometheus.Counter
}

func newConnLimit(l net.Listener, max, perSource int, m *metrics) *connLimit {
	c := &connLimit{Listener: l, max: max, perSource: perSource, exemptLoopback: true,
		byAddr: map[netip.AddrPort]*limitedConn{}, bySource: map[netip.Addr]int{}}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "usersig_connections_closed_total",
		Help: "gRPC connections closed by the connection limit: evicted (the oldest without a caller's call, to admit a new one) or refused (at the cap with every connection a caller's, or over the per-source limit).",
	}, []string{"why"})
	m.registry.MustRegister(vec)
	c.evicted, c.refused = vec.WithLabelValues("evicted"), vec.WithLabelValues("refused")
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "usersig_connections_open",
		Help: "gRPC connections open.",
	}, func() float64 { c.mu.RLock(); defer c.mu.RUnlock(); return float64(len(c.byAddr)) })
	m.registry.MustRegister(open)
	return c
}

// limitedConn is an accepted connection under the limit.
type limitedConn struct {
	net.Conn
	l        *connLimit
	addr     netip.AddrPort
	accepted time.Time
	caller   atomic.Bool // has carried a caller's call
	once     sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.l.forget(c) })
	return c.Conn.Close()
}

func (l *connLimit) forget(c *limitedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byAddr[c.addr] == c {
		delete(l.byAddr, c.addr)
		if l.bySource[c.addr.Addr()]--; l.bySource[c.addr.Addr()] <= 0 {
			delete(l.bySource, c.addr.Addr())
		}
	}
}

// Accept admits the next connection under the limit.
func (l *connLimit) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if c := l.admit(raw); c != nil {
			return c, nil
		}
		raw.Close()
		l.refused.Inc()
	}
}

// admit registers raw, evicting an idle stranger at the cap; nil when raw
// must be refused.
func (l *connLimit) admit(raw net.Conn) *limitedConn {
	addr := addrPort(raw.RemoteAddr())
	src := addr.Addr()
	l.mu.Lock()
	var victim *limitedConn
	defer func() {
		l.mu.Unlock()
		if victim != nil {
			victim.Close() // outside the lock: Close forgets it
			l.evicted.Inc()
		}
	}()
	if !(l.exemptLoopback && src.IsLoopback()) && l.bySource[src] >= l.perSource {
		return nil
	}
	if len(l.byAddr) >= l.max {
		for _, c := range l.byAddr {
			if !c.caller.Load() && (victim == nil || c.accepted.Before(victim.accepted)) {
				victim = c
			}
		}
		if victim == nil {
			return nil
		}
		// Forget it now, so that the new one fits at once.
		delete(l.byAddr, victim.addr)
		if l.bySource[victim.addr.Addr()]--; l.bySource[victim.addr.Addr()] <= 0 {
			delete(l.bySource, victim.addr.Addr())
		}
	}
	c := &limitedConn{Conn: raw, l: l, addr: addr, accepted: time.Now()}
	l.byAddr[addr] = c
	l.bySource[src]++
	return c
}

// callerCalled marks the connection a caller's call came on as one the
// limit keeps. The tap calls it with the call's peer address.
func (l *connLimit) callerCalled(remote net.Addr) {
	addr := addrPort(remote)
	l.mu.RLock()
	c := l.byAddr[addr]
	l.mu.RUnlock()
	if c != nil {
		c.caller.Store(true)
	}
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
