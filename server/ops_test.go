package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
)

// TestMetrics: after some calls /metrics shows the standard gRPC metrics
// and every domain counter, and no label holds a user id or a token.
func TestMetrics(t *testing.T) {
	ts := startServer(t, fixtureConfig)
	ts.client.GenerateUserSig(ts.as(tokBackend), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "metrics_user_77"})
	ts.client.GeneratePrivateMapKey(ts.as(tokBackend), &usersigv1.GeneratePrivateMapKeyRequest{SdkAppId: appA, UserId: "metrics_user_77",
		Room: &usersigv1.GeneratePrivateMapKeyRequest_RoomId{RoomId: 1}, PrivilegeMap: 255})
	ts.client.VerifyUserSig(ts.as(tokBackend), &usersigv1.VerifyUserSigRequest{SdkAppId: appA, UserId: "metrics_user_77", UserSig: "garbage"})
	ts.client.GenerateUserSig(ts.as("wrong-token"), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u1"})
	for i := 0; i < 4; i++ {
		ts.client.GenerateUserSig(ts.as(tokLimited), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u1"})
	}
	code, body := ts.httpGet("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`grpc_server_handled_total{grpc_code="OK",grpc_method="GenerateUserSig",grpc_service="usersig.v1.UserSigService",grpc_type="unary"} 3`,
		// Refused on arrival (tap.go), before the gRPC metrics see it.
		`grpc_server_handled_total{grpc_code="Unauthenticated",grpc_method="GenerateUserSig",grpc_service="usersig.v1.UserSigService",grpc_type="unary"} 0`,
		`grpc_server_handling_seconds_bucket{grpc_method="VerifyUserSig",grpc_service="usersig.v1.UserSigService",grpc_type="unary",le="0.005"}`,
		`usersig_tickets_issued_total{caller="backend",kind="usersig",sdk_app_id="1400000000"} 1`,
		`usersig_tickets_issued_total{caller="backend",kind="private_map_key",sdk_app_id="1400000000"} 1`,
		`usersig_tickets_issued_total{caller="limited",kind="usersig",sdk_app_id="1400000000"} 2`,
		`usersig_verifications_total{sdk_app_id="1400000000",status="MALFORMED"} 1`,
		`usersig_auth_failures_total{reason="unknown_token"} 1`,
		`usersig_auth_failures_total{reason="no_token"} 0`,
		`usersig_rate_limited_total{caller="limited"} 2`,
		`usersig_calls_in_flight{class="caller"} 0`,
		`usersig_calls_in_flight{class="anonymous"} 0`,
		`usersig_calls_refused_total{limit="max_concurrent_calls"} 0`,
		`usersig_calls_refused_total{limit="max_anonymous_calls"} 0`,
		`usersig_config_reloads_total{result="success"} 1`,
		`usersig_config_generation 1`,
		`usersig_ready 1`,
		`usersig_build_info{go_version="go`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, bad := range append([]string{"metrics_user_77", "wrong-token"}, fixtureSecrets...) {
		if strings.Contains(body, bad) {
			t.Errorf("/metrics holds %q", bad)
		}
	}
}

// TestDrain: on shutdown the server reports not ready at once but keeps
// serving for shutdown.delay, then refuses new calls and stops.
func TestDrain(t *testing.T) {
	config := strings.Replace(fixtureConfig, "reload:", "shutdown: {delay: 2s, timeout: 5s}\nreload:", 1)
	ts := startServer(t, config)
	health := healthpb.NewHealthClient(ts.conn)
	if code, _ := ts.httpGet("/readyz"); code != 200 {
		t.Fatalf("/readyz before shutdown: %d", code)
	}
	if code, _ := ts.httpGet("/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	ts.cancel() // what SIGTERM does in usersigd
	waitFor(t, "/readyz to turn 503", func() bool { code, _ := ts.httpGet("/readyz"); return code == 503 })
	resp, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health during the delay: %v %v, want NOT_SERVING", resp, err)
	}
	// Still serving during the delay.
	if _, err := ts.client.GenerateUserSig(ts.as(tokBackend), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u1"}); err != nil {
		t.Errorf("a call during shutdown.delay: %v", err)
	}
	if code, _ := ts.httpGet("/healthz"); code != 200 {
		t.Errorf("/healthz during the delay: %d", code)
	}
	select {
	case err := <-ts.done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not stop")
	}
	ts.cancel = nil
	_, err = ts.client.GenerateUserSig(ts.as(tokBackend), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u1"})
	wantCode(t, "a call after the drain", err, codes.Unavailable, "")
	if len(ts.logs.lines(`"msg":"stopped"`)) != 1 {
		t.Errorf("no stopped line in the log")
	}
}

// TestMutualTLS: with client_ca_file set, a verified client certificate
// may name the caller; bearer tokens still work.
func TestMutualTLS(t *testing.T) {
	config, ca := mutualTLS(t, fixtureConfig+
		"  - name: svc\n    client_cert_names: [svc.internal]\n    apps: [1400000000]\n    methods: [VerifyUserSig]\n")
	ts := startServer(t, config)
	dialAs := func(cn string) usersigv1.UserSigServiceClient {
		t.Helper()
		pool := x509.NewCertPool()
		pool.AddCert(ca.cert)
		tc := &tls.Config{RootCAs: pool, ServerName: "localhost"}
		if cn != "" {
			der, key := ca.issue(t, cn, true)
			k, _ := x509.ParseECPrivateKey(key)
			tc.Certificates = []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: k}}
		}
		conn, err := grpc.NewClient(ts.srv.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return usersigv1.NewUserSigServiceClient(conn)
	}
	req := &usersigv1.VerifyUserSigRequest{SdkAppId: appA, UserId: "u1", UserSig: "x"}
	_, err := dialAs("svc.internal").VerifyUserSig(ts.as(""), req)
	wantCode(t, "caller named by its certificate", err, codes.OK, "")
	_, err = dialAs("svc.internal").GenerateUserSig(ts.as(""), &usersigv1.GenerateUserSigRequest{SdkAppId: appA, UserId: "u1"})
	wantCode(t, "the certificate's caller may not mint", err, codes.PermissionDenied, "")
	_, err = dialAs("stranger.internal").VerifyUserSig(ts.as(""), req)
	wantCode(t, "a certificate that names no caller", err, codes.Unauthenticated, "")
	_, err = dialAs("stranger.internal").VerifyUserSig(ts.as(tokBackend), req)
	wantCode(t, "a bearer token over mutual TLS", err, codes.OK, "")
	_, err = dialAs("").VerifyUserSig(ts.as(tokBackend), req)
	if status.Code(err) != codes.Unavailable {
		t.Errorf("no client certificate: %v, want the handshake refused (UNAVAILABLE)", err)
	}
}

// mutualTLS writes a CA and a server certificate for localhost, and
// turns on mutual TLS for the gRPC listener in config.
func mutualTLS(t *testing.T, config string) (string, *testCA) {
	ca := newCA(t)
	dir := t.TempDir()
	writePEM(t, dir+"/ca.pem", "CERTIFICATE", ca.der)
	srvCert, srvKey := ca.issue(t, "localhost", false)
	writePEM(t, dir+"/server.pem", "CERTIFICATE", srvCert)
	writePEM(t, dir+"/server-key.pem", "EC PRIVATE KEY", srvKey)
	tls := "  tls: {cert_file: " + dir + "/server.pem, key_file: " + dir + "/server-key.pem, client_ca_file: " + dir + "/ca.pem}\n"
	return strings.Replace(config, "  listen: 127.0.0.1:0\nhttp:", "  listen: 127.0.0.1:0\n"+tls+"http:", 1), ca
}

type testCA struct {
	cert *x509.Certificate
	der  []byte
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "usersig test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, der: der, key: key}
}

// issue makes a leaf certificate for name: a client or a server one.
func (ca *testCA) issue(t *testing.T, name string, client bool) (der, key []byte) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames, tmpl.IPAddresses = []string{name}, []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	key, _ = x509.MarshalECPrivateKey(k)
	return der, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := writeFile0600(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})); err != nil {
		t.Fatal(err)
	}
}
