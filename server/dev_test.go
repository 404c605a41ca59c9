package server_test

import (
	"testing"

	"github.com/usersig/usersig/server"
)

// TestDevConfig: the embedded default of usersigd --dev compiles and
// listens on loopback only, at the addresses the README gives. (The
// binary's test runs it on free ports instead, as no test binds a fixed
// one.)
func TestDevConfig(t *testing.T) {
	l, err := server.Compile(server.DevConfig([]byte("dev-key-0123456789abcdef0123456789abcdef"), "tok"))
	if err != nil {
		t.Fatal(err)
	}
	if g, h := l.Config.GRPC.Listen, l.Config.HTTP.Listen; g != "127.0.0.1:50051" || h != "127.0.0.1:9090" {
		t.Errorf("--dev listens on %s and %s, want 127.0.0.1:50051 and 127.0.0.1:9090", g, h)
	}
	if l.Config.GRPC.TLS != nil || len(l.Warnings) != 0 {
		t.Errorf("--dev: TLS %v, warnings %q", l.Config.GRPC.TLS, l.Warnings)
	}
}
