package server_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Regression tests from the review of the HTTP API (issue 13).

// apiTLSConfig is apiConfig with http_api.tls, its files in a new
// directory.
func apiTLSConfig(t *testing.T) string {
	ca := newCA(t)
	dir := t.TempDir()
	cert, key := ca.issue(t, "localhost", false)
	writePEM(t, dir+"/api.pem", "CERTIFICATE", cert)
	writePEM(t, dir+"/api-key.pem", "EC PRIVATE KEY", key)
	return apiConfig + "  tls: {cert_file: " + dir + "/api.pem, key_file: " + dir + "/api-key.pem}\n"
}

// TestHTTPAPIAttackHandshakeLogFlood: failed TLS handshakes cost an
// anonymous client nothing; they must not cost a log line each (net/http
// logs every one through http.Server.ErrorLog).
func TestHTTPAPIAttackHandshakeLogFlood(t *testing.T) {
	ts := startServer(t, apiTLSConfig(t))
	before := len(ts.logs.lines("handshake"))
	for i := 0; i < 200; i++ {
		c, err := net.Dial("tcp", ts.srv.APIAddr())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.Read(make([]byte, 64))
		c.Close()
	}
	time.Sleep(200 * time.Millisecond) // let the last handshakes fail
	if n := len(ts.logs.lines("handshake")) - before; n > 5 {
		t.Errorf("200 failed TLS handshakes wrote %d log lines; want them sampled (at most a few)", n)
	}
}

// TestHTTPAPIAttackStalledH2Streams: an anonymous HTTP/2 client that
// grants no flow-control window (SETTINGS_INITIAL_WINDOW_SIZE 0) makes
// every handler block writing its answer. The server must bound the
// streams it serves on a connection and end stalled ones (a write
// timeout), not hold a goroutine per stream for as long as the client
// keeps the connection.
func TestHTTPAPIAttackStalledH2Streams(t *testing.T) {
	ts := startServer(t, apiTLSConfig(t))
	base := runtime.NumGoroutine()
	const conns, streams = 2, 200
	stallH2(t, ts.srv.APIAddr(), conns, streams, "/openapi.json")
	time.Sleep(time.Second)
	peak := runtime.NumGoroutine() - base
	t.Logf("goroutines held by %d stalled connections of %d streams: %d", conns, streams, peak)
	if peak > conns*64 {
		t.Errorf("%d stalled streams hold %d goroutines: streams per connection are not bounded", conns*streams, peak)
	}
	deadline := time.Now().Add(90 * time.Second)
	for runtime.NumGoroutine()-base > 16 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if n := runtime.NumGoroutine() - base; n > 16 {
		t.Errorf("90 s on, stalled streams still hold %d goroutines: no write timeout ends them", n)
	}
}

// TestHTTPAPIAttackStalledRequestPools: stalled streams over many
// connections (each within the 32-stream limit) take at most the
// anonymous pool's 256 requests; the rest are reset at once, and a
// caller's request is still answered. (Before the pools, 1,000
// connections of 32 stalled streams held 34,000 goroutines and 578 MB.)
func TestHTTPAPIAttackStalledRequestPools(t *testing.T) {
	ts := startServer(t, apiTLSConfig(t))
	base := runtime.NumGoroutine()
	const conns, streams = 16, 32 // 512 stalled requests, twice the pool
	stallH2(t, ts.srv.APIAddr(), conns, streams, "/v1/nope")
	waitFor(t, "the requests beyond the anonymous pool to be reset", func() bool {
		n, _ := strconv.Atoi(ts.metric(`usersig_http_api_refused_total{reason="max_anonymous_requests"}`))
		return n >= conns*streams-256
	})
	if held := runtime.NumGoroutine() - base; held > 256+8*conns {
		t.Errorf("%d stalled requests hold %d goroutines, want the pool's 256 and a few per connection", conns*streams, held)
	}
	c := newAPIClient(ts, "https", &tls.Config{InsecureSkipVerify: true})
	if a := c.post("/v1/usersig:generate", `{"sdk_app_id": 1400000000, "user_id": "u1"}`, tokBackend); a.code != 200 {
		t.Errorf("a caller's request beside %d stalled ones: %d %s", conns*streams, a.code, a.raw)
	}
}

// stallH2 opens conns HTTP/2 connections that grant no flow-control
// window (SETTINGS_INITIAL_WINDOW_SIZE 0) and sends streams GETs of path
// on each; they read what the server sends but never a WINDOW_UPDATE, so
// every answer stalls.
func stallH2(t *testing.T, addr string, conns, streams int, path string) {
	t.Helper()
	for i := 0; i < conns; i++ {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if c.ConnectionState().NegotiatedProtocol != "h2" {
			t.Fatal("no h2")
		}
		c.Write([]byte(http2.ClientPreface))
		fr := http2.NewFramer(c, c)
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		fr.WriteSettingsAck() // the server's SETTINGS, ahead of time
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		for s := 0; s < streams; s++ {
			hb.Reset()
			for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", path}} {
				enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
			}
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*s + 1), BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
		}
		go func() { // read (and drop) what the server sends; never a WINDOW_UPDATE
			for {
				if _, err := fr.ReadFrame(); err != nil {
					return
				}
			}
		}()
	}
}

// TestHTTPAPIAttackIdleConnections: anonymous keep-alive connections
// that fill the API's connection cap do not lock callers out: a caller's
// request evicts the oldest of them (the cap is the gRPC listener's rule,
// conns.go), and a caller's own connection is kept.
func TestHTTPAPIAttackIdleConnections(t *testing.T) {
	ts := startServer(t, apiConfig)
	var idle []net.Conn
	t.Cleanup(func() {
		for _, c := range idle {
			c.Close()
		}
	})
	for i := 0; i < 1100; i++ {
		c, err := net.Dial("tcp", ts.srv.APIAddr())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
		io.WriteString(c, "GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	// A caller still gets in, at once, and stays.
	caller := newAPIClient(ts, "http", nil)
	caller.http.Timeout = 5 * time.Second
	for i := 0; i < 3; i++ {
		if a := caller.post("/v1/usersig:generate", `{"sdk_app_id": 1400000000, "user_id": "u1"}`, tokBackend); a.code != 200 {
			t.Fatalf("a caller's request %d beside 1,100 idle connections: %d %s", i, a.code, a.raw)
		}
	}
	if got := ts.metric(`usersig_connections_open{listener="http_api"}`); got != "1024" {
		t.Errorf("open API connections %s, want the cap, 1024", got)
	}
	if got := ts.metric(`usersig_connections_closed_total{listener="http_api",why="evicted"}`); got == "0" || got == "" {
		t.Errorf("no idle connection was evicted (closed_total evicted %q)", got)
	}
}
