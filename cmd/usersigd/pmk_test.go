package main_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
	"github.com/usersig/usersig/signer"
)

// TestPrivateMapKeyPolicy runs the binary with a live-streaming backend's
// caller (issue 15): audience members may only enter and receive, in its
// rooms, for minutes. Another caller without a private_map_key keeps
// every right.
func TestPrivateMapKeyPolicy(t *testing.T) {
	const liveToken = "tok-live-backend-2718281828459045"
	sum := sha256.Sum256([]byte(liveToken))
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "key"), []byte(key+"\n"), 0o600)
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := strings.Replace(config(dir, `  - name: live-backend
    token_sha256: `+hex.EncodeToString(sum[:])+`
    apps: [1400000000]
    methods: [GeneratePrivateMapKey]
    max_ttl: 1h
    private_map_key:
      privileges: [enter_room, receive_audio, receive_video]
      room_ids: ["1000-1999", 5000]
      room_str_pattern: '^live_[a-z0-9]{1,20}$'
      max_ttl: 10m
  - name: numeric-only
    token_sha256: `+tokenSHA("tok-numeric-only-1618033988749894")+`
    apps: [1400000000]
    methods: [GeneratePrivateMapKey]
    private_map_key: {room_ids: ["1-100"]}
`), "methods: [GenerateUserSig, VerifyUserSig]", "methods: [GenerateUserSig, VerifyUserSig, GeneratePrivateMapKey]", 1)
	os.WriteFile(cfgPath, []byte(cfg), 0o600)
	p := start(t, "--config", cfgPath)
	c := client(t, p.grpcAddr)
	sk, _ := signer.NewKey([]byte(key))

	const audience = signer.PrivilegeEnterRoom | signer.PrivilegeReceiveAudio | signer.PrivilegeReceiveVideo // 42
	num := func(id uint64) *usersigv1.GeneratePrivateMapKeyRequest_RoomId {
		return &usersigv1.GeneratePrivateMapKeyRequest_RoomId{RoomId: id}
	}
	str := func(s string) *usersigv1.GeneratePrivateMapKeyRequest_RoomStr {
		return &usersigv1.GeneratePrivateMapKeyRequest_RoomStr{RoomStr: s}
	}
	for _, tc := range []struct {
		name  string
		token string
		req   *usersigv1.GeneratePrivateMapKeyRequest
		code  codes.Code
		says  string
		ttl   time.Duration // of an OK answer
	}{
		{"an audience member, default ttl: the private_map_key cap", liveToken,
			&usersigv1.GeneratePrivateMapKeyRequest{UserId: "viewer1", Room: num(1500), PrivilegeMap: audience}, codes.OK, "", 10 * time.Minute},
		{"a single room id, a shorter ttl", liveToken,
			&usersigv1.GeneratePrivateMapKeyRequest{UserId: "viewer1", Room: num(5000), PrivilegeMap: signer.PrivilegeEnterRoom, Ttl: durSeconds(300)}, codes.OK, "", 5 * time.Minute},
		{"a string room", liveToken,
			&usersigv1.GeneratePrivateMapKeyRequest{UserId: "viewer1", Room: str("live_abc123"), PrivilegeMap: audience}, codes.OK, "", 10 * time.Minute},
		{"create_room and send_audio", liveToken,
			&usersigv1.GeneratePrivateMapKeyRequest{UserId: "viewer1", Room: num(1500), PrivilegeMap: audience | signer.PrivilegeCreateRoom | signer.PrivilegeSendAudio},
			codes.PermissionDenied, "privilege_map grants create_room, send_audio", 0},
		{"everything", liveToken,
			&usersigv1.GeneratePrivateMapKeyRequest{UserId: "viewer1", Room: num(1500), PrivilegeMap: 255}, codes.PermissionDenied, "private_map_key.privileges", 0},
		{"a room outside its ranges", liveToken,
			&usersigv1.GeneratePrivateMapKeyRequest{UserId: "viewer1", Room: num(2000), PrivilegeMap: audience}, codes.PermissionDenied, "private_map_key.room_ids", 0},
		{"a string room outside its pattern", liveToken,
			&usersigv1.GeneratePrivateMapKeyRequest{UserId: "viewer1", Room: str("live_abc_x"), PrivilegeMap: audience}, codes.PermissionDenied, "private_map_key.room_str_pattern", 0},
		{"a ttl above its max_ttl", liveToken,
			&usersigv1.GeneratePrivateMapKeyRequest{UserId: "viewer1", Room: num(1500), PrivilegeMap: audience, Ttl: durSeconds(601)}, codes.InvalidArgument, "ttl: must be at most this caller's private_map_key.max_ttl 10m", 0},
		{"a malformed room before the policy", liveToken,
			&usersigv1.GeneratePrivateMapKeyRequest{UserId: "viewer1", Room: num(1 << 32), PrivilegeMap: 255}, codes.InvalidArgument, "room_id: must be 1 to 4294967295", 0},
		{"a malformed privilege map before the policy", liveToken,
			&usersigv1.GeneratePrivateMapKeyRequest{UserId: "viewer1", Room: num(9999), PrivilegeMap: 256}, codes.InvalidArgument, "privilege_map: must be 1 to 255", 0},
		{"numeric rooms only: a string room", "tok-numeric-only-1618033988749894",
			&usersigv1.GeneratePrivateMapKeyRequest{UserId: "u1", Room: str("live_abc"), PrivilegeMap: 255}, codes.PermissionDenied, "may only use numeric rooms", 0},
		{"numeric rooms only: every privilege in its rooms", "tok-numeric-only-1618033988749894",
			&usersigv1.GeneratePrivateMapKeyRequest{UserId: "u1", Room: num(100), PrivilegeMap: 255}, codes.OK, "", 180 * 24 * time.Hour},
		{"a caller without private_map_key keeps every right", token,
			&usersigv1.GeneratePrivateMapKeyRequest{UserId: "u1", Room: str("any room"), PrivilegeMap: 255}, codes.OK, "", 180 * 24 * time.Hour},
	} {
		r, err := c.GeneratePrivateMapKey(bearer(tc.token), tc.req)
		st := status.Convert(err)
		if st.Code() != tc.code || !strings.Contains(st.Message(), tc.says) {
			t.Errorf("%s: %v %q, want %v saying %q", tc.name, st.Code(), st.Message(), tc.code, tc.says)
			continue
		}
		if tc.code != codes.OK {
			continue
		}
		if got := r.GetExpireTime().AsTime().Sub(r.GetIssueTime().AsTime()); got != tc.ttl {
			t.Errorf("%s: the ticket lives %v, want %v", tc.name, got, tc.ttl)
		}
		// The ticket is what was asked: its privileges and room.
		v := signer.Verify(r.GetPrivateMapKey(), 1400000000, tc.req.GetUserId(), []*signer.Key{sk}, time.Now())
		if v.Status != signer.Valid || v.PrivateMap == nil || uint64(v.PrivateMap.PrivilegeMap) != tc.req.GetPrivilegeMap() {
			t.Errorf("%s: the ticket verifies %v (%+v), want valid with privileges %d", tc.name, v.Status, v.PrivateMap, tc.req.GetPrivilegeMap())
		}
	}
	if strings.Contains(p.logs(), liveToken) {
		t.Errorf("the live backend's token is in the logs")
	}
}

func tokenSHA(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}
