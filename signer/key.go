package signer

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"hash"
	"sync"
)

// Key is an app's secret key, ready to sign and verify. It keeps keyed
// HMAC-SHA256 states for reuse, so a MAC costs one SHA-256 over the message
// and no allocation. A Key is safe for concurrent use; it never prints its
// secret (String and GoString are redacted).
type Key struct {
	secret []byte
	states sync.Pool // of *macState
}

// macState is one goroutine's keyed HMAC and the scratch space for a ticket.
type macState struct {
	mac  hash.Hash
	sum  [sha256.Size]byte
	num  [60]byte // three numbers' decimal text
	msg  []byte   // the string to sign
	ub   []byte   // the userbuf of a PrivateMapKey
	ub64 []byte   // the userbuf in standard base64
	doc  []byte   // the zlib stream holding the JSON document
	out  []byte   // the ticket
}

// ErrEmptyKey is returned by NewKey for an empty secret.
var ErrEmptyKey = errors.New("signer: the secret key is empty")

// NewKey returns a Key for secret, the string shown in Tencent's console,
// taken as raw bytes: a 64-hex-character key is not hex-decoded.
func NewKey(secret []byte) (*Key, error) {
	if len(secret) == 0 {
		return nil, ErrEmptyKey
	}
	k := &Key{secret: append([]byte(nil), secret...)}
	k.states.New = func() any {
		return &macState{mac: hmac.New(sha256.New, k.secret)}
	}
	return k, nil
}

// String hides the secret from fmt and loggers.
func (k *Key) String() string { return "signer.Key(redacted)" }

// GoString hides the secret from %#v.
func (k *Key) GoString() string { return k.String() }

func (k *Key) get() *macState   { return k.states.Get().(*macState) }
func (k *Key) put(st *macState) { k.states.Put(st) }

// sign returns the HMAC-SHA256 of msg, in st.sum.
func (st *macState) sign(msg []byte) []byte {
	st.mac.Reset()
	st.mac.Write(msg)
	return st.mac.Sum(st.sum[:0])
}
