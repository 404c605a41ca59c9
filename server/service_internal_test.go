package server

import (
	"errors"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/usersig/usersig/signer"
)

// TestFromSigner: a signer rule error is INVALID_ARGUMENT naming the
// field; anything else is INTERNAL with a constant message, and logged.
func TestFromSigner(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	h := &service{log: zap.New(core)}
	err := h.fromSigner(&signer.FieldError{Field: "user_id", Rule: signer.RuleUserID})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "user_id: ") {
		t.Errorf("a rule error: %v", err)
	}
	if logs.Len() != 0 {
		t.Errorf("a rule error was logged: %v", logs.All())
	}
	err = h.fromSigner(errors.New("the clock is broken"))
	if status.Code(err) != codes.Internal || strings.Contains(err.Error(), "clock") {
		t.Errorf("an unexpected error: %v, want INTERNAL with a constant message", err)
	}
	if l := logs.All(); len(l) != 1 || l[0].ContextMap()["error"] != "the clock is broken" {
		t.Errorf("the unexpected error was not logged: %v", l)
	}
}
