package server

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
	"github.com/usersig/usersig/server/convert"
	"github.com/usersig/usersig/signer"
)

var _ usersigv1.UserSigServiceServer = (*service)(nil)

// service implements UserSigService, and authenticates its calls
// (auth.go). It owns what a call needs: the policy in force, which the
// reloader swaps, the clock tickets are minted at, the metrics and a log
// for what should never happen. Authentication, the caller's rate and the
// method check have run before a handler is called; the caller's
// rate_per_user is the handler's to spend, once the request has passed.
type service struct {
	usersigv1.UnimplementedUserSigServiceServer
	policy  *atomic.Pointer[policy]
	clock   func() time.Time
	metrics *metrics
	log     *zap.Logger
	shared  *sharedRates // nil: rates are this process's (sharedrate.go)
}

func (h *service) GenerateUserSig(ctx context.Context, req *usersigv1.GenerateUserSigRequest) (*usersigv1.GenerateUserSigResponse, error) {
	ci := callInfoFrom(ctx)
	userID, err := h.userFor(ci, req.GetUserId())
	if err != nil {
		return nil, err
	}
	a, ttl, err := h.checkMint(ci, req.GetSdkAppId(), userID, req.GetTtl(), kindUserSig)
	if err != nil {
		return nil, err
	}
	if err := h.spendUserRate(ctx, ci, userID); err != nil {
		return nil, err
	}
	is, err := a.keys[0].UserSig(a.id, userID, ttl, h.clock())
	if err != nil {
		return nil, h.fromSigner(err)
	}
	h.issued(ci, a, kindUserSig, userID, ttl)
	r := new(struct {
		usersigv1.GenerateUserSigResponse
		times issueTimes
	}) // one allocation for the answer and its times
	r.UserSig, r.SdkAppId, r.UserId, r.KeyId = is.Ticket, a.id, userID, a.keyIDs[0]
	r.IssueTime, r.ExpireTime = r.times.set(is)
	return &r.GenerateUserSigResponse, nil
}

// issueTimes are the issue and expiry times of an answer, allocated with it.
type issueTimes struct{ issue, expire timestamppb.Timestamp }

func (t *issueTimes) set(is signer.Issued) (issue, expire *timestamppb.Timestamp) {
	t.issue.Seconds, t.expire.Seconds = is.IssueTime.Unix(), is.ExpireTime.Unix()
	return &t.issue, &t.expire
}

func (h *service) VerifyUserSig(ctx context.Context, req *usersigv1.VerifyUserSigRequest) (*usersigv1.VerifyUserSigResponse, error) {
	ci := callInfoFrom(ctx)
	userID, err := h.userFor(ci, req.GetUserId())
	if err != nil {
		return nil, err
	}
	a, err := h.appFor(ci, req.GetSdkAppId())
	if err != nil {
		return nil, err
	}
	if err := h.checkUserID(ci, userID); err != nil {
		return nil, err
	}
	if err := h.spendUserRate(ctx, ci, userID); err != nil {
		return nil, err
	}
	r := signer.Verify(req.GetUserSig(), a.id, userID, a.keys, h.clock())
	a.verified[r.Status].Inc()
	return convert.VerifyResponse(r, a.keyIDs), nil
}

func (h *service) GeneratePrivateMapKey(ctx context.Context, req *usersigv1.GeneratePrivateMapKeyRequest) (*usersigv1.GeneratePrivateMapKeyResponse, error) {
	ci := callInfoFrom(ctx)
	userID, err := h.userFor(ci, req.GetUserId())
	if err != nil {
		return nil, err
	}
	a, ttl, err := h.checkMint(ci, req.GetSdkAppId(), userID, req.GetTtl(), kindPrivateMapKey)
	if err != nil {
		return nil, err
	}
	var room signer.Room
	switch r := req.GetRoom().(type) {
	case *usersigv1.GeneratePrivateMapKeyRequest_RoomId:
		// The field is 64 bits wide so that a value a client's library
		// would cut to 32 bits arrives whole and is refused here.
		if err := signer.ValidateRoomID(r.RoomId); err != nil {
			return nil, h.fromSigner(err)
		}
		room.ID = uint32(r.RoomId)
	case *usersigv1.GeneratePrivateMapKeyRequest_RoomStr:
		if err := signer.ValidateRoomStr(r.RoomStr); err != nil {
			return nil, h.fromSigner(err)
		}
		room.Str = r.RoomStr
	default:
		return nil, invalidArgument("room", signer.RuleRoomOneOf)
	}
	privileges := req.GetPrivilegeMap()
	if err := signer.ValidatePrivilegeMap(privileges); err != nil {
		return nil, h.fromSigner(err)
	}
	// The request is well formed: now what the caller may grant.
	if err := ci.caller.pmk.check(ci.caller.name, room, privileges); err != nil {
		h.metrics.authFailure(authPrivateMapKey)
		return nil, err
	}
	if err := h.spendUserRate(ctx, ci, userID); err != nil {
		return nil, err
	}
	is, err := a.keys[0].PrivateMapKey(a.id, userID, ttl, room, uint32(privileges), h.clock())
	if err != nil {
		return nil, h.fromSigner(err)
	}
	h.issued(ci, a, kindPrivateMapKey, userID, ttl)
	r := new(struct {
		usersigv1.GeneratePrivateMapKeyResponse
		times issueTimes
	})
	r.PrivateMapKey, r.SdkAppId, r.UserId, r.KeyId = is.Ticket, a.id, userID, a.keyIDs[0]
	r.IssueTime, r.ExpireTime = r.times.set(is)
	return &r.GeneratePrivateMapKeyResponse, nil
}

// userFor is the user id a call is for: the request's user_id, or for an
// OIDC caller its ID token's user id, which the request may leave out or
// repeat but never change.
func (h *service) userFor(ci *callInfo, requested string) (string, error) {
	o := ci.caller.oidc
	if o == nil {
		return requested, nil
	}
	if requested == "" || requested == ci.userID {
		return ci.userID, nil
	}
	h.metrics.authFailure(authIDTokenUserID)
	return "", status.Errorf(codes.PermissionDenied, "user_id must be left out or be the ID token's user id (its %q claim)", o.claim)
}

// checkMint checks what both minting methods take: the app, the user id
// and the lifetime of a ticket of kind.
func (h *service) checkMint(ci *callInfo, appID uint64, userID string, ttl *durationpb.Duration, kind ticketKind) (*app, time.Duration, error) {
	a, err := h.appFor(ci, appID)
	if err != nil {
		return nil, 0, err
	}
	if err := h.checkUserID(ci, userID); err != nil {
		return nil, 0, err
	}
	d, err := ttlFor(ci.caller, a, ttl, kind)
	return a, d, err
}

// appFor resolves the app a call names: PERMISSION_DENIED when the caller
// may not use it (checked first, so callers learn nothing of other apps),
// NOT_FOUND when it may but the app is not configured. 0 names the one
// app the caller may use, if there is exactly one.
func (h *service) appFor(ci *callInfo, id uint64) (*app, error) {
	p, c := ci.policy, ci.caller
	if id == 0 {
		usable := p.usableApps(c)
		if len(usable) == 1 {
			return usable[0], nil
		}
		return nil, invalidArgument("sdk_app_id", fmt.Sprintf("must be set: this caller may use %d apps", len(usable)))
	}
	if !c.mayUse(id) {
		h.metrics.authFailure(authApp)
		return nil, errAppDenied(c.name, id)
	}
	a := p.apps[id]
	if a == nil {
		return nil, errAppNotFound(id)
	}
	return a, nil
}

// checkUserID validates the user id (INVALID_ARGUMENT), then holds it to
// the caller's pattern (PERMISSION_DENIED).
func (h *service) checkUserID(ci *callInfo, userID string) error {
	if err := signer.ValidateUserID(userID); err != nil {
		return h.fromSigner(err)
	}
	if re := ci.caller.userIDPattern; re != nil && !re.MatchString(userID) {
		h.metrics.authFailure(authUserID)
		return errUserIDPattern
	}
	return nil
}

// ttlFor is the lifetime a minting call asks for: whole seconds, at most
// the app's and the caller's max_ttl, and for a PrivateMapKey its
// private_map_key.max_ttl. Omitted, it is the lowest of the app's
// default_ttl and those caps.
func ttlFor(c *caller, a *app, d *durationpb.Duration, kind ticketKind) (time.Duration, error) {
	var pmkMax time.Duration
	if kind == kindPrivateMapKey && c.pmk != nil {
		pmkMax = c.pmk.maxTTL
	}
	if d == nil {
		ttl := a.defaultTTL
		for _, limit := range []time.Duration{c.maxTTL, pmkMax} {
			if limit > 0 && limit < ttl {
				ttl = limit
			}
		}
		return ttl, nil
	}
	switch {
	case d.CheckValid() != nil:
		return 0, invalidArgument("ttl", "must be a valid duration")
	case d.GetNanos() != 0:
		return 0, invalidArgument("ttl", signer.RuleTTLWhole)
	case d.GetSeconds() <= 0:
		return 0, invalidArgument("ttl", signer.RuleTTLPositive)
	case d.GetSeconds() > int64(a.maxTTL/time.Second):
		return 0, invalidArgument("ttl", fmt.Sprintf("must be at most the app's max_ttl %s", human(a.maxTTL)))
	case c.maxTTL > 0 && d.GetSeconds() > int64(c.maxTTL/time.Second):
		return 0, invalidArgument("ttl", fmt.Sprintf("must be at most this caller's max_ttl %s", human(c.maxTTL)))
	case pmkMax > 0 && d.GetSeconds() > int64(pmkMax/time.Second):
		return 0, invalidArgument("ttl", fmt.Sprintf("must be at most this caller's private_map_key.max_ttl %s", human(pmkMax)))
	}
	return d.AsDuration(), nil
}

// fromSigner turns the signer's rule errors into INVALID_ARGUMENT naming the
// field. Anything else would be our bug: it is logged (the signer's errors
// never hold a key, a ticket or the value they reject) and answered
// INTERNAL with a constant message.
func (h *service) fromSigner(err error) error {
	var fe *signer.FieldError
	if errors.As(err, &fe) {
		return invalidArgument(fe.Field, fe.Rule)
	}
	h.log.Error("unexpected error from the signer", zap.String("error", err.Error()))
	return errInternal
}

// issued records a minted ticket: the issued-tickets counter and one
// audit line (never the ticket). The audit logger already holds the
// caller, app, key id and kind (see reloader.bind).
func (h *service) issued(ci *callInfo, a *app, kind ticketKind, userID string, ttl time.Duration) {
	is := &ci.caller.issued[a.id][kind]
	is.count.Inc()
	is.audit.Info("ticket issued", zap.String("user_id", userID), zap.Int64("ttl_seconds", int64(ttl/time.Second)))
}
