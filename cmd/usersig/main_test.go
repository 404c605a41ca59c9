package main_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The command's cases run in process, through cli.Run, in package cli.
// These tests cover what only the built binary shows: its wiring to the
// process's arguments, standard input, environment and exit status, and
// what it links.

const (
	secret = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"
	// xiaojun's UserSig from the documented example: app 1400000000, issued
	// at 1700000000 for 15552000 s.
	xiaojunSig = "LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4="
)

// TestBinary runs the built usersig: gen → verify from standard input →
// decode, and one run for each other exit status.
func TestBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "usersig")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	key := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(key, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	type result struct {
		stdout, stderr string
		code           int
	}
	usersig := func(env []string, stdin string, args ...string) result {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		code := 0
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("usersig %q: %v", args, err)
		}
		return result{out.String(), errb.String(), code}
	}

	// The key from the environment.
	gen := []string{"gen", "--sdkappid", "1400000000", "--user-id", "xiaojun", "--ttl", "15552000s", "--at", "1700000000"}
	g := usersig([]string{"USERSIG_KEY=" + secret}, "", gen...)
	if g.code != 0 || g.stderr != "" || strings.Count(g.stdout, "\n") != 1 {
		t.Fatalf("USERSIG_KEY=… usersig %q = %+v, want one line and exit 0", gen, g)
	}
	ticket := strings.TrimSpace(g.stdout)

	verify := []string{"verify", "--sdkappid", "1400000000", "--key-file", key, "--user-id", "xiaojun", "--at", "1700000000"}
	v := usersig(nil, g.stdout, verify...)
	var vr map[string]any
	if err := json.Unmarshal([]byte(v.stdout), &vr); err != nil || v.code != 0 || v.stderr != "" || vr["status"] != "VERIFY_STATUS_VALID" {
		t.Errorf("usersig %q with the ticket on stdin = %+v, want exit 0 and VALID (%v)", verify, v, err)
	}

	d := usersig(nil, "", "decode", ticket)
	var dr map[string]any
	if err := json.Unmarshal([]byte(d.stdout), &dr); err != nil || d.code != 0 || dr["sig"] != xiaojunSig {
		t.Errorf("usersig decode TICKET = %+v, want exit 0 and sig %s (%v)", d, xiaojunSig, err)
	}

	expired := []string{"verify", "--sdkappid", "1400000000", "--key-file", key, "--user-id", "xiaojun", "--at", "1715552001", ticket}
	if r := usersig(nil, "", expired...); r.code != 1 || !strings.Contains(r.stdout, "VERIFY_STATUS_EXPIRED") {
		t.Errorf("usersig %q = %+v, want exit 1 and EXPIRED", expired, r)
	}

	if r := usersig(nil, "", "sign"); r.code != 2 || r.stdout != "" || r.stderr != "usersig: argument 1 is not a command: want gen, verify or decode (usersig -h for help)\n" {
		t.Errorf("usersig sign = %+v, want exit 2 and one line on stderr", r)
	}
}

// daemonOnly are modules of usersigd's logging, metrics, tracing, config
// and rate limits. usersig reads secret keys: it links none of them.
var daemonOnly = []string{
	"go.uber.org/zap",
	"github.com/prometheus",
	"github.com/grpc-ecosystem",
	"go.opentelemetry.io",
	"go.yaml.in/yaml",
	"gopkg.in/yaml",
	"golang.org/x/time",
}

// ours are the module's packages usersig may link; package server is not
// among them.
var ours = map[string]bool{
	"github.com/usersig/usersig/cmd/usersig":           true,
	"github.com/usersig/usersig/cmd/usersig/cli":       true,
	"github.com/usersig/usersig/cmd/internal/safeflag": true,
	"github.com/usersig/usersig/server/convert":        true,
	"github.com/usersig/usersig/signer":                true,
	"github.com/usersig/usersig/gen/usersig/v1":        true,
}

// TestDependencies: go list -deps ./cmd/usersig holds none of the daemon's
// dependencies, and of this module only what the offline tool needs.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{with .Module}}{{.Path}}{{end}}", ".").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list -deps: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list -deps: %v", err)
	}
	reported := map[string]bool{}
	for line := range strings.Lines(string(out)) {
		pkg, mod, _ := strings.Cut(strings.TrimSpace(line), " ")
		if mod == "github.com/usersig/usersig" && !ours[pkg] {
			t.Errorf("usersig links %s, a package of this module outside the offline tool's list", pkg)
		}
		for _, d := range daemonOnly {
			if (mod == d || strings.HasPrefix(mod, d+"/")) && !reported[mod] {
				reported[mod] = true
				t.Errorf("usersig links %s, of module %s: the daemon's, not the offline tool's", pkg, mod)
			}
		}
	}
}
