package signer

import (
	"encoding/binary"
	"time"
)

// PrivateMap is what a PrivateMapKey's userbuf grants: a user of an app may
// enter one room, with the privileges in PrivilegeMap, until ExpireTime.
type PrivateMap struct {
	UserID       string    // the account the userbuf names
	SDKAppID     uint32    // the app the userbuf names
	RoomID       uint32    // the numeric room; 0 with a string room
	RoomStr      string    // the string room; empty with a numeric room
	ExpireTime   time.Time // the absolute expiry the userbuf carries
	PrivilegeMap uint32    // the Privilege* bits
	AccountType  uint32    // always 0 in tickets Tencent's libraries mint
}

// appendPrivateMapUserBuf appends the userbuf of a PrivateMapKey, laid out
// big-endian: version (0 numeric room, 1 string room), account length and
// account, sdkappid, room id, absolute expiry, privilege map, account type,
// then for a string room its length and bytes.
func appendPrivateMapUserBuf(b []byte, userID string, sdkAppID uint32, room Room, expireAt uint32, privilegeMap uint32) []byte {
	version := byte(0)
	if room.Str != "" {
		version = 1
	}
	b = append(b, version)
	b = binary.BigEndian.AppendUint16(b, uint16(len(userID)))
	b = append(b, userID...)
	b = binary.BigEndian.AppendUint32(b, sdkAppID)
	b = binary.BigEndian.AppendUint32(b, room.ID)
	b = binary.BigEndian.AppendUint32(b, expireAt)
	b = binary.BigEndian.AppendUint32(b, privilegeMap)
	b = binary.BigEndian.AppendUint32(b, 0) // account type
	if version == 1 {
		b = binary.BigEndian.AppendUint16(b, uint16(len(room.Str)))
		b = append(b, room.Str...)
	}
	return b
}

// parsePrivateMap decodes a PrivateMapKey userbuf. It returns nil unless b
// is exactly one such userbuf: other userbufs are opaque to this package.
func parsePrivateMap(b []byte) *PrivateMap {
	if len(b) < 3 || b[0] > 1 {
		return nil
	}
	version := b[0]
	n := int(binary.BigEndian.Uint16(b[1:]))
	b = b[3:]
	if len(b) < n+20 {
		return nil
	}
	account, b := b[:n], b[n:]
	pm := PrivateMap{
		SDKAppID:     binary.BigEndian.Uint32(b),
		RoomID:       binary.BigEndian.Uint32(b[4:]),
		ExpireTime:   time.Unix(int64(binary.BigEndian.Uint32(b[8:])), 0).UTC(),
		PrivilegeMap: binary.BigEndian.Uint32(b[12:]),
		AccountType:  binary.BigEndian.Uint32(b[16:]),
	}
	b = b[20:]
	if version == 1 {
		if len(b) < 2 || len(b)-2 != int(binary.BigEndian.Uint16(b)) {
			return nil
		}
		pm.RoomStr = string(b[2:])
	} else if len(b) != 0 {
		return nil
	}
	pm.UserID = string(account)
	return &pm
}
