package server_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
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

// TestDeployConfigMirror keeps the config mirror in deploy/kubernetes's
// manifest test (a nested module, which decodes the ConfigMap strictly
// without importing this one) in step with server.Config: both must know
// the same keys.
func TestDeployConfigMirror(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "../deploy/kubernetes/manifests_test.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var mirror ast.Expr
	ast.Inspect(f, func(n ast.Node) bool {
		if ts, ok := n.(*ast.TypeSpec); ok && ts.Name.Name == "serverConfig" {
			mirror = ts.Type
		}
		return mirror == nil
	})
	if mirror == nil {
		t.Fatal("deploy/kubernetes/manifests_test.go has no type serverConfig")
	}
	var got []string
	mirrorKeys(mirror, "", &got)
	var want []string
	configKeys(reflect.TypeFor[server.Config](), "", &want)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the mirror's keys differ from server.Config's:\n mirror %v\n config %v", got, want)
	}
}

// mirrorKeys lists the dotted json keys of a struct type expression.
func mirrorKeys(e ast.Expr, prefix string, out *[]string) {
	switch e := e.(type) {
	case *ast.StarExpr:
		mirrorKeys(e.X, prefix, out)
	case *ast.ArrayType:
		mirrorKeys(e.Elt, prefix, out)
	case *ast.StructType:
		for _, fd := range e.Fields.List {
			if fd.Tag == nil {
				continue
			}
			tag, _ := strconv.Unquote(fd.Tag.Value)
			key, _, _ := strings.Cut(reflect.StructTag(tag).Get("json"), ",")
			*out = append(*out, prefix+key)
			mirrorKeys(fd.Type, prefix+key+".", out)
		}
	}
}

// configKeys lists the dotted yaml keys of a config type; a type that
// decodes itself (Duration) is a leaf.
func configKeys(t reflect.Type, prefix string, out *[]string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.Unmarshaler]()) {
		return
	}
	for i := range t.NumField() {
		key, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if key == "" || key == "-" {
			continue
		}
		*out = append(*out, prefix+key)
		configKeys(t.Field(i).Type, prefix+key+".", out)
	}
}
