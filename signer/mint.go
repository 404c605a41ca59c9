package signer

import (
	"strconv"
	"time"
)

// Issued is a minted ticket and the times it carries.
type Issued struct {
	// Ticket is the UserSig or PrivateMapKey. It is a credential: do not log it.
	Ticket string
	// IssueTime is TLS.time.
	IssueTime time.Time
	// ExpireTime is TLS.time + TLS.expire, the last second the ticket is valid.
	ExpireTime time.Time
}

// UserSig mints a UserSig that logs userID in to the app sdkAppID for ttl
// from now. now is the one clock reading the ticket is built from.
func (k *Key) UserSig(sdkAppID uint64, userID string, ttl time.Duration, now time.Time) (Issued, error) {
	expire, err := validate(sdkAppID, userID, ttl, now)
	if err != nil {
		return Issued{}, err
	}
	st := k.get()
	defer k.put(st)
	return st.issue(sdkAppID, userID, now.Unix(), expire, nil), nil
}

// UserSigWithUserBuf mints a UserSig that carries userbuf, 1 to MaxUserBuf
// opaque bytes.
func (k *Key) UserSigWithUserBuf(sdkAppID uint64, userID string, ttl time.Duration, userbuf []byte, now time.Time) (Issued, error) {
	expire, err := validate(sdkAppID, userID, ttl, now)
	if err != nil {
		return Issued{}, err
	}
	if len(userbuf) == 0 || len(userbuf) > MaxUserBuf {
		return Issued{}, &FieldError{"userbuf", RuleUserBuf}
	}
	st := k.get()
	defer k.put(st)
	return st.issue(sdkAppID, userID, now.Unix(), expire, userbuf), nil
}

// PrivateMapKey mints a TRTC PrivateMapKey: a ticket whose userbuf lets
// userID enter room with the privileges in privilegeMap (the Privilege*
// bits) until now + ttl, the same second the ticket expires.
func (k *Key) PrivateMapKey(sdkAppID uint64, userID string, ttl time.Duration, room Room, privilegeMap uint32, now time.Time) (Issued, error) {
	expire, err := validate(sdkAppID, userID, ttl, now)
	if err != nil {
		return Issued{}, err
	}
	if err := room.validate(); err != nil {
		return Issued{}, err
	}
	if err := ValidatePrivilegeMap(uint64(privilegeMap)); err != nil {
		return Issued{}, err
	}
	st := k.get()
	defer k.put(st)
	t := now.Unix()
	st.ub = appendPrivateMapUserBuf(st.ub[:0], userID, uint32(sdkAppID), room, uint32(t+expire), privilegeMap)
	return st.issue(sdkAppID, userID, t, expire, st.ub), nil
}

func validate(sdkAppID uint64, userID string, ttl time.Duration, now time.Time) (expire int64, err error) {
	if err := ValidateSDKAppID(sdkAppID); err != nil {
		return 0, err
	}
	if err := ValidateUserID(userID); err != nil {
		return 0, err
	}
	return ValidateTTL(ttl, now.Unix())
}

// issue mints a ticket from validated values. The document is laid out
// exactly as Tencent's Go library (v1.4 and later) lays it out: key order,
// trailing newline, zlib level 0. For the same inputs both mint the same
// bytes.
func (st *macState) issue(sdkAppID uint64, userID string, t, expire int64, userbuf []byte) Issued {
	var ub64 []byte
	if userbuf != nil {
		ub64 = stdAlphabet.appendEncode(st.ub64[:0], userbuf)
		st.ub64 = ub64
	}
	// The numbers' decimal text, each a full slice of st.num.
	appText := strconv.AppendUint(st.num[:0], sdkAppID, 10)
	n := len(appText)
	timeText := strconv.AppendInt(st.num[n:n], t, 10)
	n += len(timeText)
	expireText := strconv.AppendInt(st.num[n:n], expire, 10)

	st.msg = appendStringToSign(st.msg[:0], userID, appText, timeText, expireText, ub64)
	sum := st.sign(st.msg)

	z := append(st.doc[:0], zlibStoredHeader[:]...)
	z = append(z, `{"TLS.ver":"2.0","TLS.identifier":"`...)
	z = append(z, userID...)
	z = append(z, `","TLS.sdkappid":`...)
	z = append(z, appText...)
	z = append(z, `,"TLS.expire":`...)
	z = append(z, expireText...)
	z = append(z, `,"TLS.time":`...)
	z = append(z, timeText...)
	if ub64 != nil {
		z = append(z, `,"TLS.userbuf":"`...)
		z = append(z, ub64...)
		z = append(z, '"')
	}
	z = append(z, `,"TLS.sig":"`...)
	z = stdAlphabet.appendEncode(z, sum)
	z = append(z, "\"}\n"...)
	z = sealStored(z)
	st.doc = z

	st.out = ticketAlphabet.appendEncode(st.out[:0], z)
	return Issued{
		Ticket:     string(st.out),
		IssueTime:  time.Unix(t, 0).UTC(),
		ExpireTime: time.Unix(t+expire, 0).UTC(),
	}
}
