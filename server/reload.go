package server

import (
	"context"
	"os"
	"reflect"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/usersig/usersig/signer"
)

// install puts a loaded config in force. Calls already past
// authentication keep the policy they started with. pre are stamps taken
// before the files were read: a change made while they were being read
// must still count as a change.
func (s *Server) install(l *Loaded, pre []fileStamp) {
	p := l.policy
	old := s.policy.Load()
	p.generation, p.hash = 1, l.Hash
	if old != nil {
		p.generation = old.generation + 1
	}
	p.inheritRates(old)
	s.bind(p)
	s.policy.Store(p)
	if s.opts.LogLevel != nil {
		if lvl, err := zapcore.ParseLevel(l.Config.Log.Level); err == nil {
			s.opts.LogLevel.SetLevel(lvl)
		}
	}
	for _, w := range l.Warnings {
		s.configLog.Warn(w)
	}
	s.watched = merge(pre, stampFiles(s.opts.ConfigPath, l.Config))
	if old == nil && s.opts.ConfigPath != "" {
		s.metrics.watchStale(s.filesDiffer)
	}
	s.metrics.reloaded(true, p.generation)
	s.configLog.Info("config in force", zap.Uint64("generation", p.generation), zap.String("hash", p.hash),
		zap.Int("apps", len(p.appList)), zap.Int("callers", len(p.callers)))
}

// bind resolves a policy's counters and audit loggers once, so that a call
// only increments and encodes what varies.
func (s *Server) bind(p *policy) {
	for _, a := range p.appList {
		for st := signer.Valid; st <= signer.Malformed; st++ {
			a.verified[st] = s.metrics.verifiedCounter(a.id, st)
		}
	}
	for _, c := range p.callers {
		c.issued = map[uint64]*[numKinds]issuance{}
		for _, a := range p.usableApps(c) {
			is := new([numKinds]issuance)
			for k := range numKinds {
				is[k] = issuance{
					count: s.metrics.issuedCounter(a.id, c.name, k),
					audit: s.audit.With(zap.String("caller", c.name), zap.Uint64("sdk_app_id", a.id),
						zap.String("key_id", a.keyIDs[0]), zap.Stringer("kind", k)),
				}
			}
			c.issued[a.id] = is
		}
	}
}

// Reload reads the config file and the key files again and puts them in
// force at once. A config that fails validation is rejected, with one log
// line per problem, and the one in force stays.
func (s *Server) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.certs != nil {
		s.certs.reload()
	}
	pre := restamp(s.watched)
	l, err := LoadConfig(s.opts.ConfigPath)
	if err != nil {
		s.metrics.reloaded(false, 0)
		for _, line := range strings.Split(err.Error(), "\n") {
			s.configLog.Error("reload rejected; the config in force stays", zap.String("problem", line))
		}
		// Do not retry the same files on every tick, but do watch the key
		// files the rejected config names, so that fixing one reloads.
		var named []fileStamp
		if b, rerr := os.ReadFile(s.opts.ConfigPath); rerr == nil {
			if cfg, perr := ParseConfig(b); perr == nil {
				named = stampFiles("", cfg)
			}
		}
		s.watched = merge(pre, named)
		return err
	}
	for _, f := range staticChanges(s.cfg, l.Config) {
		s.configLog.Warn("this setting does not reload; restart to apply it", zap.String("setting", f))
	}
	s.install(l, pre)
	return nil
}

// filesDiffer reports whether the config file and the key files it names
// differ, in path or content, from those the config in force was loaded
// from (or cannot be read).
func (s *Server) filesDiffer() bool {
	sum, ok := diskDigest(s.opts.ConfigPath)
	return !ok || sum != s.policy.Load().inputs
}

// staticChanges names the settings that changed but only apply at start.
// It compares what the settings mean, not how they are written: a comment,
// a reordering or 5000ms for 5s changes nothing.
func staticChanges(old, new *Config) []string {
	var out []string
	for _, c := range []struct {
		name     string
		old, new any
	}{
		{"grpc", old.GRPC.settings(), new.GRPC.settings()},
		{"http", old.HTTP, new.HTTP},
		{"shutdown", [2]time.Duration{old.Shutdown.Delay.d, old.Shutdown.Timeout.d}, [2]time.Duration{new.Shutdown.Delay.d, new.Shutdown.Timeout.d}},
		{"reload", old.Reload.Interval.d, new.Reload.Interval.d},
	} {
		if !reflect.DeepEqual(c.old, c.new) {
			out = append(out, c.name)
		}
	}
	return out
}

// settings is the gRPC section as it takes effect: durations by value.
func (g GRPCConfig) settings() GRPCConfig {
	g.MaxCallDuration = Duration{d: g.MaxCallDuration.d}
	if g.TLS != nil {
		t := *g.TLS
		g.TLS = &t
	}
	return g
}

// watch reloads when the config file or a key file changes.
func (s *Server) watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.reloadMu.Lock()
		changed := false
		for _, f := range s.watched {
			if f.changed() {
				changed = true
				break
			}
		}
		s.reloadMu.Unlock()
		if changed {
			s.configLog.Info("a config or key file changed; reloading")
			s.Reload()
		}
	}
}
