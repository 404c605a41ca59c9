package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	usersigv1 "github.com/usersig/usersig/gen/usersig/v1"
	"github.com/usersig/usersig/signer"
)

// TestRefusesFilesOthersMayWrite runs the binary (issue 11, item 2): it
// will not start on a config or key file that anyone but its owner may
// write, or that another user owns; and a key file overwritten by another
// user at 0602 is refused at SIGHUP, so the attacker's tickets do not
// verify and usersig_config_stale says so.
func TestRefusesFilesOthersMayWrite(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test chowns files to another user: run it as root, as CI does")
	}
	for _, tc := range []struct {
		name string
		prep func(dir, cfg string)
		want string
	}{
		{"config 0666", func(dir, cfg string) { os.Chmod(cfg, 0o666) }, "config.yaml is writable by its group or others (mode 0666)"},
		{"key 0620", func(dir, cfg string) { os.Chmod(filepath.Join(dir, "key"), 0o620) }, "key is writable by its group or others (mode 0620)"},
		{"key of another user", func(dir, cfg string) { os.Chown(filepath.Join(dir, "key"), 65534, 65534) }, "key is owned by uid 65534, neither root nor the server's user"},
	} {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "config.yaml")
		os.WriteFile(filepath.Join(dir, "key"), []byte(key), 0o600)
		os.WriteFile(cfg, []byte(config(dir, "")), 0o600)
		tc.prep(dir, cfg)
		var stderr strings.Builder
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a server that starts is killed
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "--config", cfg)
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%s: %v, want exit status 2", tc.name, err)
		}
		var l struct{ Problem string }
		if json.Unmarshal([]byte(strings.TrimSpace(stderr.String())), &l) != nil || !strings.Contains(l.Problem, tc.want) {
			t.Errorf("%s: stderr %q, want one line saying %q", tc.name, stderr.String(), tc.want)
		}
	}

	// At reload: another user overwrites the key with its own, at 0602.
	dir := t.TempDir()
	keyPath, cfg := filepath.Join(dir, "key"), filepath.Join(dir, "config.yaml")
	os.WriteFile(keyPath, []byte(key), 0o600)
	os.WriteFile(cfg, []byte(config(dir, "")), 0o600)
	p := start(t, "--config", cfg)
	const attackerKey = "attacker-key-000000000000000000000000000000000000000000000000"
	os.WriteFile(keyPath, []byte(attackerKey), 0o600)
	os.Chmod(keyPath, 0o602)
	p.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for metricSum(t, p.httpAddr, "usersig_config_stale") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("usersig_config_stale did not turn 1 after the refused reload\n%s", p.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for !strings.Contains(p.logs(), "key is writable by its group or others (mode 0602)") { // logs go out every 100 ms
		if time.Now().After(deadline) {
			t.Fatalf("the refused reload was not logged with its reason:\n%s", p.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	k, err := signer.NewKey([]byte(attackerKey))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := k.UserSig(1400000000, "administrator", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	v, err := client(t, p.grpcAddr).VerifyUserSig(bearer(token), &usersigv1.VerifyUserSigRequest{UserId: "administrator", UserSig: forged.Ticket})
	if err != nil || v.Status != usersigv1.VerifyStatus_VERIFY_STATUS_SIGNATURE_MISMATCH {
		t.Errorf("the attacker's ticket: %v %v, want SIGNATURE_MISMATCH", v, err)
	}
	if strings.Contains(p.logs(), attackerKey) || strings.Contains(p.logs(), forged.Ticket) {
		t.Error("a key or a ticket was logged")
	}
}
