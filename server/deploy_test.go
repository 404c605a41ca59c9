package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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
// file, and a throwaway certificate and private key at the TLS paths, so
// that New really loads the deployed TLS setup. The config's text is the
// shipped one but for those paths.
func TestDeployConfigLoads(t *testing.T) {
	text := deployedConfigText(t)
	cfg, err := server.ParseConfig([]byte(text))
	if err != nil {
		t.Fatalf("the deployed config does not parse: %v", err)
	}

	root := t.TempDir()
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
	if tc := cfg.GRPC.TLS; tc != nil {
		cert, certKey := throwawayCertificate(t)
		files[tc.CertFile], files[tc.KeyFile] = cert, certKey
		if tc.ClientCAFile != "" {
			files[tc.ClientCAFile] = cert
		}
	}
	var paths []string
	for p, content := range files {
		if !filepath.IsAbs(p) {
			t.Errorf("the deployed config names %q, not an absolute path: in a pod it would be relative to the image's working directory", p)
			continue
		}
		at := filepath.Join(root, p)
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
		pairs = append(pairs, p, filepath.Join(root, p))
	}
	configPath := filepath.Join(root, "config.yaml")
	// A ConfigMap volume mounts its files at mode 0644.
	if err := os.WriteFile(configPath, []byte(strings.NewReplacer(pairs...).Replace(text)), 0o644); err != nil {
		t.Fatal(err)
	}

	l, err := server.LoadConfig(configPath)
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
	for _, p := range named {
		if p != "" && !strings.HasPrefix(p, root+string(filepath.Separator)) {
			t.Errorf("test bug: the loaded config names %s, which was not put under the temporary root", p)
		}
	}
	if _, err := server.New(l, server.Options{}); err != nil {
		t.Fatalf("the deployed config loads, but the server cannot be built from it:\n%v", err)
	}
	if d := l.Config.Shutdown.Delay; d == (server.Duration{}) {
		t.Errorf("the deployed config sets no shutdown.delay")
	}
	if !strings.HasPrefix(l.Config.GRPC.Listen, "0.0.0.0:") || !strings.HasPrefix(l.Config.HTTP.Listen, "0.0.0.0:") {
		t.Errorf("the deployed config listens on %q and %q; a pod must listen on all interfaces", l.Config.GRPC.Listen, l.Config.HTTP.Listen)
	}
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
