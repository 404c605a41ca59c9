// Package convert turns the signer's answers into the API's messages. It
// depends only on the generated messages and package signer, so that the
// offline CLI prints what VerifyUserSig answers without linking the server,
// its logging, metrics and tracing.
package convert

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
	"github.com/usersig/usersig/signer"
)

// VerifyResponse is the VerifyUserSig answer for a verification result.
// keyIDs name the keys Verify was given, in the same order. The server
// answers with it and the offline CLI prints it, so both speak one JSON.
func VerifyResponse(r signer.Result, keyIDs []string) *usersigv1.VerifyUserSigResponse {
	resp := &usersigv1.VerifyUserSigResponse{
		Valid: r.Valid(),
		// signer numbers its statuses as the proto enum does.
		Status:           usersigv1.VerifyStatus(r.Status),
		TencentErrorCode: r.Status.TencentErrorCode(),
		MalformedReason:  r.Reason,
	}
	if r.KeyIndex >= 0 && r.KeyIndex < len(keyIDs) {
		resp.KeyId = keyIDs[r.KeyIndex]
		resp.IssueTime = timestamppb.New(r.IssueTime)
		resp.ExpireTime = timestamppb.New(r.ExpireTime)
		// signer numbers its kinds as the proto enum does; Kind is 0
		// unless the MAC matched, so it is set with key_id only.
		resp.Kind = usersigv1.TicketKind(r.Kind)
	}
	if pm := r.PrivateMap; pm != nil {
		p := &usersigv1.PrivateMapKey{PrivilegeMap: pm.PrivilegeMap, ExpireTime: timestamppb.New(pm.ExpireTime)}
		if pm.RoomStr != "" {
			p.Room = &usersigv1.PrivateMapKey_RoomStr{RoomStr: pm.RoomStr}
		} else {
			p.Room = &usersigv1.PrivateMapKey_RoomId{RoomId: pm.RoomID}
		}
		resp.PrivateMapKey = p
	}
	return resp
}
