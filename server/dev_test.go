package server_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
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

// TestMethodTable: the methods a caller may be allowed are the generated
// service's, and each exported name is one of them.
func TestMethodTable(t *testing.T) {
	l, err := server.Compile(server.DevConfig([]byte("dev-key-0123456789abcdef0123456789abcdef"), "tok"))
	if err != nil {
		t.Fatal(err)
	}
	got := l.Config.Callers[0].Methods
	var want []string
	for _, m := range usersigv1.UserSigService_ServiceDesc.Methods {
		want = append(want, m.MethodName)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("--dev's caller may call %v, want every method of the service: %v", got, want)
	}
	for _, name := range []string{server.MethodGenerateUserSig, server.MethodVerifyUserSig, server.MethodGeneratePrivateMapKey} {
		if !slices.Contains(want, name) {
			t.Errorf("server.Method* names %q, which the service does not have", name)
		}
	}
}

// TestCompileLeavesItsInput: Compile fills in defaults on a copy; the
// config it is given is unchanged, and so is what it returns when compiled
// again.
func TestCompileLeavesItsInput(t *testing.T) {
	src := []byte(`
grpc: {tls: null}
apps:
  - sdk_app_id: 1400000000
    keys: [{id: k, env: USERSIG_TEST_COMPILE_KEY}]
callers:
  - name: c
    token_sha256: ` + tokenHash("t") + `
    apps: ["*"]
    methods: [VerifyUserSig]
    rate: {per_second: 2.5}
`)
	t.Setenv("USERSIG_TEST_COMPILE_KEY", "compile-key-0123456789abcdef0123456789abcdef")
	cfg, err := server.ParseConfig(src)
	if err != nil {
		t.Fatal(err)
	}
	fresh, _ := server.ParseConfig(src)
	l, err := server.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, fresh) {
		t.Errorf("Compile changed its input:\n got %+v\nwant %+v", cfg, fresh)
	}
	if l.Config == cfg || l.Config.GRPC.Listen != server.DefaultListen || l.Config.GRPC.MaxConcurrentCalls != server.DefaultMaxConcurrentCalls || l.Config.Log.Level != "info" {
		t.Errorf("Loaded.Config is not a copy with the defaults: %+v", l.Config.GRPC)
	}
	if _, err := server.Compile(l.Config); err != nil {
		t.Errorf("compiling the compiled config again: %v", err)
	}
}
