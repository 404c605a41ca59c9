package server

import (
	"net"
	"testing"
)

func TestPeerAddress(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 41234}, "127.0.0.1:41234"},
		{&net.TCPAddr{IP: net.ParseIP("10.1.2.3").To4(), Port: 1}, "10.1.2.3:1"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 443}, "[2001:db8::1]:443"},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 443, Zone: "eth0"}, "[fe80::1%eth0]:443"},
		{&net.UnixAddr{Name: "/run/usersig.sock", Net: "unix"}, "/run/usersig.sock"},
	} {
		f := peerAddress(tc.addr)
		got := f.String
		if got == "" && f.Interface != nil {
			got = f.Interface.(interface{ String() string }).String()
		}
		if f.Key != "peer.address" || got != tc.want {
			t.Errorf("peerAddress(%v) = %s %q, want peer.address %q", tc.addr, f.Key, got, tc.want)
		}
	}
}
