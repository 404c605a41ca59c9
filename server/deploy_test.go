package server_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/usersig/usersig/server"
)

// TestDeployConfigLoads loads the config.yaml that deploy/kubernetes ships
// in its ConfigMap with the real loader, with its key files in place at
// the Secret's mode (0440): the manifests and the server agree.
func TestDeployConfigLoads(t *testing.T) {
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
	cfg, err := server.ParseConfig([]byte(text))
	if err != nil {
		t.Fatalf("the deployed config does not parse: %v", err)
	}
	// Put a key where each key file is expected, under a temporary root.
	root := t.TempDir()
	for i := range cfg.Apps {
		for j := range cfg.Apps[i].Keys {
			k := &cfg.Apps[i].Keys[j]
			if k.File == "" {
				continue
			}
			p := filepath.Join(root, k.File)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(strings.Repeat("k", 64)), 0o440); err != nil {
				t.Fatal(err)
			}
			k.File = p
		}
	}
	l, err := server.Compile(cfg)
	if err != nil {
		t.Fatalf("the deployed config does not load:\n%v", err)
	}
	if d := l.Config.Shutdown.Delay; d == (server.Duration{}) {
		t.Errorf("the deployed config sets no shutdown.delay")
	}
	if !strings.HasPrefix(l.Config.GRPC.Listen, "0.0.0.0:") || !strings.HasPrefix(l.Config.HTTP.Listen, "0.0.0.0:") {
		t.Errorf("the deployed config listens on %q and %q; a pod must listen on all interfaces", l.Config.GRPC.Listen, l.Config.HTTP.Listen)
	}
}
