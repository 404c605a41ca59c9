package server

import (
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Client-facing errors. Messages are constants or name a field and a rule;
// none ever holds a key, a token or a ticket.
var (
	errNoToken       = status.Error(codes.Unauthenticated, "missing credentials: send authorization: Bearer <token> (gRPC metadata, or the HTTP header)")
	errNotBearer     = status.Error(codes.Unauthenticated, "authorization must be one Bearer <token>")
	errUnknownToken  = status.Error(codes.Unauthenticated, "unknown bearer token")
	errUnknownCert   = status.Error(codes.Unauthenticated, "the client certificate names no caller")
	errAmbiguousCert = status.Error(codes.Unauthenticated, "the client certificate names more than one caller")
	// errCertTokenMismatch: the token's caller is not the certificate's,
	// or the token's caller is bound to certificates and this one does
	// not name it.
	errCertTokenMismatch = status.Error(codes.Unauthenticated, "the bearer token and the client certificate do not name the same caller")
	errOverloaded        = withRetryInfo(status.New(codes.ResourceExhausted, "the server is at its limit of concurrent calls; retry with backoff"), time.Second)
	errInternal          = status.Error(codes.Internal, "internal error")
	errUserIDPattern     = status.Error(codes.PermissionDenied, "user_id is outside the user ids this caller may use (its user_id_pattern)")
)

// Why authentication failed, as the auth failure metric counts it.
const (
	authNoToken      = "no_token"
	authNotBearer    = "not_bearer"
	authUnknownToken = "unknown_token"
	authUnknownCert  = "unknown_cert"
	// authCertTokenMismatch: a token beside a certificate that names
	// another caller, or the token of a caller bound to certificates
	// beside one that does not name it.
	authCertTokenMismatch = "cert_token_mismatch"
	authMethod            = "method_denied"
	authApp               = "app_denied"
	authUserID            = "user_id_denied"
	authPrivateMapKey     = "private_map_key_denied" // privileges or room outside the caller's private_map_key
	// ID tokens (oidc.go).
	authIDTokenMalformed   = "id_token_malformed"
	authIDTokenAlgorithm   = "id_token_algorithm"
	authIDTokenSignature   = "id_token_signature"
	authIDTokenUnknownKey  = "id_token_unknown_key"
	authIDTokenIssuer      = "id_token_issuer" // no caller, or several, for its iss and aud
	authIDTokenExpired     = "id_token_expired"
	authIDTokenNotYetValid = "id_token_not_yet_valid"
	authIDTokenClaims      = "id_token_claims"  // required claims, the user id claim
	authIDTokenUserID      = "id_token_user_id" // a request's user_id that is not the token's
	authIssuerUnavailable  = "issuer_unavailable"
)

func errMethodDenied(caller, method string) error {
	return status.Errorf(codes.PermissionDenied, "caller %q may not call %s", caller, method)
}

func errAppDenied(caller string, id uint64) error {
	return status.Errorf(codes.PermissionDenied, "caller %q may not use app %d", caller, id)
}

func errAppNotFound(id uint64) error {
	return status.Errorf(codes.NotFound, "app %d is not configured on this server", id)
}

// invalidArgument is INVALID_ARGUMENT with a google.rpc.BadRequest naming
// the field and the rule it breaks.
func invalidArgument(field, rule string) error {
	st := status.New(codes.InvalidArgument, field+": "+rule)
	if d, err := st.WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: rule}},
	}); err == nil {
		st = d
	}
	return st.Err()
}

// withRetryInfo is st with a google.rpc.RetryInfo of retry, as an error.
func withRetryInfo(st *status.Status, retry time.Duration) error {
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)}); err == nil {
		st = d
	}
	return st.Err()
}
