package convert_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
	"github.com/usersig/usersig/server/convert"
	"github.com/usersig/usersig/signer"
)

// TestNumbering: VerifyResponse converts signer.Status and signer.Kind to
// the proto enums by number, so each pair must number its values alike.
func TestNumbering(t *testing.T) {
	for s := signer.Status(0); s <= signer.Malformed; s++ {
		if got, want := usersigv1.VerifyStatus(s).String(), "VERIFY_STATUS_"+s.String(); got != want {
			t.Errorf("signer.Status %d is %s, but usersigv1.VerifyStatus %d is %s", s, s, s, got)
		}
	}
	if n := len(usersigv1.VerifyStatus_name); n != int(signer.Malformed)+1 {
		t.Errorf("usersigv1.VerifyStatus has %d values, signer.Status %d", n, signer.Malformed+1)
	}
	for k := signer.Kind(0); k <= signer.KindOtherUserBuf; k++ {
		if got, want := usersigv1.TicketKind(k).String(), "TICKET_KIND_"+k.String(); got != want {
			t.Errorf("signer.Kind %d is %s, but usersigv1.TicketKind %d is %s", k, k, k, got)
		}
	}
	if n := len(usersigv1.TicketKind_name); n != int(signer.KindOtherUserBuf)+1 {
		t.Errorf("usersigv1.TicketKind has %d values, signer.Kind %d", n, signer.KindOtherUserBuf+1)
	}
}

func TestVerifyResponse(t *testing.T) {
	issued, expires := time.Unix(1700000000, 0), time.Unix(1715552000, 0)
	keyIDs := []string{"primary", "previous"}
	for _, tc := range []struct {
		name string
		r    signer.Result
		want *usersigv1.VerifyUserSigResponse
	}{
		{
			name: "valid UserSig, second key",
			r:    signer.Result{Status: signer.Valid, Kind: signer.KindUserSig, KeyIndex: 1, IssueTime: issued, ExpireTime: expires},
			want: &usersigv1.VerifyUserSigResponse{Valid: true, Status: usersigv1.VerifyStatus_VERIFY_STATUS_VALID, KeyId: "previous",
				IssueTime: timestamppb.New(issued), ExpireTime: timestamppb.New(expires), Kind: usersigv1.TicketKind_TICKET_KIND_USER_SIG},
		},
		{
			name: "expired: the key and times still said",
			r:    signer.Result{Status: signer.Expired, Kind: signer.KindUserSig, KeyIndex: 0, IssueTime: issued, ExpireTime: expires},
			want: &usersigv1.VerifyUserSigResponse{Status: usersigv1.VerifyStatus_VERIFY_STATUS_EXPIRED, TencentErrorCode: 70001, KeyId: "primary",
				IssueTime: timestamppb.New(issued), ExpireTime: timestamppb.New(expires), Kind: usersigv1.TicketKind_TICKET_KIND_USER_SIG},
		},
		{
			name: "PrivateMapKey, numeric room",
			r: signer.Result{Status: signer.Valid, Kind: signer.KindPrivateMapKey, KeyIndex: 0, IssueTime: issued, ExpireTime: expires,
				PrivateMap: &signer.PrivateMap{UserID: "u", SDKAppID: 1400000000, RoomID: 10000, PrivilegeMap: 255, ExpireTime: expires}},
			want: &usersigv1.VerifyUserSigResponse{Valid: true, Status: usersigv1.VerifyStatus_VERIFY_STATUS_VALID, KeyId: "primary",
				IssueTime: timestamppb.New(issued), ExpireTime: timestamppb.New(expires), Kind: usersigv1.TicketKind_TICKET_KIND_PRIVATE_MAP_KEY,
				PrivateMapKey: &usersigv1.PrivateMapKey{Room: &usersigv1.PrivateMapKey_RoomId{RoomId: 10000}, PrivilegeMap: 255, ExpireTime: timestamppb.New(expires)}},
		},
		{
			name: "PrivateMapKey, string room",
			r: signer.Result{Status: signer.Valid, Kind: signer.KindPrivateMapKey, KeyIndex: 0, IssueTime: issued, ExpireTime: expires,
				PrivateMap: &signer.PrivateMap{UserID: "u", SDKAppID: 1400000000, RoomStr: "live-1", PrivilegeMap: 42, ExpireTime: expires}},
			want: &usersigv1.VerifyUserSigResponse{Valid: true, Status: usersigv1.VerifyStatus_VERIFY_STATUS_VALID, KeyId: "primary",
				IssueTime: timestamppb.New(issued), ExpireTime: timestamppb.New(expires), Kind: usersigv1.TicketKind_TICKET_KIND_PRIVATE_MAP_KEY,
				PrivateMapKey: &usersigv1.PrivateMapKey{Room: &usersigv1.PrivateMapKey_RoomStr{RoomStr: "live-1"}, PrivilegeMap: 42, ExpireTime: timestamppb.New(expires)}},
		},
		{
			name: "signature mismatch: no key, kind or times",
			r:    signer.Result{Status: signer.SignatureMismatch, KeyIndex: -1},
			want: &usersigv1.VerifyUserSigResponse{Status: usersigv1.VerifyStatus_VERIFY_STATUS_SIGNATURE_MISMATCH, TencentErrorCode: 70009},
		},
		{
			name: "malformed: the reason",
			r:    signer.Result{Status: signer.Malformed, KeyIndex: -1, Reason: "not base64"},
			want: &usersigv1.VerifyUserSigResponse{Status: usersigv1.VerifyStatus_VERIFY_STATUS_MALFORMED, TencentErrorCode: 70003, MalformedReason: "not base64"},
		},
		{
			name: "key index past the ids: no key, kind or times",
			r:    signer.Result{Status: signer.Valid, Kind: signer.KindUserSig, KeyIndex: 2, IssueTime: issued, ExpireTime: expires},
			want: &usersigv1.VerifyUserSigResponse{Valid: true, Status: usersigv1.VerifyStatus_VERIFY_STATUS_VALID},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := convert.VerifyResponse(tc.r, keyIDs); !proto.Equal(got, tc.want) {
				t.Errorf("VerifyResponse(%+v, %q) = %v, want %v", tc.r, keyIDs, got, tc.want)
			}
		})
	}
}

// TestVerifyResponseJSON: the offline CLI prints VerifyResponse as JSON,
// so it says "kind" too, the unspecified kind included.
func TestVerifyResponseJSON(t *testing.T) {
	for _, tc := range []struct {
		r    signer.Result
		want string
	}{
		{signer.Result{Status: signer.Valid, Kind: signer.KindPrivateMapKey, KeyIndex: 0}, `"kind":"TICKET_KIND_PRIVATE_MAP_KEY"`},
		{signer.Result{Status: signer.SignatureMismatch, KeyIndex: -1}, `"kind":"TICKET_KIND_UNSPECIFIED"`},
	} {
		b, err := protojson.MarshalOptions{EmitDefaultValues: true}.Marshal(convert.VerifyResponse(tc.r, []string{"primary"}))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.ReplaceAll(string(b), " ", ""); !strings.Contains(got, tc.want) {
			t.Errorf("VerifyResponse(%+v) as JSON = %s, want it to hold %s", tc.r, got, tc.want)
		}
	}
}
