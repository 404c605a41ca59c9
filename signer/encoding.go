package signer

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"io"
	"strconv"
)

// Why a ticket is malformed. The messages never quote the ticket.
var (
	errEmpty         = errors.New("the ticket is empty")
	errTooLong       = errors.New("the ticket is longer than " + strconv.Itoa(MaxTicketLen) + " characters")
	errTicketBase64  = errors.New("the ticket is not in the ticket alphabet (base64 with * - _)")
	errZlibHeader    = errors.New("the ticket is not a zlib stream")
	errZlibTruncated = errors.New("the ticket's zlib stream is truncated")
	errZlibCorrupt   = errors.New("the ticket's zlib stream is corrupt")
	errZlibChecksum  = errors.New("the ticket's zlib checksum does not match")
	errTooLarge      = errors.New("the ticket's document inflates to more than " + strconv.Itoa(MaxInflated) + " bytes")
)

// A stored zlib stream is laid out as compress/zlib writes it at level 0,
// which is what Tencent's Go library emits: the zlib header (deflate, 32K
// window, fastest level), a stored block holding the data (BFINAL=0,
// BTYPE=00, then LEN and NLEN), an empty final stored block, and the
// Adler-32 of the data.
var (
	zlibStoredHeader = [...]byte{0x78, 0x01, 0x00, 0, 0, 0, 0}
	zlibStoredFinal  = [...]byte{0x01, 0x00, 0x00, 0xff, 0xff}
)

// sealStored completes a stream that began with zlibStoredHeader and
// continued with at most 65535 bytes of data.
func sealStored(z []byte) []byte {
	data := z[len(zlibStoredHeader):]
	binary.LittleEndian.PutUint16(z[3:], uint16(len(data)))
	binary.LittleEndian.PutUint16(z[5:], ^uint16(len(data)))
	sum := adler32Sum(data)
	z = append(z, zlibStoredFinal[:]...)
	return binary.BigEndian.AppendUint32(z, sum)
}

// inflate appends the document the zlib stream z holds to d.doc.
// Streams made only of stored blocks (Tencent's Go library and this
// package) are copied out directly; anything else goes through a pooled
// compress/zlib reader. Either way at most MaxInflated bytes come out.
func (d *decoder) inflate(z []byte) error {
	if len(z) < 2 {
		return errZlibTruncated
	}
	cmf, flg := z[0], z[1]
	if cmf&0x0f != 8 || cmf>>4 > 7 || (uint16(cmf)<<8|uint16(flg))%31 != 0 || flg&0x20 != 0 {
		return errZlibHeader
	}
	if doc, ok, err := inflateStored(d.doc[:0], z[2:]); ok {
		d.doc = doc
		return err
	}
	return d.inflateDeflate(z)
}

// inflateStored copies out a deflate stream of stored blocks followed by
// the zlib trailer. ok is false when a block is compressed.
func inflateStored(dst, p []byte) (doc []byte, ok bool, err error) {
	for {
		if len(p) == 0 {
			return dst, true, errZlibTruncated
		}
		h := p[0]
		if h>>1&3 != 0 {
			return dst, false, nil
		}
		if len(p) < 5 {
			return dst, true, errZlibTruncated
		}
		n := int(binary.LittleEndian.Uint16(p[1:]))
		if uint16(n) != ^binary.LittleEndian.Uint16(p[3:]) {
			return dst, true, errZlibCorrupt
		}
		p = p[5:]
		if len(p) < n {
			return dst, true, errZlibTruncated
		}
		if len(dst)+n > MaxInflated {
			return dst, true, errTooLarge
		}
		dst = append(dst, p[:n]...)
		p = p[n:]
		if h&1 == 1 {
			break
		}
	}
	if len(p) < 4 {
		return dst, true, errZlibTruncated
	}
	if binary.BigEndian.Uint32(p) != adler32Sum(dst) {
		return dst, true, errZlibChecksum
	}
	return dst, true, nil
}

// inflateDeflate inflates the deflate stream after the zlib header z[:2]
// with a pooled flate reader and checks the Adler-32 trailer itself
// (compress/zlib allocates a checksum on every reset).
func (d *decoder) inflateDeflate(z []byte) error {
	d.zsrc.Reset(z[2:])
	if d.flate == nil {
		d.flate = flate.NewReader(&d.zsrc)
	} else if err := d.flate.(flate.Resetter).Reset(&d.zsrc, nil); err != nil {
		return errZlibCorrupt
	}
	if cap(d.doc) < MaxInflated+1 {
		d.doc = make([]byte, 0, MaxInflated+1)
	}
	buf := d.doc[:0]
	for {
		n, err := d.flate.Read(buf[len(buf) : MaxInflated+1])
		buf = buf[:len(buf)+n]
		d.doc = buf
		switch {
		case len(buf) > MaxInflated:
			return errTooLarge
		case err == io.EOF:
			// bytes.Reader is an io.ByteReader, so flate read no further
			// than the end of the deflate stream: the trailer comes next.
			trailer := z[len(z)-d.zsrc.Len():]
			if len(trailer) < 4 {
				return errZlibTruncated
			}
			if binary.BigEndian.Uint32(trailer) != adler32Sum(buf) {
				return errZlibChecksum
			}
			return nil
		case errors.Is(err, io.ErrUnexpectedEOF):
			return errZlibTruncated
		case err != nil:
			return errZlibCorrupt
		}
	}
}

// zlibSource is the bytes.Reader a pooled zlib reader reads from.
type zlibSource = bytes.Reader

// adler32Sum is hash/adler32's checksum, eight bytes a step. Over eight
// bytes b0..b7, s1 gains their sum and s2 gains 8*s1 + 8*b0 + 7*b1 + ... +
// b7: the same totals the byte-at-a-time loop reaches. The bytes are split
// into two words of four 16-bit lanes (even and odd bytes); one multiply
// per word sums its lanes, plain or weighted, into the top lane.
func adler32Sum(p []byte) uint32 {
	const (
		mod   = 65521
		nmax  = 5552 // the most bytes before s2 could overflow; a multiple of 8
		lanes = 0x00ff00ff00ff00ff
		ones  = 0x0001000100010001
		wEven = 2 | 4<<16 | 6<<32 | 8<<48 // weights of b6, b4, b2, b0
		wOdd  = 1 | 3<<16 | 5<<32 | 7<<48 // weights of b7, b5, b3, b1
	)
	s1, s2 := uint32(1), uint32(0)
	for len(p) > 0 {
		q := p
		if len(q) > nmax {
			q = q[:nmax]
		}
		p = p[len(q):]
		for ; len(q) >= 8; q = q[8:] {
			x := binary.LittleEndian.Uint64(q)
			even, odd := x&lanes, x>>8&lanes
			s2 += 8*s1 + uint32((even*wEven)>>48) + uint32((odd*wOdd)>>48)
			s1 += uint32(((even + odd) * ones) >> 48)
		}
		for _, c := range q {
			s1 += uint32(c)
			s2 += s1
		}
		s1 %= mod
		s2 %= mod
	}
	return s2<<16 | s1
}
