package signer

import (
	"crypto/sha256"
	"errors"
	"io"
	"math"
	"sync"
)

// fields are the members of a ticket's JSON document. The byte slices point
// into the decoder's buffers.
type fields struct {
	version    []byte
	identifier []byte
	sdkAppID   uint64
	time       int64
	expire     int64
	// The numbers as the document writes them, which is their canonical
	// decimal form: the string to sign is built from these.
	sdkAppIDText, timeText, expireText []byte
	userbuf64                          []byte // standard base64; nil when the ticket has no userbuf
	sig                                []byte // TLS.sig, standard base64
	seen                               uint8  // which of the TLS.* members were present
}

// zeroText stands for a missing TLS.expire, which means 0.
var zeroText = []byte("0")

// The TLS.* members; bit i of fields.seen is tlsKeys[i].
var tlsKeys = [...]string{"TLS.ver", "TLS.identifier", "TLS.sdkappid", "TLS.time", "TLS.expire", "TLS.userbuf", "TLS.sig"}

const (
	keyVer = iota
	keyIdentifier
	keySDKAppID
	keyTime
	keyExpire
	keyUserBuf
	keySig
	required = 1<<keyVer | 1<<keyIdentifier | 1<<keySDKAppID | 1<<keyTime | 1<<keySig
)

// Why a ticket's document is malformed, per member.
var (
	errMissing   [len(tlsKeys)]error
	errWrongType [len(tlsKeys)]error
	errVersion   = errors.New(`the ticket's TLS.ver is not "2.0"`)
	errSig       = errors.New("the ticket's TLS.sig is not the base64 of a 32-byte HMAC-SHA256")
	errUserBuf   = errors.New("the ticket's TLS.userbuf is not standard base64")
	errLifetime  = errors.New("the ticket's TLS.time + TLS.expire is too large")
)

func init() {
	for i, k := range tlsKeys {
		errMissing[i] = errors.New("the ticket has no " + k)
		switch i {
		case keySDKAppID, keyTime, keyExpire:
			errWrongType[i] = errors.New("the ticket's " + k + " is not a non-negative integer")
		default:
			errWrongType[i] = errors.New("the ticket's " + k + " is not a string")
		}
	}
}

// appendStringToSign appends the string the ticket's HMAC covers: every
// line ends in \n, and the userbuf line is there only when the ticket has a
// userbuf. TLS.ver is not signed. The numbers come as decimal text.
func appendStringToSign[S string | []byte](m []byte, identifier S, sdkAppID, time, expire, userbuf64 []byte) []byte {
	m = append(m, "TLS.identifier:"...)
	m = append(m, identifier...)
	m = append(m, "\nTLS.sdkappid:"...)
	m = append(m, sdkAppID...)
	m = append(m, "\nTLS.time:"...)
	m = append(m, time...)
	m = append(m, "\nTLS.expire:"...)
	m = append(m, expire...)
	m = append(m, '\n')
	if userbuf64 != nil {
		m = append(m, "TLS.userbuf:"...)
		m = append(m, userbuf64...)
		m = append(m, '\n')
	}
	return m
}

// decoder turns a ticket into its fields. Decoders are pooled with their
// buffers and zlib reader, so decoding allocates nothing.
type decoder struct {
	raw   []byte // the zlib stream
	doc   []byte // the JSON document
	esc   []byte // unescaped strings
	msg   []byte // the string to sign
	ub    []byte // the userbuf
	sig   []byte // TLS.sig decoded
	zsrc  zlibSource
	flate io.ReadCloser // pooled with the decoder
	f     fields
}

var decoders = sync.Pool{New: func() any { return new(decoder) }}

func getDecoder() *decoder { return decoders.Get().(*decoder) }

func putDecoder(d *decoder) {
	d.f = fields{}
	decoders.Put(d)
}

// decode fills d.f from ticket and decodes TLS.sig into d.sig.
func (d *decoder) decode(ticket string) error {
	switch {
	case len(ticket) == 0:
		return errEmpty
	case len(ticket) > MaxTicketLen:
		return errTooLong
	}
	var err error
	if d.raw, err = appendDecode(ticketAlphabet, d.raw[:0], ticket, true); err != nil {
		return errTicketBase64
	}
	if err := d.inflate(d.raw); err != nil {
		return err
	}
	if cap(d.esc) < len(d.doc) {
		d.esc = make([]byte, 0, len(d.doc))
	}
	p := jsonScanner{s: d.doc, esc: d.esc[:0]}
	d.f = fields{}
	if err := p.object(func(key []byte) error { return d.member(&p, key) }); err != nil {
		return err
	}
	f := &d.f
	if missing := required &^ f.seen; missing != 0 {
		for i := range tlsKeys {
			if missing&(1<<i) != 0 {
				return errMissing[i]
			}
		}
	}
	if string(f.version) != "2.0" {
		return errVersion
	}
	if f.expire > math.MaxInt64-f.time {
		return errLifetime
	}
	if f.expireText == nil {
		f.expireText = zeroText
	}
	if d.sig, err = appendDecode(stdAlphabet, d.sig[:0], f.sig, false); err != nil || len(d.sig) != sha256.Size {
		return errSig
	}
	if f.userbuf64 != nil {
		if d.ub, err = appendDecode(stdAlphabet, d.ub[:0], f.userbuf64, false); err != nil {
			return errUserBuf
		}
	}
	return nil
}

// member reads the value of the member named key.
func (d *decoder) member(p *jsonScanner, key []byte) error {
	var k int
	switch string(key) {
	case "TLS.ver":
		k = keyVer
	case "TLS.identifier":
		k = keyIdentifier
	case "TLS.sdkappid":
		k = keySDKAppID
	case "TLS.time":
		k = keyTime
	case "TLS.expire":
		k = keyExpire
	case "TLS.userbuf":
		k = keyUserBuf
	case "TLS.sig":
		k = keySig
	default:
		return p.skipValue()
	}
	f := &d.f
	if f.seen&(1<<k) != 0 {
		return errJSONDuplicate
	}
	f.seen |= 1 << k
	switch k {
	case keySDKAppID, keyTime, keyExpire:
		if p.i >= len(p.s) || p.s[p.i] == '"' {
			return errWrongType[k]
		}
		start := p.i
		v, isUint, err := p.number()
		if err != nil || !isUint || k != keySDKAppID && v > math.MaxInt64 {
			return errWrongType[k]
		}
		text := p.s[start:p.i:p.i]
		switch k {
		case keySDKAppID:
			f.sdkAppID, f.sdkAppIDText = v, text
		case keyTime:
			f.time, f.timeText = int64(v), text
		case keyExpire:
			f.expire, f.expireText = int64(v), text
		}
		return nil
	}
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		return errWrongType[k]
	}
	s, err := p.str()
	if err != nil {
		return err
	}
	switch k {
	case keyVer:
		f.version = s
	case keyIdentifier:
		f.identifier = s
	case keyUserBuf:
		f.userbuf64 = s
	case keySig:
		f.sig = s
	}
	return nil
}
