package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
)

// TestMutualTLSIdentity: over mutual TLS a certificate and a token that
// name two callers are refused, a caller that lists client_cert_names is
// bound to them, a certificate's CN counts only when it has no SAN, and a
// certificate that names two callers names none. All on a real TLS
// server on loopback.
func TestMutualTLSIdentity(t *testing.T) {
	const tokBound = "tok-bound-3c4d5e6f7a8b9c0d1e2f"
	config, ca := mutualTLS(t, fixtureConfig+`
  - name: svc
    client_cert_names: [svc.internal, "spiffe://example.org/svc"]
    apps: [1400000000]
    methods: [VerifyUserSig]
  - name: bound
    token_sha256: `+tokenHash(tokBound)+`
    client_cert_names: [bound.internal]
    apps: [1400000000]
    methods: [VerifyUserSig]
`)
	ts := startServer(t, config)
	_, body := ts.httpGet("/metrics")
	if !strings.Contains(body, `usersig_auth_failures_total{reason="cert_token_mismatch"} 0`) {
		t.Errorf("/metrics lacks cert_token_mismatch at 0 from the start:\n%s", grepLines(body, "usersig_auth_failures_total"))
	}
	dial := func(cert func(*x509.Certificate)) usersigv1.UserSigServiceClient {
		t.Helper()
		pool := x509.NewCertPool()
		pool.AddCert(ca.cert)
		der, key := issueClient(t, ca, cert)
		conn, err := grpc.NewClient(ts.srv.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			RootCAs: pool, ServerName: "localhost",
			Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return usersigv1.NewUserSigServiceClient(conn)
	}
	cn := func(name string) func(*x509.Certificate) {
		return func(c *x509.Certificate) { c.Subject.CommonName = name }
	}
	dns := func(names ...string) func(*x509.Certificate) {
		return func(c *x509.Certificate) { c.Subject.CommonName, c.DNSNames = "client", names }
	}
	req := &usersigv1.VerifyUserSigRequest{SdkAppId: appA, UserId: "u1", UserSig: "x"}
	for _, tc := range []struct {
		name  string
		cert  func(*x509.Certificate)
		token string
		want  codes.Code
		msg   string
	}{
		// The certificate alone, as before.
		{"svc by its CN", cn("svc.internal"), "", codes.OK, ""},
		{"svc by a DNS SAN", dns("svc.internal"), "", codes.OK, ""},
		{"svc by a URI SAN", func(c *x509.Certificate) {
			u, _ := url.Parse("spiffe://example.org/svc")
			c.Subject.CommonName, c.URIs = "client", []*url.URL{u}
		}, "", codes.OK, ""},
		{"a certificate naming no caller, alone", cn("stranger.internal"), "", codes.Unauthenticated, "the client certificate names no caller"},
		// The token decides beside a certificate that names no caller,
		// unless its caller is bound to certificates.
		{"backend's token beside a certificate naming no caller", cn("stranger.internal"), tokBackend, codes.OK, ""},
		{"bound's token beside a certificate naming no caller", cn("stranger.internal"), tokBound, codes.Unauthenticated, "do not name the same caller"},
		{"bound's token beside its own certificate", cn("bound.internal"), tokBound, codes.OK, ""},
		// A stolen token beside another caller's certificate.
		{"backend's token beside svc's certificate", cn("svc.internal"), tokBackend, codes.Unauthenticated, "do not name the same caller"},
		{"bound's token beside svc's certificate", dns("svc.internal"), tokBound, codes.Unauthenticated, "do not name the same caller"},
		{"a bad token is refused whatever the certificate", cn("svc.internal"), "wrong-token", codes.Unauthenticated, "unknown bearer token"},
		// The CN counts only when the certificate has no SAN at all.
		{"svc's CN beside a DNS SAN", func(c *x509.Certificate) {
			c.Subject.CommonName, c.DNSNames = "svc.internal", []string{"stranger.internal"}
		}, "", codes.Unauthenticated, "names no caller"},
		{"svc's CN beside an IP SAN", func(c *x509.Certificate) {
			c.Subject.CommonName, c.IPAddresses = "svc.internal", []net.IP{net.ParseIP("10.0.0.7")}
		}, "", codes.Unauthenticated, "names no caller"},
		{"svc's CN beside an email SAN", func(c *x509.Certificate) {
			c.Subject.CommonName, c.EmailAddresses = "svc.internal", []string{"ops@example.org"}
		}, "", codes.Unauthenticated, "names no caller"},
		{"svc's CN beside a URI SAN", func(c *x509.Certificate) {
			u, _ := url.Parse("spiffe://example.org/stranger")
			c.Subject.CommonName, c.URIs = "svc.internal", []*url.URL{u}
		}, "", codes.Unauthenticated, "names no caller"},
		// A certificate whose SANs name two callers names neither.
		{"a certificate naming svc and bound", dns("svc.internal", "bound.internal"), "", codes.Unauthenticated, "names more than one caller"},
		{"a certificate naming svc and bound, with bound's token", dns("svc.internal", "bound.internal"), tokBound, codes.Unauthenticated, "names more than one caller"},
	} {
		_, err := dial(tc.cert).VerifyUserSig(ts.as(tc.token), req)
		wantCode(t, tc.name, err, tc.want, "")
		if msg := status.Convert(err).Message(); !strings.Contains(msg, tc.msg) {
			t.Errorf("%s: message %q, want it to say %q", tc.name, msg, tc.msg)
		}
	}
	_, body = ts.httpGet("/metrics")
	if !strings.Contains(body, `usersig_auth_failures_total{reason="cert_token_mismatch"} 3`) {
		t.Errorf("/metrics does not count 3 cert_token_mismatch:\n%s", grepLines(body, "usersig_auth_failures_total"))
	}
	if strings.Contains(ts.logs.String(), tokBound[:16]) {
		t.Errorf("the logs hold bound's token")
	}
}

// issueClient makes a client certificate of the test CA, shaped by edit.
func issueClient(t *testing.T, ca *testCA, edit func(*x509.Certificate)) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	edit(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der, k
}
