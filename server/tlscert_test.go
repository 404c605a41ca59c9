package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

// TestTLSCertificateRenewed: a certificate renewed in place, as
// cert-manager renews its Secret, is served to new connections without a
// restart; a renewed key file others may write is refused and the
// certificate in force stays.
func TestTLSCertificateRenewed(t *testing.T) {
	ca := newCA(t)
	var ts *testServer
	pemOf := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	first, firstKey := ca.issue(t, "localhost", false)
	config := strings.Replace(fixtureConfig, "  listen: 127.0.0.1:0\nhttp:",
		"  listen: 127.0.0.1:0\n  tls: {cert_file: {{dir}}/tls.crt, key_file: {{dir}}/tls.key}\nhttp:", 1)
	ts = startServer(t, config, func(ts *testServer) {
		ts.writeFile("tls.crt", pemOf("CERTIFICATE", first), 0o600)
		ts.writeFile("tls.key", pemOf("EC PRIVATE KEY", firstKey), 0o600)
	})
	served := func() []byte {
		t.Helper()
		pool := x509.NewCertPool()
		pool.AddCert(ca.cert)
		c, err := tls.Dial("tcp", ts.srv.GRPCAddr(), &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Raw
	}
	if string(served()) != string(first) {
		t.Fatal("the server does not serve its certificate")
	}

	renewed, renewedKey := ca.issue(t, "localhost", false)
	ts.writeFile("tls.key", pemOf("EC PRIVATE KEY", renewedKey), 0o600)
	ts.writeFile("tls.crt", pemOf("CERTIFICATE", renewed), 0o600)
	waitFor(t, "the renewed certificate to be served", func() bool { return string(served()) == string(renewed) })
	waitFor(t, "the renewal to be logged", func() bool { return len(ts.logs.lines("serving the renewed certificate")) == 1 })

	// A renewal whose key file anyone may write is not taken.
	third, thirdKey := ca.issue(t, "localhost", false)
	ts.writeFile("tls.key", pemOf("EC PRIVATE KEY", thirdKey), 0o666)
	ts.writeFile("tls.crt", pemOf("CERTIFICATE", third), 0o600)
	waitFor(t, "the refusal to be logged", func() bool {
		served() // the files are checked when a handshake asks for the certificate
		return len(ts.logs.lines("the renewed certificate was refused", "is writable by its group or others")) > 0
	})
	if string(served()) != string(renewed) {
		t.Error("a refused renewal replaced the certificate in force")
	}
}
