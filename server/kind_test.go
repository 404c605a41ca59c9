package server_test

import (
	"testing"
	"time"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
	"github.com/usersig/usersig/signer"
)

// TestVerifyReportsTicketKind verifies every kind of ticket on a real
// server: VerifyUserSig says what a genuine ticket is (a PrivateMapKey, or
// any ticket with a userbuf, logs its user in just as a UserSig does, so
// the caller must be able to tell), and says nothing of a forged one.
func TestVerifyReportsTicketKind(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	c := ts.client
	now := ts.clock.Now()
	userSig, err := c.GenerateUserSig(ts.as(tokBackend), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u1", Ttl: dur(600)})
	if err != nil {
		t.Fatal(err)
	}
	pmk, err := c.GeneratePrivateMapKey(ts.as(tokBackend), &usersigv1.GeneratePrivateMapKeyRequest{SdkAppId: appA, UserId: "u1", Ttl: dur(300),
		Room: &usersigv1.GeneratePrivateMapKeyRequest_RoomStr{RoomStr: "live-1"}, PrivilegeMap: 255})
	if err != nil {
		t.Fatal(err)
	}
	primary, _ := signer.NewKey([]byte(keyPrimary))
	// Signed with the app's key, with a userbuf that is no PrivateMapKey's.
	otherBuf, err := primary.UserSigWithUserBuf(appA, "u1", time.Hour, []byte("a userbuf of some other product"), now)
	if err != nil {
		t.Fatal(err)
	}
	forger, _ := signer.NewKey([]byte("a-key-of-another-app-entirely-0123456789abcdef0123456789abcdef"))
	forgedSig, _ := forger.UserSig(appA, "u1", time.Hour, now)
	forgedPMK, _ := forger.PrivateMapKey(appA, "u1", time.Hour, signer.Room{ID: 7}, 255, now)
	forgedBuf, _ := forger.UserSigWithUserBuf(appA, "u1", time.Hour, []byte("anything"), now)

	const (
		valid     = usersigv1.VerifyStatus_VERIFY_STATUS_VALID
		mismatch  = usersigv1.VerifyStatus_VERIFY_STATUS_SIGNATURE_MISMATCH
		otherUser = usersigv1.VerifyStatus_VERIFY_STATUS_USER_ID_MISMATCH
		malformed = usersigv1.VerifyStatus_VERIFY_STATUS_MALFORMED
		none      = usersigv1.TicketKind_TICKET_KIND_UNSPECIFIED
		plain     = usersigv1.TicketKind_TICKET_KIND_USER_SIG
		room      = usersigv1.TicketKind_TICKET_KIND_PRIVATE_MAP_KEY
		other     = usersigv1.TicketKind_TICKET_KIND_OTHER_USER_BUF
	)
	for _, tc := range []struct {
		name, user, ticket string
		status             usersigv1.VerifyStatus
		kind               usersigv1.TicketKind
	}{
		{"minted UserSig", "u1", userSig.UserSig, valid, plain},
		{"minted PrivateMapKey", "u1", pmk.PrivateMapKey, valid, room},
		{"the app's key, another userbuf", "u1", otherBuf.Ticket, valid, other},
		// The MAC matched: the kind is known though the user is wrong.
		{"minted PrivateMapKey, another user", "u2", pmk.PrivateMapKey, otherUser, room},
		{"forged UserSig", "u1", forgedSig.Ticket, mismatch, none},
		{"forged PrivateMapKey", "u1", forgedPMK.Ticket, mismatch, none},
		{"forged, another userbuf", "u1", forgedBuf.Ticket, mismatch, none},
		{"malformed", "u1", "not-a-ticket", malformed, none},
	} {
		resp, err := c.VerifyUserSig(ts.as(tokBackend), &usersigv1.VerifyUserSigRequest{SdkAppId: appA, UserId: tc.user, UserSig: tc.ticket})
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if resp.Status != tc.status || resp.Kind != tc.kind {
			t.Errorf("%s: VerifyUserSig = %v %v, want %v %v", tc.name, resp.Status, resp.Kind, tc.status, tc.kind)
		}
		// kind is set exactly when key_id is.
		if (resp.Kind != none) != (resp.KeyId != "") {
			t.Errorf("%s: kind %v with key_id %q", tc.name, resp.Kind, resp.KeyId)
		}
		if (resp.Kind == room) != (resp.PrivateMapKey != nil) {
			t.Errorf("%s: kind %v with private_map_key %v", tc.name, resp.Kind, resp.PrivateMapKey)
		}
	}
}
