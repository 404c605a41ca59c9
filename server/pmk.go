package server

// A caller's private_map_key section: what the PrivateMapKeys it mints may
// grant (privileges), for which rooms (room_ids, room_str_pattern), and
// for how long (max_ttl). A caller without one may grant anything, as
// before.

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/usersig/usersig/signer"
)

// privilegeNames are the privilege bits by the names the config uses.
var privilegeNames = []privilegeName{
	{"create_room", signer.PrivilegeCreateRoom},
	{"enter_room", signer.PrivilegeEnterRoom},
	{"send_audio", signer.PrivilegeSendAudio},
	{"receive_audio", signer.PrivilegeReceiveAudio},
	{"send_video", signer.PrivilegeSendVideo},
	{"receive_video", signer.PrivilegeReceiveVideo},
	{"send_substream", signer.PrivilegeSendSubstream},
	{"receive_substream", signer.PrivilegeReceiveSubstream},
}

type privilegeName struct {
	name string
	bit  uint64
}

// pmkPolicy is a caller's private_map_key section, compiled. A nil one
// allows everything.
type pmkPolicy struct {
	privileges uint64 // the bits it may grant; all when the list is absent
	// roomIDs are the numeric rooms, as inclusive ranges; nil with
	// numericRooms true allows every one.
	roomIDs      [][2]uint64
	numericRooms bool
	roomStr      *regexp.Regexp // nil with stringRooms true allows every one
	stringRooms  bool
	maxTTL       time.Duration // 0: no cap of its own
}

func (c *checker) privateMapKey(field string, pc *PrivateMapKeyConfig, cl *caller, p *policy) *pmkPolicy {
	if pc == nil {
		return nil
	}
	if cl.methods&methodByName["GeneratePrivateMapKey"].bit == 0 {
		c.addf(field, "the caller may not call GeneratePrivateMapKey: add it to methods, or drop private_map_key")
	}
	pm := &pmkPolicy{privileges: signer.PrivilegeAll, numericRooms: true, stringRooms: true}
	if pc.Privileges != nil {
		pm.privileges = 0
		if len(pc.Privileges) == 0 {
			c.addf(field+".privileges", "must list at least one privilege; leave it out to allow all")
		}
		for j, name := range pc.Privileges {
			i := slices.IndexFunc(privilegeNames, func(n privilegeName) bool { return n.name == name })
			if i < 0 {
				c.addf(fmt.Sprintf("%s.privileges[%d]", field, j), "%q is not %s", name, privilegeList("or"))
				continue
			}
			pm.privileges |= privilegeNames[i].bit
		}
	}
	if pc.RoomIDs != nil || pc.RoomStrPattern != "" {
		// A caller that names one kind of room may use only that kind.
		pm.numericRooms, pm.stringRooms = pc.RoomIDs != nil, pc.RoomStrPattern != ""
	}
	if pc.RoomIDs != nil && len(pc.RoomIDs) == 0 {
		c.addf(field+".room_ids", "must list at least one room id or range; leave it out to allow all")
	}
	for j, s := range pc.RoomIDs {
		lo, hi, ok := roomRange(s)
		if !ok {
			c.addf(fmt.Sprintf("%s.room_ids[%d]", field, j), "%q is neither a room id nor a range low-high of them (1 to 4294967295, low <= high)", s)
			continue
		}
		pm.roomIDs = append(pm.roomIDs, [2]uint64{lo, hi})
	}
	if pc.RoomStrPattern != "" {
		pm.roomStr = c.anchoredPattern(field+".room_str_pattern", "room string", pc.RoomStrPattern)
	}
	pm.maxTTL = c.ttl(field+".max_ttl", &pc.MaxTTL, 0)
	if pm.maxTTL > 0 {
		if cl.maxTTL > 0 && pm.maxTTL > cl.maxTTL {
			c.addf(field+".max_ttl", "%s is above the caller's max_ttl %s", human(pm.maxTTL), human(cl.maxTTL))
		}
		for _, a := range p.appList {
			if cl.mayUse(a.id) && pm.maxTTL > a.maxTTL {
				c.addf(field+".max_ttl", "%s is above app %d's max_ttl %s", human(pm.maxTTL), a.id, human(a.maxTTL))
			}
		}
	}
	return pm
}

// roomRange reads "1234" or "1000-1999".
func roomRange(s string) (lo, hi uint64, ok bool) {
	a, b, isRange := strings.Cut(strings.TrimSpace(s), "-")
	lo, err := strconv.ParseUint(strings.TrimSpace(a), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	hi = lo
	if isRange {
		if hi, err = strconv.ParseUint(strings.TrimSpace(b), 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return lo, hi, lo >= 1 && lo <= hi && hi <= math.MaxUint32
}

// privilegeList names the privileges for a message: "a, b or c".
func privilegeList(conj string) string {
	names := make([]string, len(privilegeNames))
	for i, n := range privilegeNames {
		names[i] = n.name
	}
	return strings.Join(names[:len(names)-1], ", ") + " " + conj + " " + names[len(names)-1]
}

// check holds a request, whose fields are valid, to the policy: the
// privileges it grants and its room. The error is PERMISSION_DENIED
// naming the rule.
func (pm *pmkPolicy) check(caller string, room signer.Room, privileges uint64) error {
	if pm == nil {
		return nil
	}
	if extra := privileges &^ pm.privileges; extra != 0 {
		var names []string
		for _, n := range privilegeNames {
			if extra&n.bit != 0 {
				names = append(names, n.name)
			}
		}
		return status.Errorf(codes.PermissionDenied, "privilege_map grants %s, which caller %q may not grant (its private_map_key.privileges)",
			strings.Join(names, ", "), caller)
	}
	if room.Str != "" {
		switch {
		case !pm.stringRooms:
			return status.Errorf(codes.PermissionDenied, "room_str: caller %q may only use numeric rooms (its private_map_key.room_ids)", caller)
		case pm.roomStr != nil && !pm.roomStr.MatchString(room.Str):
			return status.Errorf(codes.PermissionDenied, "room_str is outside the rooms caller %q may use (its private_map_key.room_str_pattern)", caller)
		}
		return nil
	}
	if !pm.numericRooms {
		return status.Errorf(codes.PermissionDenied, "room_id: caller %q may only use string rooms (its private_map_key.room_str_pattern)", caller)
	}
	if pm.roomIDs == nil {
		return nil
	}
	id := uint64(room.ID)
	for _, r := range pm.roomIDs {
		if id >= r[0] && id <= r[1] {
			return nil
		}
	}
	return status.Errorf(codes.PermissionDenied, "room_id is outside the rooms caller %q may use (its private_map_key.room_ids)", caller)
}
