package server

import (
	"context"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/usersig/usersig/signer"
)

// reloader owns the config in force and its reloading: it installs a
// loaded config (swapping the policy the service and the tap read), binds
// its metrics and audit loggers, reloads on SIGHUP or when the watched
// files change, and keeps the state that takes.
type reloader struct {
	path     string                  // the config file; "" with --dev
	policy   *atomic.Pointer[policy] // shared with the service and the tap
	start    *Config                 // as loaded at start: its start-only settings are in force
	metrics  *metrics
	log      *zap.Logger // the "config" logger
	audit    *zap.Logger
	logLevel *zap.AtomicLevel // follows log.level, when set
	certs    []*certReloader  // one per listener with TLS
	issuers  *issuers         // the OIDC callers' issuers, kept across reloads

	mu      sync.Mutex // one reload at a time; guards watched
	watched []fileStamp
}

// install puts a loaded config in force. Calls already past
// authentication keep the policy they started with. pre are stamps taken
// before the files were read: a change made while they were being read
// must still count as a change.
func (r *reloader) install(l *Loaded, pre []fileStamp) {
	p := l.policy
	old := r.policy.Load()
	p.generation, p.hash = 1, l.Hash
	if old != nil {
		p.generation = old.generation + 1
	}
	p.inheritRates(old)
	r.bind(p)
	r.policy.Store(p)
	r.issuers.keep(p)
	if r.logLevel != nil {
		if lvl, err := zapcore.ParseLevel(l.Config.Log.Level); err == nil {
			r.logLevel.SetLevel(lvl)
		}
	}
	for _, w := range l.Warnings {
		r.log.Warn(w)
	}
	r.watched = merge(pre, stampFiles(r.path, l.Config))
	if old == nil && r.path != "" {
		r.metrics.watchStale(r.filesDiffer)
	}
	r.metrics.reloaded(true, p.generation)
	r.log.Info("config in force", zap.Uint64("generation", p.generation), zap.String("hash", p.hash),
		zap.Int("apps", len(p.appList)), zap.Int("callers", len(p.callers)))
}

// bind resolves a policy's counters and audit loggers once, so that a call
// only increments and encodes what varies.
func (r *reloader) bind(p *policy) {
	p.bindOIDC(r.issuers)
	for _, a := range p.appList {
		for st := signer.Valid; st <= signer.Malformed; st++ {
			a.verified[st] = r.metrics.verifiedCounter(a.id, st)
		}
	}
	for _, c := range p.callers {
		c.issued = map[uint64]*[numKinds]issuance{}
		for _, a := range p.usableApps(c) {
			is := new([numKinds]issuance)
			for k := range numKinds {
				is[k] = issuance{
					count: r.metrics.issuedCounter(a.id, c.name, k),
					audit: r.audit.With(zap.String("caller", c.name), zap.Uint64("sdk_app_id", a.id),
						zap.String("key_id", a.keyIDs[0]), zap.Stringer("kind", k)),
				}
			}
			c.issued[a.id] = is
		}
	}
}

// reload reads the config file and the key files again and puts them in
// force at once. A config that fails validation is rejected, with one log
// line per problem, and the one in force stays.
func (r *reloader) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.certs {
		c.reload()
	}
	pre := restamp(r.watched)
	l, err := LoadConfig(r.path)
	if err != nil {
		r.metrics.reloaded(false, 0)
		for _, line := range strings.Split(err.Error(), "\n") {
			r.log.Error("reload rejected; the config in force stays", zap.String("problem", line))
		}
		// Do not retry the same files on every tick, but do watch the key
		// files the rejected config names, so that fixing one reloads.
		var named []fileStamp
		if b, rerr := os.ReadFile(r.path); rerr == nil {
			if cfg, perr := ParseConfig(b); perr == nil {
				named = stampFiles("", cfg)
			}
		}
		r.watched = merge(pre, named)
		return err
	}
	for _, f := range staticChanges(r.start, l.Config) {
		r.log.Warn("this setting does not reload; restart to apply it", zap.String("setting", f))
	}
	r.install(l, pre)
	return nil
}

// filesDiffer reports whether the config file and the key files it names
// differ, in path or content, from those the config in force was loaded
// from (or cannot be read).
func (r *reloader) filesDiffer() bool {
	sum, ok := diskDigest(r.path)
	return !ok || sum != r.policy.Load().inputs
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
		{"http_api", old.HTTPAPI, new.HTTPAPI},
		{"shutdown", [2]time.Duration{old.Shutdown.Delay.d, old.Shutdown.Timeout.d}, [2]time.Duration{new.Shutdown.Delay.d, new.Shutdown.Timeout.d}},
		{"reload", old.Reload.Interval.d, new.Reload.Interval.d},
		{"rate_limits", old.RateLimits.settings(), new.RateLimits.settings()},
	} {
		if !reflect.DeepEqual(c.old, c.new) {
			out = append(out, c.name)
		}
	}
	return out
}

// settings is the rate_limits section as it takes effect: defaults
// written out or not, durations by value.
func (r RateLimitsConfig) settings() RateLimitsConfig {
	if r.Backend == "" {
		r.Backend = "local"
	}
	if r.OnBackendError == "" {
		r.OnBackendError = "local"
	}
	if r.Redis != nil {
		rc := *r.Redis
		rc.Timeout = Duration{d: rc.Timeout.d}
		if rc.TLS != nil {
			t := *rc.TLS
			rc.TLS = &t
		}
		r.Redis = &rc
	}
	return r
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
func (r *reloader) watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		changed := false
		for _, f := range r.watched {
			if f.changed() {
				changed = true
				break
			}
		}
		r.mu.Unlock()
		if changed {
			r.log.Info("a config or key file changed; reloading")
			r.reload()
		}
	}
}
