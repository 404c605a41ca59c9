package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
	"github.com/usersig/usersig/server"
)

// BenchmarkRPC measures whole calls over loopback: client, transport, the
// interceptor chain (metrics, the call log with zap's production JSON
// encoder, recovery, limits, auth), the handler and the audit line. Health
// is the floor: the same server and transport with a trivial handler. The
// difference between a method and Health is what this service adds.
// HTTPGenerateUserSig is the same call through the HTTP/JSON API.
// IDToken* are GenerateUserSig with an app user's ID token instead of a
// caller's token, from a real issuer on loopback: Cached with one token
// (verified once, then found by its hash), Fresh with a token never seen
// before on every call (a signature verification each).
func BenchmarkRPC(b *testing.B) {
	dir := b.TempDir()
	is := newTestIssuer(b)
	keys := map[string]*issuerKey{"RS256": is.newKey("rs1", jose.RS256), "ES256": is.newKey("es1", jose.ES256)}
	is.publish(keys["RS256"], keys["ES256"])
	config := apiConfig + `
  - name: app-users
    oidc: {issuer: "` + is.url + `", audience: usersig-bench, max_calls_per_user: 64}
    apps: [1400000000]
    methods: [GenerateUserSig]
`
	config = strings.Replace(config, "\nhttp_api:\n  listen: 127.0.0.1:0\n", "\n", 1) + "http_api:\n  listen: 127.0.0.1:0\n"

	os.WriteFile(filepath.Join(dir, "primary.key"), []byte(keyPrimary), 0o600)
	os.WriteFile(filepath.Join(dir, "old.key"), []byte(keyOld), 0o600)
	b.Setenv("USERSIG_TEST_KEY_B", keyB)
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte(strings.ReplaceAll(strings.Replace(config, "interval: 50ms", "interval: 0s", 1), "{{dir}}", dir)), 0o600)
	l, err := server.LoadConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	enc := zap.NewProductionEncoderConfig()
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(io.Discard), zap.InfoLevel))
	srv, err := server.New(l, server.Options{Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c, health := usersigv1.NewUserSigServiceClient(conn), healthpb.NewHealthClient(conn)
	auth := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tokBackend)
	minted, err := c.GenerateUserSig(auth, &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "user_0001", Ttl: dur(86400)})
	if err != nil {
		b.Fatal(err)
	}
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	genURL := "http://" + srv.APIAddr() + "/v1/usersig:generate"
	for _, bc := range []struct {
		name string
		call func() error
	}{
		{"HTTPGenerateUserSig", func() error {
			req, _ := http.NewRequest(http.MethodPost, genURL, strings.NewReader(`{"sdk_app_id": 1400000000, "user_id": "user_0001", "ttl": "86400s"}`))
			req.Header.Set("Authorization", "Bearer "+tokBackend)
			resp, err := httpClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("HTTP %d", resp.StatusCode)
			}
			return nil
		}},
		{"Health", func() error {
			_, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
			return err
		}},
		{"GenerateUserSig", func() error {
			_, err := c.GenerateUserSig(auth, &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "user_0001", Ttl: dur(86400)})
			return err
		}},
		{"VerifyUserSig", func() error {
			_, err := c.VerifyUserSig(auth, &usersigv1.VerifyUserSigRequest{SdkAppId: appA, UserId: "user_0001", UserSig: minted.UserSig})
			return err
		}},
		{"GeneratePrivateMapKey", func() error {
			_, err := c.GeneratePrivateMapKey(auth, &usersigv1.GeneratePrivateMapKeyRequest{SdkAppId: appA, UserId: "user_0001", Ttl: dur(86400),
				Room: &usersigv1.GeneratePrivateMapKeyRequest_RoomId{RoomId: 1234}, PrivilegeMap: 255})
			return err
		}},
	} {
		if bc.name == "GenerateUserSig" {
			benchIDTokens(b, c, is, keys)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := bc.call(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// benchIDTokens runs the IDToken* benchmarks of BenchmarkRPC.
func benchIDTokens(b *testing.B, c usersigv1.UserSigServiceClient, is *testIssuer, keys map[string]*issuerKey) {
	with := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	}
	for _, alg := range []string{"RS256", "ES256"} {
		k := keys[alg]
		cached := with(is.sign(k, is.claims("usersig-bench", "user_0001")))
		b.Run("IDToken"+alg+"Cached", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.GenerateUserSig(cached, &usersigv1.GenerateUserSigRequest{SdkAppId: appA, Ttl: dur(86400)}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		b.Run("IDToken"+alg+"Fresh", func(b *testing.B) {
			// b.N tokens, each used once: signed before the clock starts.
			b.StopTimer()
			fresh := make([]context.Context, b.N)
			for i := range fresh {
				fresh[i] = with(is.sign(k, is.claims("usersig-bench", fmt.Sprintf("user_%d", i))))
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.StartTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ctx := fresh[next.Add(1)-1]
					if _, err := c.GenerateUserSig(ctx, &usersigv1.GenerateUserSigRequest{SdkAppId: appA, Ttl: dur(86400)}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
