package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.yaml.in/yaml/v3"

	"github.com/usersig/usersig/server"
)

// TestDeployConfigLoads loads the config.yaml that deploy/kubernetes ships
// in its ConfigMap as usersigd does: LoadConfig, then New. It is the one
// check of that config's keys and values; the manifests' own test (a
// nested module) reads only the few fields other objects must agree with.
//
// Every file the config names is put in place under a temporary root, at
// the mode its volume mounts it with: a throwaway app key for each key
// file, and a throwaway certificate and private key at the TLS paths (of
// gRPC and of the HTTP API), so that New really loads the deployed TLS
// setup. The config's text is the shipped one but for those paths.
func TestDeployConfigLoads(t *testing.T) {
	d := placeDeployedConfig(t, nil)
	l, err := server.LoadConfig(d.configPath)
	if err != nil {
		t.Fatalf("the deployed config does not load:\n%v", err)
	}
	var named []string
	for _, app := range l.Config.Apps {
		for _, k := range app.Keys {
			named = append(named, k.File)
		}
	}
	if tc := l.Config.GRPC.TLS; tc != nil {
		named = append(named, tc.CertFile, tc.KeyFile, tc.ClientCAFile)
	}
	if a := l.Config.HTTPAPI; a != nil && a.TLS != nil {
		named = append(named, a.TLS.CertFile, a.TLS.KeyFile)
	}
	for _, p := range named {
		if p != "" && !strings.HasPrefix(p, d.root+string(filepath.Separator)) {
			t.Errorf("test bug: the loaded config names %s, which was not put under the temporary root", p)
		}
	}
	if _, err := server.New(l, server.Options{}); err != nil {
		t.Fatalf("the deployed config loads, but the server cannot be built from it:\n%v", err)
	}
	if d := l.Config.Shutdown.Delay; d == (server.Duration{}) {
		t.Errorf("the deployed config sets no shutdown.delay")
	}
	a := l.Config.HTTPAPI
	if a == nil {
		t.Fatalf("the deployed config has no http_api: the Deployment's port http-api would serve nothing")
	}
	if !strings.HasPrefix(l.Config.GRPC.Listen, "0.0.0.0:") || !strings.HasPrefix(l.Config.HTTP.Listen, "0.0.0.0:") || !strings.HasPrefix(a.Listen, "0.0.0.0:") {
		t.Errorf("the deployed config listens on %q, %q and %q; a pod must listen on all interfaces", l.Config.GRPC.Listen, a.Listen, l.Config.HTTP.Listen)
	}
	if a.TLS == nil || a.TLS.CertFile == "" || a.TLS.KeyFile == "" {
		t.Errorf("the deployed config serves the HTTP API without TLS: tokens and tickets would cross the pod network in clear")
	}
	if a.CORS != nil {
		t.Errorf("the deployed config turns CORS on for %q; it is off unless an operator lists origins", a.CORS.AllowedOrigins)
	}
}

// TestDeployHTTPAPIServes serves the deployed config, on loopback ports the
// kernel picks and with a caller's token in place of the placeholder hash,
// and calls its HTTP API as a client in the cluster would: over HTTPS,
// trusting the certificate of the TLS Secret, with a bearer token. CORS is
// off: a browser's preflight gets no CORS headers.
func TestDeployHTTPAPIServes(t *testing.T) {
	const token = "tok-deploy-3c9e1f7a5b2d4e6f8a0b"
	d := placeDeployedConfig(t, func(text string) string {
		for _, r := range []struct {
			what string
			re   *regexp.Regexp
			to   string
		}{
			// Loopback ports the kernel picks, for every listener.
			{"listen addresses", regexp.MustCompile(`0\.0\.0\.0:\d+`), "127.0.0.1:0"},
			// No wait for endpoints to move away when the test ends.
			{"shutdown.delay", regexp.MustCompile(`(?m)^(\s+delay:)\s*\S+`), "${1} 0s"},
			// The caller the ConfigMap ships, with a token that matches.
			{"the placeholder token hash", regexp.MustCompile(`\b0{64}\b`), tokenHash(token)},
		} {
			if !r.re.MatchString(text) {
				t.Fatalf("test bug: the deployed config has no %s to replace", r.what)
			}
			text = r.re.ReplaceAllString(text, r.to)
		}
		return text
	})
	l, err := server.LoadConfig(d.configPath)
	if err != nil {
		t.Fatalf("the deployed config does not load:\n%v", err)
	}
	logs := &syncBuffer{}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(logs), zap.DebugLevel)
	srv, err := server.New(l, server.Options{Logger: zap.New(core)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(time.Minute): // a hang bound, not a timing
			t.Errorf("Serve did not return within a minute of its context ending")
		}
	})
	addr := srv.APIAddr()
	if addr == "" {
		t.Fatal("the deployed config serves no HTTP API")
	}

	// A client in the cluster trusts the CA of the TLS Secret (here the
	// self-signed certificate itself) and dials a name among its dnsNames.
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(d.cert) {
		t.Fatal("test bug: the throwaway certificate does not parse")
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "usersigd", MinVersion: tls.VersionTLS12}}}
	call := func(method, url, auth, body string, header map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	base := "https://" + addr

	resp, body := call(http.MethodPost, base+"/v1/usersig:generate", "Bearer "+token, `{"user_id": "alice", "ttl": "300s"}`, nil)
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("POST /v1/usersig:generate over HTTPS: status %d (TLS %v), want 200 over TLS; body %s", resp.StatusCode, resp.TLS != nil, body)
	}
	var answer struct {
		UserSig  string `json:"userSig"`
		SDKAppID string `json:"sdkAppId"`
		UserID   string `json:"userId"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		t.Fatalf("the answer is not the JSON of GenerateUserSigResponse: %v", err)
	}
	if answer.UserSig == "" || answer.SDKAppID != "1400000000" || answer.UserID != "alice" {
		t.Errorf("the answer is sdkAppId %q, userId %q and a userSig of %d bytes; want 1400000000, alice and a ticket", answer.SDKAppID, answer.UserID, len(answer.UserSig))
	}

	if resp, body := call(http.MethodPost, base+"/v1/usersig:generate", "", `{"user_id": "alice"}`, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST without Authorization: status %d, want 401; body %s", resp.StatusCode, body)
	}

	// CORS is off: neither a preflight nor a call from a page's origin
	// gets the headers a browser needs to let the page read the answer.
	origin := map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
		"Access-Control-Request-Headers": "authorization,content-type"}
	for _, c := range []struct{ method, auth string }{{http.MethodOptions, ""}, {http.MethodPost, "Bearer " + token}} {
		resp, _ := call(c.method, base+"/v1/usersig:generate", c.auth, `{"user_id": "alice"}`, origin)
		for k := range resp.Header {
			if strings.HasPrefix(http.CanonicalHeaderKey(k), "Access-Control-") {
				t.Errorf("%s from another origin is answered with %s: %q, but the deployed config has no CORS", c.method, k, resp.Header.Values(k))
			}
		}
	}

	// The API port speaks TLS only: a plaintext request gets no answer
	// from the API.
	plain := &http.Client{Timeout: 30 * time.Second}
	if resp, err := plain.Post("http://"+addr+"/v1/usersig:generate", "application/json", strings.NewReader(`{"user_id": "alice"}`)); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "HTTPS") {
			t.Errorf("a plaintext request to the API port: status %d, body %q; want the TLS server's 400 for plain HTTP", resp.StatusCode, b)
		}
	}

	for _, secret := range []string{token, answer.UserSig} {
		if secret != "" && strings.Contains(logs.String(), secret) {
			t.Errorf("the server's logs hold a token or a ticket")
		}
	}
	// The call is logged as a gRPC one is, naming the HTTP client.
	if got := logs.lines(`"grpc.method":"GenerateUserSig"`, `"caller":"backend"`, `"grpc.code":"OK"`, `"peer.address":"127.0.0.1:`); len(got) == 0 {
		t.Errorf("the HTTP API's call left no call log line naming the caller and the client's address:\n%s", logs.String())
	}
}

// deployed is the deployed config put in place under root.
type deployed struct {
	root       string // the temporary root the pod's paths are under
	configPath string // config.yaml, naming files under root
	cert       []byte // the PEM certificate at the TLS paths
}

// placeDeployedConfig writes the ConfigMap's config.yaml, edited by edit
// when it is not nil, and every file it names under a temporary root.
func placeDeployedConfig(t *testing.T, edit func(string) string) deployed {
	t.Helper()
	text := deployedConfigText(t)
	if edit != nil {
		text = edit(text)
	}
	cfg, err := server.ParseConfig([]byte(text))
	if err != nil {
		t.Fatalf("the deployed config does not parse: %v", err)
	}

	d := deployed{root: t.TempDir()}
	files := map[string][]byte{} // path in the pod -> content
	key := []byte(strings.Repeat("k", 64))
	for _, app := range cfg.Apps {
		for _, k := range app.Keys {
			switch {
			case k.File != "":
				files[k.File] = key
			case k.Env != "":
				t.Setenv(k.Env, string(key))
			}
		}
	}
	// One certificate for every TLS path: the Secret usersigd-tls holds
	// one, which gRPC and the HTTP API both serve.
	cert, certKey := throwawayCertificate(t)
	d.cert = cert
	if tc := cfg.GRPC.TLS; tc != nil {
		files[tc.CertFile], files[tc.KeyFile] = cert, certKey
		if tc.ClientCAFile != "" {
			files[tc.ClientCAFile] = cert
		}
	}
	if a := cfg.HTTPAPI; a != nil && a.TLS != nil {
		files[a.TLS.CertFile], files[a.TLS.KeyFile] = cert, certKey
	}
	var paths []string
	for p, content := range files {
		if !filepath.IsAbs(p) {
			t.Errorf("the deployed config names %q, not an absolute path: in a pod it would be relative to the image's working directory", p)
			continue
		}
		at := filepath.Join(d.root, p)
		if err := os.MkdirAll(filepath.Dir(at), 0o755); err != nil {
			t.Fatal(err)
		}
		// Secret volumes mount at defaultMode 0440 (deployment.yaml).
		if err := os.WriteFile(at, content, 0o440); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	// Longest first, so that no path is replaced inside a longer one.
	slices.SortFunc(paths, func(a, b string) int { return len(b) - len(a) })
	var pairs []string
	for _, p := range paths {
		pairs = append(pairs, p, filepath.Join(d.root, p))
	}
	d.configPath = filepath.Join(d.root, "config.yaml")
	// A ConfigMap volume mounts its files at mode 0644.
	if err := os.WriteFile(d.configPath, []byte(strings.NewReplacer(pairs...).Replace(text)), 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

// deployedConfigText is the config.yaml of deploy/kubernetes's ConfigMap.
func deployedConfigText(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../deploy/kubernetes/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(b, &cm); err != nil {
		t.Fatal(err)
	}
	text, ok := cm.Data["config.yaml"]
	if !ok {
		t.Fatal("the ConfigMap has no config.yaml")
	}
	return text
}

// throwawayCertificate is a self-signed certificate, which may also serve
// as a client CA, and its private key, both PEM as a kubernetes.io/tls
// Secret holds them.
func throwawayCertificate(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "usersigd"},
		DNSNames: []string{"usersigd"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
}
