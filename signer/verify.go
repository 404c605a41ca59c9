package signer

import (
	"crypto/hmac"
	"time"
)

// Status is the outcome of verifying a ticket. The checks run in the order
// of the constants: a ticket that cannot be decoded is Malformed; then the
// MAC is checked, so a forged ticket reveals nothing beyond
// SignatureMismatch; then the app, the user and the expiry.
type Status int

// The statuses, numbered as usersig.v1.VerifyStatus numbers them.
const (
	Valid Status = iota + 1
	Expired
	SignatureMismatch
	UserIDMismatch
	SDKAppIDMismatch
	Malformed
)

var statusNames = [...]string{
	Valid:             "VALID",
	Expired:           "EXPIRED",
	SignatureMismatch: "SIGNATURE_MISMATCH",
	UserIDMismatch:    "USER_ID_MISMATCH",
	SDKAppIDMismatch:  "SDK_APP_ID_MISMATCH",
	Malformed:         "MALFORMED",
}

func (s Status) String() string {
	if s > 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "UNSPECIFIED"
}

// TencentErrorCode is the error code Tencent's servers answer for a ticket
// with this status (0 for a valid one).
func (s Status) TencentErrorCode() int32 {
	switch s {
	case Valid:
		return 0
	case Expired:
		return 70001
	case SignatureMismatch:
		return 70009
	case UserIDMismatch:
		return 70013
	case SDKAppIDMismatch:
		return 70014
	default:
		return 70003
	}
}

// Kind is what a ticket is, read from its userbuf: a PrivateMapKey is a
// UserSig with a userbuf, and logs its user in as a UserSig does.
type Kind int

// The kinds, numbered as usersig.v1.TicketKind numbers them.
const (
	KindUserSig       Kind = iota + 1 // no userbuf
	KindPrivateMapKey                 // a userbuf laid out as a PrivateMapKey's
	KindOtherUserBuf                  // a userbuf that is no PrivateMapKey
)

var kindNames = [...]string{
	KindUserSig:       "USER_SIG",
	KindPrivateMapKey: "PRIVATE_MAP_KEY",
	KindOtherUserBuf:  "OTHER_USER_BUF",
}

func (k Kind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "UNSPECIFIED"
}

// kindOf is the kind of a ticket with userbuf ub (nil: none) and pm, its
// decoded PrivateMapKey userbuf or nil.
func kindOf(hasUserBuf bool, pm *PrivateMap) Kind {
	switch {
	case !hasUserBuf:
		return KindUserSig
	case pm != nil:
		return KindPrivateMapKey
	}
	return KindOtherUserBuf
}

// Result is what Verify found.
type Result struct {
	Status Status
	// Kind is what the ticket is; 0 unless the MAC matched.
	Kind Kind
	// KeyIndex is the index of the key whose MAC matched, or -1.
	KeyIndex int
	// IssueTime and ExpireTime are TLS.time and TLS.time + TLS.expire. They
	// are zero unless the MAC matched.
	IssueTime, ExpireTime time.Time
	// PrivateMap is the decoded userbuf of a PrivateMapKey whose MAC
	// matched, or nil.
	PrivateMap *PrivateMap
	// Reason says why a Malformed ticket is malformed; it never quotes the
	// ticket.
	Reason string
}

// Valid reports whether the ticket is valid.
func (r Result) Valid() bool { return r.Status == Valid }

// Verify checks ticket against the app sdkAppID, the user userID and the
// time now. keys are the app's keys: the MAC is checked with each in turn,
// in constant time, until one matches. The MAC is computed over the
// ticket's own fields; only then are those fields compared with what the
// caller expects. A ticket is expired when now is after TLS.time +
// TLS.expire, as Tencent's verifiers have it.
func Verify(ticket string, sdkAppID uint64, userID string, keys []*Key, now time.Time) Result {
	d := getDecoder()
	defer putDecoder(d)
	if err := d.decode(ticket); err != nil {
		return Result{Status: Malformed, KeyIndex: -1, Reason: err.Error()}
	}
	f := &d.f
	d.msg = appendStringToSign(d.msg[:0], f.identifier, f.sdkAppIDText, f.timeText, f.expireText, f.userbuf64)
	r := Result{Status: SignatureMismatch, KeyIndex: -1}
	for i, k := range keys {
		st := k.get()
		ok := hmac.Equal(st.sign(d.msg), d.sig)
		k.put(st)
		if ok {
			r.KeyIndex = i
			break
		}
	}
	if r.KeyIndex < 0 {
		return r
	}
	r.IssueTime = time.Unix(f.time, 0).UTC()
	r.ExpireTime = time.Unix(f.time+f.expire, 0).UTC()
	if f.userbuf64 != nil {
		r.PrivateMap = parsePrivateMap(d.ub)
	}
	r.Kind = kindOf(f.userbuf64 != nil, r.PrivateMap)
	switch {
	case f.sdkAppID != sdkAppID:
		r.Status = SDKAppIDMismatch
	case string(f.identifier) != userID:
		r.Status = UserIDMismatch
	case now.Unix() > f.time+f.expire:
		r.Status = Expired
	default:
		r.Status = Valid
	}
	return r
}

// Decoded is every field of a ticket, read without a key: nothing in it is
// verified.
type Decoded struct {
	Version    string
	Identifier string
	SDKAppID   uint64
	IssueTime  time.Time // TLS.time
	Expire     int64     // TLS.expire in seconds; 0 when the ticket has none
	ExpireTime time.Time // TLS.time + TLS.expire
	Sig        string    // TLS.sig, re-encoded as canonical standard base64: one MAC, one spelling
	UserBuf    []byte    // nil when the ticket has no userbuf
	PrivateMap *PrivateMap
	Kind       Kind
}

// Decode reads a ticket without verifying it, for inspection. The error
// says why a ticket is malformed, as Verify's Reason does.
func Decode(ticket string) (Decoded, error) {
	d := getDecoder()
	defer putDecoder(d)
	if err := d.decode(ticket); err != nil {
		return Decoded{}, err
	}
	f := &d.f
	out := Decoded{
		Version:    string(f.version),
		Identifier: string(f.identifier),
		SDKAppID:   f.sdkAppID,
		IssueTime:  time.Unix(f.time, 0).UTC(),
		Expire:     f.expire,
		ExpireTime: time.Unix(f.time+f.expire, 0).UTC(),
		// The 32 bytes TLS.sig decodes to, encoded afresh: the text may
		// hold escapes or set the last character's unused bits.
		Sig: string(stdAlphabet.appendEncode(nil, d.sig)),
	}
	if f.userbuf64 != nil {
		out.UserBuf = append([]byte{}, d.ub...)
		out.PrivateMap = parsePrivateMap(d.ub)
	}
	out.Kind = kindOf(f.userbuf64 != nil, out.PrivateMap)
	return out, nil
}
