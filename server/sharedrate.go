package server

// Shared rate limits (rate_limits.backend: redis): every caller's rate and
// rate_per_user is one budget across the replicas that share a Redis,
// decided by redis_rate's GCRA script. Each decision is bounded by
// rate_limits.redis.timeout, connecting included, and never retried; when
// Redis fails the call falls back to this process's own buckets
// (on_backend_error: local) or is refused UNAVAILABLE (deny). go-redis
// reconnects by itself, so shared limiting resumes when Redis does.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RateLimitsConfig is where the callers' rates are kept.
type RateLimitsConfig struct {
	// Backend is local (default: each process its own buckets) or redis.
	Backend string       `yaml:"backend"`
	Redis   *RedisConfig `yaml:"redis"`
	// OnBackendError is local (default: this process's buckets while
	// Redis fails) or deny (rated calls are UNAVAILABLE meanwhile).
	OnBackendError string `yaml:"on_backend_error"`
}

// RedisConfig is the Redis the replicas share.
type RedisConfig struct {
	Addr string `yaml:"addr"`
	// PasswordFile or PasswordEnv hold the password (AUTH); the file is
	// refused if others may read it.
	PasswordFile string          `yaml:"password_file"`
	PasswordEnv  string          `yaml:"password_env"`
	TLS          *RedisTLSConfig `yaml:"tls"`
	// KeyPrefix starts every key usersigd writes; default "usersig:".
	KeyPrefix string `yaml:"key_prefix"`
	// Timeout bounds each decision, connecting included; default 50ms.
	Timeout Duration `yaml:"timeout"`
}

// RedisTLSConfig turns on TLS to Redis; CAFile replaces the system's roots.
type RedisTLSConfig struct {
	CAFile string `yaml:"ca_file"`
}

const (
	defaultRedisPrefix  = "usersig:"
	defaultRedisTimeout = 50 * time.Millisecond
)

// sharedRateSettings are rate_limits, checked, with the password read.
type sharedRateSettings struct {
	addr, password, prefix string
	caPEM                  []byte
	tls                    bool
	timeout                time.Duration
	deny                   bool
}

func (c *checker) rateLimits(rl *RateLimitsConfig) *sharedRateSettings {
	const f = "rate_limits"
	switch rl.Backend {
	case "", "local":
		if rl.Redis != nil {
			c.addf(f+".redis", "is only read with backend: redis")
		}
		return nil
	case "redis":
	default:
		c.addf(f+".backend", "%q is not local or redis", rl.Backend)
		return nil
	}
	s := &sharedRateSettings{}
	switch rl.OnBackendError {
	case "", "local":
	case "deny":
		s.deny = true
	default:
		c.addf(f+".on_backend_error", "%q is not local or deny", rl.OnBackendError)
	}
	r := rl.Redis
	if r == nil {
		c.addf(f+".redis", "is required with backend: redis")
		return nil
	}
	if _, _, err := net.SplitHostPort(r.Addr); err != nil {
		c.addf(f+".redis.addr", "must be host:port")
	}
	s.addr = r.Addr
	switch {
	case r.PasswordFile != "" && r.PasswordEnv != "":
		c.addf(f+".redis", "set password_file or password_env, not both")
	case r.PasswordFile != "":
		raw, problems := readTrusted(r.PasswordFile, true)
		for _, p := range problems {
			c.addf(f+".redis.password_file", "%s", p)
		}
		s.password = strings.TrimSpace(string(raw))
		if problems == nil && s.password == "" {
			c.addf(f+".redis.password_file", "%s is empty", r.PasswordFile)
		}
	case r.PasswordEnv != "":
		if s.password = strings.TrimSpace(os.Getenv(r.PasswordEnv)); s.password == "" {
			c.addf(f+".redis.password_env", "$%s is not set or is empty", r.PasswordEnv)
		}
	}
	if r.TLS != nil {
		s.tls = true
		if r.TLS.CAFile != "" {
			pem, problems := readTrusted(r.TLS.CAFile, false)
			for _, p := range problems {
				c.addf(f+".redis.tls.ca_file", "%s", p)
			}
			if problems == nil && !x509.NewCertPool().AppendCertsFromPEM(pem) {
				c.addf(f+".redis.tls.ca_file", "%s holds no PEM certificate", r.TLS.CAFile)
			}
			s.caPEM = pem
		}
	}
	if r.KeyPrefix == "" {
		r.KeyPrefix = defaultRedisPrefix
	}
	s.prefix = r.KeyPrefix
	s.timeout = c.duration(f+".redis.timeout", &r.Timeout, defaultRedisTimeout)
	if s.timeout <= 0 || s.timeout > 5*time.Second {
		c.addf(f+".redis.timeout", "must be above 0s and at most 5s")
	}
	return s
}

// sharedRates decides rates in Redis.
type sharedRates struct {
	client  *redis.Client
	limiter *redis_rate.Limiter
	prefix  string
	timeout time.Duration
	deny    bool
	errors  prometheus.Counter
	log     *zap.Logger
	failing atomic.Bool // logged once per failure streak
}

func newSharedRates(s *sharedRateSettings, m *metrics, log *zap.Logger) *sharedRates {
	opt := &redis.Options{
		Addr: s.addr, Password: s.password,
		// The timeout bounds the whole decision: no retries, no waiting
		// longer than it to connect, write, read or get a connection.
		DialTimeout: s.timeout, ReadTimeout: s.timeout, WriteTimeout: s.timeout, PoolTimeout: s.timeout,
		MaxRetries: -1, DialerRetries: 1, DialerRetryTimeout: s.timeout,
		ContextTimeoutEnabled: true,
		DisableIdentity:       true, // CLIENT SETINFO is Redis 7.2's
	}
	if s.tls {
		host, _, _ := net.SplitHostPort(s.addr)
		opt.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if len(s.caPEM) > 0 {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(s.caPEM)
			opt.TLSConfig.RootCAs = pool
		}
	}
	client := redis.NewClient(opt)
	sr := &sharedRates{client: client, limiter: redis_rate.NewLimiter(prefixedKeys{client}),
		prefix: s.prefix, timeout: s.timeout, deny: s.deny, log: log,
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "usersig_rate_limit_backend_errors_total",
			Help: "Rate decisions Redis failed to make (unreachable, slow, refused), each then made by this process's own buckets (on_backend_error: local) or refused UNAVAILABLE (deny).",
		})}
	m.registry.MustRegister(sr.errors)
	return sr
}

// errRateBackend answers a rated call when Redis fails in deny mode.
var errRateBackend = withRetryInfo(status.New(codes.Unavailable, "the shared rate limiter cannot be reached; retry later"), time.Second)

// allow spends one call of the budget key (perSecond, burst) in Redis.
// err is Redis's failure, after it was counted and, once a streak, logged.
func (s *sharedRates) allow(ctx context.Context, key string, perSecond float64, burst int) (retry time.Duration, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	// redis_rate's Rate is an integer: one call per Period.
	lim := redis_rate.Limit{Rate: 1, Burst: burst, Period: time.Duration(float64(time.Second) / perSecond)}
	res, err := s.limiter.Allow(ctx, s.prefix+key, lim)
	if err != nil {
		s.errors.Inc()
		if !s.failing.Swap(true) {
			what := "falling back to this process's own buckets until it answers"
			if s.deny {
				what = "refusing rated calls UNAVAILABLE until it answers (on_backend_error: deny)"
			}
			s.log.Warn("the shared rate limiter (Redis) failed; "+what, zap.String("error", oneLine(err.Error())))
		}
		return 0, false, err
	}
	if s.failing.Swap(false) {
		s.log.Info("the shared rate limiter (Redis) answers again; rates are shared again")
	}
	return res.RetryAfter, res.Allowed > 0, nil
}

// decide spends one call of key in Redis when the rates are shared.
// decided is false when this process's buckets are to decide instead: the
// rates are not shared (s is nil), or Redis failed and on_backend_error is
// local; with deny, a failure is errRateBackend.
func (s *sharedRates) decide(ctx context.Context, key string, perSecond float64, burst int) (retry time.Duration, ok, decided bool, err error) {
	if s == nil {
		return 0, false, false, nil
	}
	retry, ok, err = s.allow(ctx, key, perSecond, burst)
	switch {
	case err == nil:
		return retry, ok, true, nil
	case s.deny:
		return 0, false, true, errRateBackend
	}
	return 0, false, false, nil
}

func (s *sharedRates) close() error { return s.client.Close() }

// prefixedKeys gives redis_rate our keys as they are: it puts "rate:"
// before each, and key_prefix must begin every key (for an ACL such as
// ~usersig:*).
type prefixedKeys struct{ *redis.Client }

func unrate(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = strings.TrimPrefix(k, "rate:")
	}
	return out
}

func (p prefixedKeys) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return p.Client.Eval(ctx, script, unrate(keys), args...)
}

func (p prefixedKeys) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return p.Client.EvalSha(ctx, sha1, unrate(keys), args...)
}

func (p prefixedKeys) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return p.Client.EvalRO(ctx, script, unrate(keys), args...)
}

func (p prefixedKeys) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return p.Client.EvalShaRO(ctx, sha1, unrate(keys), args...)
}

func (p prefixedKeys) Del(ctx context.Context, keys ...string) *redis.IntCmd {
	return p.Client.Del(ctx, unrate(keys)...)
}

// ping checks Redis once at start, for the log; a failure stops nothing.
func (s *sharedRates) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*s.timeout)
	defer cancel()
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis %s: %s", s.client.Options().Addr, oneLine(err.Error()))
	}
	return nil
}
