package signer

import (
	"fmt"
	"math"
	"time"
)

// Limits of the values a ticket may carry. They follow Tencent's documented
// rules; MaxUserBuf and the ticket size limits are ours.
const (
	// MaxUserIDLen is the longest UserID Tencent accepts, in bytes.
	MaxUserIDLen = 32
	// MaxRoomStrLen is the longest string room id TRTC accepts, in bytes.
	MaxRoomStrLen = 64
	// MaxPrivilegeMap has all eight privilege bits set.
	MaxPrivilegeMap = 255
	// MaxUserBuf is the longest userbuf this package mints, in bytes.
	MaxUserBuf = 1024
	// MaxTicketLen is the longest ticket Verify and Decode read; anything
	// longer is malformed without being decoded.
	MaxTicketLen = 16 << 10
	// MaxInflated caps the size of a ticket's JSON document once inflated,
	// so that a zlib bomb costs microseconds, not megabytes.
	MaxInflated = 8 << 10
	// MaxExpiry is the last second a ticket may be valid through: the
	// PrivateMapKey stores its absolute expiry as an unsigned 32-bit number.
	MaxExpiry = math.MaxUint32
	// MaxTime bounds the times a ticket may carry: Verify and Decode find
	// a ticket whose TLS.time or TLS.time + TLS.expire is later Malformed.
	// It is 9999-12-31T23:59:59Z, the last second a protobuf Timestamp (and
	// RFC 3339) can hold, so every time a decoded ticket reports can be
	// printed. Tickets minted here end by MaxExpiry, far earlier.
	MaxTime = 253402300799
)

// maxTimeText is MaxTime in RFC 3339.
const maxTimeText = "9999-12-31T23:59:59Z"

// Privilege bits of a PrivateMapKey's privilege map.
const (
	PrivilegeCreateRoom       = 1 << iota // create the room
	PrivilegeEnterRoom                    // enter the room
	PrivilegeSendAudio                    // send audio
	PrivilegeReceiveAudio                 // receive audio
	PrivilegeSendVideo                    // send video
	PrivilegeReceiveVideo                 // receive video
	PrivilegeSendSubstream                // send the substream (screen sharing)
	PrivilegeReceiveSubstream             // receive the substream
	PrivilegeAll              = MaxPrivilegeMap
)

// Rules, as FieldError reports them. Each names what a valid value looks like.
const (
	RuleUserID       = "must be 1 to 32 bytes of a-z A-Z 0-9 _ -"
	RuleSDKAppID     = "must be 1 to 4294967295"
	RuleTTLPositive  = "must be at least 1s"
	RuleTTLWhole     = "must be a whole number of seconds"
	RuleTTLRange     = "must end by 2106-02-07T06:28:15Z (the PrivateMapKey stores the expiry as a 32-bit Unix time)"
	RuleRoomID       = "must be 1 to 4294967295"
	RuleRoomStr      = "must be 1 to 64 bytes of letters, digits, space and !#$%&()+-:;<=.>?@[]^_{}|~,"
	RuleRoomOneOf    = "exactly one of room_id and room_str must be set"
	RulePrivilegeMap = "must be 1 to 255"
	RuleUserBuf      = "must be at most 1024 bytes"
)

// FieldError reports an input that breaks one of the rules above. Field is
// the snake_case name the service API uses for it; the error never repeats
// the value, which may be something a caller did not mean to log.
type FieldError struct {
	Field string
	Rule  string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Rule }

// userIDChars and roomStrChars mark the bytes allowed in a UserID and in a
// string room id.
var userIDChars, roomStrChars [256]bool

func init() {
	for c := 'a'; c <= 'z'; c++ {
		userIDChars[c], userIDChars[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		userIDChars[c] = true
	}
	userIDChars['_'], userIDChars['-'] = true, true
	roomStrChars = userIDChars
	for _, c := range []byte(" !#$%&()+-:;<=.>?@[]^_{}|~,") {
		roomStrChars[c] = true
	}
}

func validChars(s string, allowed *[256]bool, maxLen int) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !allowed[s[i]] {
			return false
		}
	}
	return true
}

// ValidateUserID reports whether id is a UserID Tencent accepts: 1 to 32
// bytes of a-z A-Z 0-9 _ -.
func ValidateUserID(id string) error {
	if !validChars(id, &userIDChars, MaxUserIDLen) {
		return &FieldError{"user_id", RuleUserID}
	}
	return nil
}

// ValidateSDKAppID reports whether id can be an SDKAppID: Tencent's are
// unsigned 32-bit numbers, and the PrivateMapKey stores them as such.
func ValidateSDKAppID(id uint64) error {
	if id == 0 || id > math.MaxUint32 {
		return &FieldError{"sdk_app_id", RuleSDKAppID}
	}
	return nil
}

// ValidateRoomStr reports whether s is a string room id TRTC accepts.
func ValidateRoomStr(s string) error {
	if !validChars(s, &roomStrChars, MaxRoomStrLen) {
		return &FieldError{"room_str", RuleRoomStr}
	}
	return nil
}

// ValidateRoomID reports whether id is a numeric room id: 1 to
// 4294967295. It takes 64 bits so that a wider value is refused, not cut.
func ValidateRoomID(id uint64) error {
	if id == 0 || id > math.MaxUint32 {
		return &FieldError{"room_id", RuleRoomID}
	}
	return nil
}

// ValidatePrivilegeMap reports whether p is a privilege map: 1 to 255. It
// takes 64 bits so that a wider value is refused, not cut.
func ValidatePrivilegeMap(p uint64) error {
	if p == 0 || p > MaxPrivilegeMap {
		return &FieldError{"privilege_map", RulePrivilegeMap}
	}
	return nil
}

// ValidateTTL reports whether a ticket issued at now may live for ttl, and
// returns the lifetime in whole seconds.
func ValidateTTL(ttl time.Duration, now int64) (int64, error) {
	switch {
	case ttl < time.Second:
		return 0, &FieldError{"ttl", RuleTTLPositive}
	case ttl%time.Second != 0:
		return 0, &FieldError{"ttl", RuleTTLWhole}
	}
	secs := int64(ttl / time.Second)
	if now < 0 || now > MaxExpiry || secs > MaxExpiry-now {
		return 0, &FieldError{"ttl", RuleTTLRange}
	}
	return secs, nil
}

// Room is the room a PrivateMapKey admits to: a numeric ID or a string Str,
// exactly one of them.
type Room struct {
	ID  uint32
	Str string
}

func (r Room) validate() error {
	switch {
	case r.ID != 0 && r.Str != "":
		return &FieldError{"room", RuleRoomOneOf}
	case r.Str != "":
		return ValidateRoomStr(r.Str)
	case r.ID == 0:
		return &FieldError{"room", RuleRoomOneOf}
	}
	return nil
}

// String describes the room for humans and logs: room ids are not secret.
func (r Room) String() string {
	if r.Str != "" {
		return fmt.Sprintf("room_str %q", r.Str)
	}
	return fmt.Sprintf("room_id %d", r.ID)
}
