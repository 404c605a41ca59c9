package signer

import (
	"crypto/sha256"
	"errors"
	"io"
	"math"
	"sync"
	"unicode"
	"unicode/utf8"
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
	errLookalike [len(tlsKeys)]error
	errVersion   = errors.New(`the ticket's TLS.ver is not "2.0"`)
	errSig       = errors.New("the ticket's TLS.sig is not the base64 of a 32-byte HMAC-SHA256")
	errUserBuf   = errors.New("the ticket's TLS.userbuf is not standard base64")
	errTime      = errors.New("the ticket's TLS.time is past " + maxTimeText)
	errLifetime  = errors.New("the ticket's TLS.time + TLS.expire is past " + maxTimeText)
)

func init() {
	for i, k := range tlsKeys {
		errMissing[i] = errors.New("the ticket has no " + k)
		errLookalike[i] = errors.New("the ticket's document has a key that is " + k + " only when case is ignored")
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
	// Both within MaxTime, so that every time a valid ticket carries
	// prints as a protobuf Timestamp and as RFC 3339.
	if f.time > MaxTime {
		return errTime
	}
	if f.expire > MaxTime-f.time {
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
		// Any other member is skipped, unless a reader that matches keys
		// without regard to case (as encoding/json does) would take it for
		// a TLS.* member: then the ticket has two readings. Valid tickets
		// hold only exact TLS.* keys, so this never runs for them.
		if k := tlsLookalike(key); k >= 0 {
			return errLookalike[k]
		}
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

// tlsLookalike returns the index in tlsKeys of the key that key matches when
// case, Unicode case mappings and underscores and dashes are ignored, or -1.
// It is called only for keys that are no exact TLS.* key. The match is wider
// than encoding/json's (bytes.EqualFold, Unicode simple folding: "TLS.ſig"
// with U+017F, "TLS.sdKappid" with the Kelvin sign U+212A) so that it also
// covers readers that compare upper- or lower-cased strings, as Java's
// equalsIgnoreCase does ("TLS.ıdentifier" with U+0131), and
// encoding/json/v2's case-insensitive matching, which ignores _ and -.
func tlsLookalike(key []byte) int {
	// Every TLS.* key starts with T; only t and T match it (TestLookalike
	// checks every rune), after any underscores and dashes.
	i := 0
	for i < len(key) && (key[i] == '_' || key[i] == '-') {
		i++
	}
	if i == len(key) || key[i]|0x20 != 't' {
		return -1
	}
	for k, name := range tlsKeys {
		if foldsTo(key, name) {
			return k
		}
	}
	return -1
}

// foldsTo reports whether key is name (ASCII) when case, Unicode case
// mappings and underscores and dashes in key are ignored.
func foldsTo(key []byte, name string) bool {
	j := 0
	for i := 0; i < len(key); {
		c := key[i]
		if c == '_' || c == '-' {
			i++
			continue
		}
		if j == len(name) {
			return false
		}
		r, n := rune(c), 1
		if c >= utf8.RuneSelf {
			r, n = utf8.DecodeRune(key[i:])
		}
		if !sameLetter(r, name[j]) {
			return false
		}
		i += n
		j++
	}
	return j == len(name)
}

// sameLetter reports whether r is the ASCII c, or a letter that some
// case-insensitive comparison takes for c: the other case of c, a rune in
// c's Unicode simple-folding orbit, or one whose upper or lower case is c.
func sameLetter(r rune, c byte) bool {
	if r == rune(c) {
		return true
	}
	lower, upper := rune(c|0x20), rune(c&^0x20)
	if lower < 'a' || lower > 'z' {
		return false // not a letter: only itself
	}
	switch {
	case r == lower || r == upper:
		return true
	case r < utf8.RuneSelf:
		return false
	case unicode.ToLower(r) == lower || unicode.ToUpper(r) == upper:
		return true
	}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f == lower || f == upper {
			return true
		}
	}
	return false
}
