package signer

import (
	"encoding/binary"
	"errors"
	"slices"
)

// alphabet is a base64 alphabet with the tables that make encoding and
// decoding cheap: encoding/base64 encodes three bytes at a time and cannot
// decode a string without copying it, which together cost more than the
// HMAC. This codec moves six bytes per step and reads strings in place; the
// tests hold it to encoding/base64's output.
type alphabet struct {
	pair [4096]uint16 // 12 bits -> two characters, first in the low byte
	dec  [256]byte    // character -> 6 bits, or 0xff
	pad  byte
}

func newAlphabet(chars string, pad byte) *alphabet {
	a := &alphabet{pad: pad}
	for i := range a.pair {
		a.pair[i] = uint16(chars[i>>6]) | uint16(chars[i&63])<<8
	}
	for i := range a.dec {
		a.dec[i] = 0xff
	}
	for i := 0; i < len(chars); i++ {
		a.dec[chars[i]] = byte(i)
	}
	return a
}

var (
	stdAlphabet    = newAlphabet("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", '=')
	ticketAlphabet = newAlphabet("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789*-", '_')
)

// errBase64 is returned for a string that is not base64 of the alphabet.
var errBase64 = errors.New("not base64")

// appendEncode appends the padded base64 of src.
func (a *alphabet) appendEncode(dst, src []byte) []byte {
	n := (len(src) + 2) / 3 * 4
	dst = slices.Grow(dst, n+2) // +2: the last 8-byte store may overhang
	out := dst[len(dst) : len(dst)+n+2]
	di, si := 0, 0
	pair := &a.pair
	for ; si+14 <= len(src); si, di = si+12, di+16 {
		// Two independent 6-byte groups a step.
		v := binary.BigEndian.Uint64(src[si : si+8])
		w := binary.BigEndian.Uint64(src[si+6 : si+14])
		o := out[di : di+16]
		binary.LittleEndian.PutUint64(o[:8], encode6(pair, v))
		binary.LittleEndian.PutUint64(o[8:], encode6(pair, w))
	}
	for ; si+8 <= len(src); si, di = si+6, di+8 {
		binary.LittleEndian.PutUint64(out[di:di+8], encode6(pair, binary.BigEndian.Uint64(src[si:si+8])))
	}
	for ; si+3 <= len(src); si, di = si+3, di+4 {
		v := uint(src[si])<<16 | uint(src[si+1])<<8 | uint(src[si+2])
		binary.LittleEndian.PutUint32(out[di:], uint32(a.pair[v>>12])|uint32(a.pair[v&0xfff])<<16)
	}
	switch len(src) - si {
	case 1:
		p := a.pair[uint(src[si])<<4]
		out[di], out[di+1], out[di+2], out[di+3] = byte(p), byte(p>>8), a.pad, a.pad
	case 2:
		v := uint(src[si])<<10 | uint(src[si+1])<<2
		p, q := a.pair[v>>6], a.pair[(v&63)<<6]
		out[di], out[di+1], out[di+2], out[di+3] = byte(p), byte(p>>8), byte(q), a.pad
	}
	return dst[:len(dst)+n]
}

// encode6 is the eight characters of the 6 bytes in v's top 48 bits, as
// one little-endian word (the first character in the low byte).
func encode6(pair *[4096]uint16, v uint64) uint64 {
	return uint64(pair[v>>52]) | uint64(pair[v>>40&0xfff])<<16 |
		uint64(pair[v>>28&0xfff])<<32 | uint64(pair[v>>16&0xfff])<<48
}

// appendDecode appends the bytes that the base64 s encodes. With
// padOptional, the trailing padding may be left out; otherwise it must be
// there, as in encoding/base64's StdEncoding. Bits after the last byte are
// ignored, as encoding/base64 ignores them.
func appendDecode[S string | []byte](a *alphabet, dst []byte, s S, padOptional bool) ([]byte, error) {
	n := len(s)
	for pad := 0; pad < 2 && n > 0 && s[n-1] == a.pad; pad++ {
		n--
	}
	switch {
	case n%4 == 1,
		n < len(s) && len(s)%4 != 0,
		n == len(s) && n%4 != 0 && !padOptional:
		return dst, errBase64
	}
	m := n / 4 * 3
	if r := n % 4; r > 0 {
		m += r - 1
	}
	dst = slices.Grow(dst, m+2) // +2: the last 8-byte store may overhang
	out := dst[len(dst) : len(dst)+m+2]
	rest := s[:n]
	dec := &a.dec
	for len(rest) >= 8 {
		// Eight independent lookups: a loop would chain them.
		c0, c1, c2, c3 := dec[rest[0]], dec[rest[1]], dec[rest[2]], dec[rest[3]]
		c4, c5, c6, c7 := dec[rest[4]], dec[rest[5]], dec[rest[6]], dec[rest[7]]
		if (c0|c1|c2|c3|c4|c5|c6|c7)&0xc0 != 0 {
			return dst, errBase64
		}
		binary.BigEndian.PutUint64(out,
			uint64(c0)<<58|uint64(c1)<<52|uint64(c2)<<46|uint64(c3)<<40|
				uint64(c4)<<34|uint64(c5)<<28|uint64(c6)<<22|uint64(c7)<<16)
		rest, out = rest[8:], out[6:]
	}
	if r := len(rest); r > 0 {
		var v uint64
		var bad byte
		for j := range r {
			c := dec[rest[j]]
			bad |= c
			v = v<<6 | uint64(c)
		}
		if bad&0xc0 != 0 {
			return dst, errBase64
		}
		v <<= 64 - 6*uint(r)
		for j := 0; j < r*6/8; j++ {
			out[j] = byte(v >> (56 - 8*uint(j)))
		}
	}
	return dst[:len(dst)+m], nil
}
