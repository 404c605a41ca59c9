package signer

import (
	"encoding/binary"
	"errors"
	"unicode/utf16"
	"unicode/utf8"
)

// A ticket's document is one flat JSON object of strings and numbers. This
// scanner reads exactly that, into slices of the document, without
// allocating: encoding/json would cost more than the whole HMAC. It accepts
// any key order, whitespace and escape that JSON allows, and rejects nested
// values and anything but whitespace after the closing brace; the decoder
// rejects duplicate TLS.* keys and their look-alikes.
type jsonScanner struct {
	s   []byte
	i   int
	esc []byte // unescaped copies of strings that held escapes
}

var (
	errJSONSyntax    = errors.New("the ticket's document is not a JSON object")
	errJSONNested    = errors.New("the ticket's document holds a nested object or array")
	errJSONDuplicate = errors.New("the ticket's document repeats a TLS field")
	errJSONTrailing  = errors.New("the ticket's document has something other than whitespace after its closing brace")
)

func (p *jsonScanner) skipSpace() {
	i := p.i
	for i < len(p.s) && (p.s[i] == ' ' || p.s[i] == '\t' || p.s[i] == '\n' || p.s[i] == '\r') {
		i++
	}
	p.i = i
}

// peek returns the next byte after whitespace, or 0 at the end. A NUL byte
// in the document also reads as 0, which no caller expects: it is a syntax
// error wherever it stands, and object checks the end of input by position.
func (p *jsonScanner) peek() byte {
	p.skipSpace()
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

// object calls field for each member of the top-level object.
func (p *jsonScanner) object(field func(key []byte) error) error {
	if p.peek() != '{' {
		return errJSONSyntax
	}
	p.i++
	if p.peek() == '}' {
		p.i++
	} else {
		for {
			if p.peek() != '"' {
				return errJSONSyntax
			}
			key, err := p.str()
			if err != nil {
				return err
			}
			if p.peek() != ':' {
				return errJSONSyntax
			}
			p.i++
			p.skipSpace()
			if err := field(key); err != nil {
				return err
			}
			c := p.peek()
			p.i++
			if c == '}' {
				break
			}
			if c != ',' {
				return errJSONSyntax
			}
		}
	}
	// Only JSON whitespace may follow: a NUL byte and a second document
	// after it are not the end of input.
	p.skipSpace()
	if p.i != len(p.s) {
		return errJSONTrailing
	}
	return nil
}

// str reads the string at p.i. It returns a slice of the document, or of
// p.esc when the string holds escapes.
func (p *jsonScanner) str() ([]byte, error) {
	s, start := p.s, p.i+1 // after the opening quote
	i := start
	// Eight bytes a step while none of them is special: a quote, a
	// backslash or a control character (the SWAR tests are exact when they
	// find nothing, which is all that is asked of them here).
	for ; i+8 <= len(s); i += 8 {
		x := binary.LittleEndian.Uint64(s[i:])
		if hasLess(x, 0x20)|hasZero(x^(0x22*ones8))|hasZero(x^(0x5c*ones8)) != 0 {
			break
		}
	}
	for i < len(s) && !strSpecial[s[i]] {
		i++
	}
	p.i = i
	switch {
	case i == len(s) || s[i] < 0x20:
		return nil, errJSONSyntax
	case s[i] == '\\':
		return p.strEscaped(start)
	}
	p.i++
	return s[start:i:i], nil
}

const (
	ones8  = 0x0101010101010101
	highs8 = 0x8080808080808080
)

// hasZero is non-zero when a byte of x is zero.
func hasZero(x uint64) uint64 { return (x - ones8) &^ x & highs8 }

// hasLess is non-zero when a byte of x is below n (n <= 128).
func hasLess(x, n uint64) uint64 { return (x - n*ones8) &^ x & highs8 }

// strSpecial marks the bytes that end a run of plain string characters.
var strSpecial = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

func (p *jsonScanner) strEscaped(start int) ([]byte, error) {
	from := len(p.esc)
	p.esc = append(p.esc, p.s[start:p.i]...)
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return p.esc[from:len(p.esc):len(p.esc)], nil
		case c < 0x20:
			return nil, errJSONSyntax
		case c != '\\':
			p.esc = append(p.esc, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.s) {
			return nil, errJSONSyntax
		}
		e := p.s[p.i+1]
		p.i += 2
		switch e {
		case '"', '\\', '/':
			p.esc = append(p.esc, e)
		case 'b':
			p.esc = append(p.esc, '\b')
		case 'f':
			p.esc = append(p.esc, '\f')
		case 'n':
			p.esc = append(p.esc, '\n')
		case 'r':
			p.esc = append(p.esc, '\r')
		case 't':
			p.esc = append(p.esc, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return nil, errJSONSyntax
			}
			if utf16.IsSurrogate(r) {
				// A pair decodes to one rune; a lone half becomes U+FFFD,
				// as encoding/json does.
				r2, ok2 := rune(0), false
				if p.i+1 < len(p.s) && p.s[p.i] == '\\' && p.s[p.i+1] == 'u' {
					save := p.i
					p.i += 2
					if r2, ok2 = p.hex4(); ok2 {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							r = dec
						} else {
							ok2 = false
						}
					}
					if !ok2 {
						p.i = save
					}
				}
				if !ok2 {
					r = utf8.RuneError
				}
			}
			p.esc = utf8.AppendRune(p.esc, r)
		default:
			return nil, errJSONSyntax
		}
	}
	return nil, errJSONSyntax
}

func (p *jsonScanner) hex4() (rune, bool) {
	if p.i+4 > len(p.s) {
		return 0, false
	}
	var r rune
	for _, c := range p.s[p.i : p.i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	p.i += 4
	return r, true
}

// number reads the number at p.i. isUint reports whether it is a plain
// non-negative integer that fits in a uint64, and v is then its value; its
// text is then also its canonical decimal form, as JSON allows no leading
// zeros or plus sign.
func (p *jsonScanner) number() (v uint64, isUint bool, err error) {
	s, i := p.s, p.i
	isUint = true
	if i < len(s) && s[i] == '-' {
		isUint = false
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		start := i
		for ; i < len(s) && '0' <= s[i] && s[i] <= '9'; i++ {
			v = v*10 + uint64(s[i]-'0')
		}
		// 19 digits always fit; 20 fit up to 2^64-1.
		if n := i - start; n > 20 || n == 20 && string(s[start:i]) > "18446744073709551615" {
			isUint = false
		}
	default:
		return 0, false, errJSONSyntax
	}
	if i < len(s) && s[i] == '.' {
		isUint = false
		i++
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return 0, false, errJSONSyntax
		}
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		isUint = false
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return 0, false, errJSONSyntax
		}
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
	}
	p.i = i
	return v, isUint, nil
}

// skipValue skips a scalar value of a member this package does not read.
func (p *jsonScanner) skipValue() error {
	if p.i >= len(p.s) {
		return errJSONSyntax
	}
	switch c := p.s[p.i]; {
	case c == '"':
		_, err := p.str()
		return err
	case c == '-' || '0' <= c && c <= '9':
		_, _, err := p.number()
		return err
	case c == '{' || c == '[':
		return errJSONNested
	}
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(p.s)-p.i >= len(lit) && string(p.s[p.i:p.i+len(lit)]) == lit {
			p.i += len(lit)
			return nil
		}
	}
	return errJSONSyntax
}
