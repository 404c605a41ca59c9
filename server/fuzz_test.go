package server_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usersig/usersig/server"
)

// FuzzConfig feeds arbitrary files to the config loader: it must never
// panic, and it either loads the config or lists one-line problems. Key
// files are redirected to one test key, so the fuzzer never reads files
// of its choosing.
func FuzzConfig(f *testing.F) {
	f.Add([]byte(fixtureConfig))
	f.Add([]byte(minimalApps + minimalCaller))
	f.Add([]byte("grpc: {listen: x}\nshutdown: {delay: 1h}\napps: [{sdk_app_id: 1, keys: [{id: a, env: HOME}]}]\ncallers: [{name: c, token_sha256: zz, apps: ['*'], methods: [VerifyUserSig], rate: {per_second: 1e308, burst: -1}, user_id_pattern: '(a|b)*'}]"))
	f.Add([]byte("apps: !!map {}\n"))
	f.Add([]byte("&a [*a, *a]"))
	dir := f.TempDir()
	key := filepath.Join(dir, "key")
	if err := os.WriteFile(key, []byte(strings.Repeat("k", 64)), 0o600); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := server.ParseConfig(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an empty parse error")
			}
			return
		}
		for i := range cfg.Apps {
			for j := range cfg.Apps[i].Keys {
				if cfg.Apps[i].Keys[j].File != "" {
					cfg.Apps[i].Keys[j].File = key
				}
			}
		}
		l, err := server.Compile(cfg)
		var ce *server.ConfigError
		switch {
		case err == nil && l == nil:
			t.Fatal("Compile returned neither a config nor an error")
		case err != nil && !errors.As(err, &ce):
			t.Fatalf("Compile error %T, want a ConfigError", err)
		case err != nil:
			for _, p := range ce.Problems {
				if p == "" || strings.Contains(p, "\n") {
					t.Fatalf("problem %q is not one line", p)
				}
			}
		}
	})
}
