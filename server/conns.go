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
//   - at the cap, a new connection closes the oldest connection that has
//     never carried a caller's call (one with valid credentials) from the
//     source holding the most connections, and takes its place; only when
//     every connection has carried one is a new one refused. A client with
//     credentials gets in by evicting an idle stranger of the busiest
//     source, and stays once it has called;
//   - one source may hold at most perSource connections, so one host
//     cannot fill the cap alone. A source is an IPv4 address or an IPv6
//     /64 (one host's usual allocation). Loopback is exempt: behind a
//     sidecar proxy every client is 127.0.0.1, and local users are trusted
//     with the port anyway (see SECURITY.md).
type connLimit struct {
	net.Listener
	max, perSource int
	exemptLoopback bool

	mu       sync.RWMutex
	byAddr   map[connKey]*limitedConn
	bySource map[netip.Prefix]int

	evicted, refused, closedRefusals prometheus.Counter
}

// connKey names a connection: its two ends, as a listener bound to several
// addresses may take one client address and port on each.
type connKey struct{ local, remote netip.AddrPort }

func newConnLimit(l net.Listener, max, perSource int, m *metrics, listener string) *connLimit {
	c := &connLimit{Listener: l, max: max, perSource: perSource, exemptLoopback: true,
		byAddr: map[connKey]*limitedConn{}, bySource: map[netip.Prefix]int{}}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "usersig_connections_closed_total",
		Help:        "Connections closed by the connection limit of a listener (grpc, http_api): evicted (the oldest without a caller's call, to admit a new one), refused (at the cap with every connection a caller's, or over the per-source limit) or refusals (too many calls with a deadline refused on it).",
		ConstLabels: prometheus.Labels{"listener": listener},
	}, []string{"why"})
	m.registry.MustRegister(vec)
	c.evicted, c.refused, c.closedRefusals = vec.WithLabelValues("evicted"), vec.WithLabelValues("refused"), vec.WithLabelValues("refusals")
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "usersig_connections_open",
		Help:        "Connections open, by listener (grpc, http_api).",
		ConstLabels: prometheus.Labels{"listener": listener},
	}, func() float64 { c.mu.RLock(); defer c.mu.RUnlock(); return float64(len(c.byAddr)) })
	m.registry.MustRegister(open)
	return c
}

// limitedConn is an accepted connection under the limit.
type limitedConn struct {
	net.Conn
	l        *connLimit
	key      connKey
	source   netip.Prefix
	accepted time.Time
	caller   atomic.Bool  // has carried a caller's call
	refusals atomic.Int64 // calls with a deadline the tap refused
	once     sync.Once
	counted  bool // in byAddr and bySource; guarded by l.mu
}

func (c *limitedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.uncount(c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// uncount removes c from the counts, once; l.mu is held.
func (l *connLimit) uncount(c *limitedConn) {
	if !c.counted {
		return
	}
	c.counted = false
	if l.byAddr[c.key] == c {
		delete(l.byAddr, c.key)
	}
	if l.bySource[c.source]--; l.bySource[c.source] <= 0 {
		delete(l.bySource, c.source)
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

// sourceOf is the source a remote address counts against: the address, or
// its /64 for IPv6.
func sourceOf(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// admit registers raw, evicting an idle stranger at the cap; nil when raw
// must be refused.
func (l *connLimit) admit(raw net.Conn) *limitedConn {
	key := connKey{local: addrPort(raw.LocalAddr()), remote: addrPort(raw.RemoteAddr())}
	src := sourceOf(key.remote.Addr())
	l.mu.Lock()
	var victim *limitedConn
	defer func() {
		l.mu.Unlock()
		if victim != nil {
			victim.Conn.Close() // outside the lock; already uncounted
			l.evicted.Inc()
		}
	}()
	if !(l.exemptLoopback && key.remote.Addr().Unmap().IsLoopback()) && l.bySource[src] >= l.perSource {
		return nil
	}
	if len(l.byAddr) >= l.max {
		for _, c := range l.byAddr {
			if c.caller.Load() {
				continue
			}
			if victim == nil || l.bySource[c.source] > l.bySource[victim.source] ||
				l.bySource[c.source] == l.bySource[victim.source] && c.accepted.Before(victim.accepted) {
				victim = c
			}
		}
		if victim == nil {
			return nil
		}
		l.uncount(victim) // now, so that the new one fits at once
	}
	c := &limitedConn{Conn: raw, l: l, key: key, source: src, accepted: time.Now(), counted: true}
	if old := l.byAddr[key]; old != nil {
		// A client port reused before the server saw the old connection
		// close: the old one counts no more.
		l.uncount(old)
	}
	l.byAddr[key] = c
	l.bySource[src]++
	return c
}

// maxRefusalsPerConn is how many calls with a deadline the tap may refuse
// on a connection that never carried a caller's call before the
// connection is closed (connctx.go). A caller's connection is not closed
// for refusals: under overload its calls are refused for the server's
// limits, and closing it would add a reconnection to every refusal.
const maxRefusalsPerConn = 64

// callRefused counts a refused call with a deadline against its connection,
// and closes a stranger's connection past maxRefusalsPerConn.
func (l *connLimit) callRefused(local, remote net.Addr) {
	key := connKey{local: addrPort(local), remote: addrPort(remote)}
	l.mu.RLock()
	c := l.byAddr[key]
	l.mu.RUnlock()
	if c != nil && !c.caller.Load() && c.refusals.Add(1) == maxRefusalsPerConn+1 {
		c.Close()
		l.closedRefusals.Inc()
	}
}

// callerCalled marks the connection a caller's call came on as one the
// limit keeps. The tap calls it with the call's two addresses.
func (l *connLimit) callerCalled(local, remote net.Addr) {
	key := connKey{local: addrPort(local), remote: addrPort(remote)}
	l.mu.RLock()
	c := l.byAddr[key]
	l.mu.RUnlock()
	if c != nil {
		c.caller.Store(true)
	}
}

func addrPort(a net.Addr) netip.AddrPort {
	if a == nil {
		return netip.AddrPort{}
	}
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
