package server

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The caller option rate, whole: its schema (RateConfig, a field of
// CallerConfig), its rule (checker.rate), the token bucket it becomes
// (callerRate), how the bucket survives a reload (policy.inheritRates),
// and where a call spends from it (callerRate.allow, which authenticate
// calls before any signing work). A new caller option is a file like this
// one, a field in CallerConfig, and a line where compile reads it and
// where it is enforced.

// RateConfig is a token bucket: PerSecond calls a second on average, with
// bursts of up to Burst (default: PerSecond rounded up).
type RateConfig struct {
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
}

// callerRate is a caller's rate and its bucket. The bucket counts every
// UserSigService call of the caller, refused ones too.
type callerRate struct {
	perSecond float64
	burst     int
	limiter   *rate.Limiter // set by inheritRates
}

// rate checks a caller's rate; nil when it has none or it is invalid.
func (c *checker) rate(field string, r *RateConfig) *callerRate {
	switch {
	case r == nil:
		return nil
	case r.PerSecond <= 0 || math.IsInf(r.PerSecond, 0) || math.IsNaN(r.PerSecond):
		c.addf(field+".per_second", "must be above 0")
		return nil
	case r.Burst < 0:
		c.addf(field+".burst", "must not be negative")
		return nil
	}
	burst := r.Burst
	if burst == 0 {
		burst = int(math.Ceil(r.PerSecond))
	}
	return &callerRate{perSecond: r.PerSecond, burst: burst}
}

// inheritRates gives each caller with a rate a token bucket: the one it
// had under old when its rate is unchanged, so that a reload does not
// refill budgets. Its rate_per_user is kept or renewed alike
// (inheritUserRates).
func (p *policy) inheritRates(old *policy) {
	prev := map[string]*caller{}
	if old != nil {
		for _, c := range old.callers {
			prev[c.name] = c
		}
	}
	for _, c := range p.callers {
		r := c.rate
		if r == nil {
			continue
		}
		if o := prev[c.name]; o != nil && o.rate != nil && o.rate.perSecond == r.perSecond && o.rate.burst == r.burst {
			r.limiter = o.rate.limiter
			continue
		}
		r.limiter = rate.NewLimiter(rate.Limit(r.perSecond), r.burst)
	}
	p.inheritUserRates(prev)
}

// allow spends one token of the caller's bucket. A caller over its rate
// spends nothing and gets how long until a token is there again. A nil
// rate allows everything.
func (r *callerRate) allow() (retry time.Duration, ok bool) {
	if r == nil {
		return 0, true
	}
	now := time.Now() // the wall clock, whatever clock tickets use
	res := r.limiter.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}

// spendCallerRate spends one call of the caller's rate: in Redis when the
// rates are shared (falling back to this process's bucket, or refusing
// UNAVAILABLE, when Redis fails), else in this process's bucket.
func (h *service) spendCallerRate(ctx context.Context, c *caller) error {
	r := c.rate
	if r == nil {
		return nil
	}
	retry, ok, decided, err := h.shared.decide(ctx, "rate:"+c.name, r.perSecond, r.burst)
	if err != nil {
		return err
	}
	if !decided {
		retry, ok = r.allow()
	}
	if !ok {
		h.metrics.rateLimited(c.name)
		return errRateLimited(c.name, retry)
	}
	return nil
}

// spendUserRate spends one token of the user id's bucket under the
// caller's rate_per_user: in Redis when the rates are shared, else (or
// when Redis fails, with on_backend_error: local) in this process's
// buckets. Handlers call it last, after every check of the caller, the
// app and the request, so that a refused call spends no user's budget,
// and before any signing work.
func (h *service) spendUserRate(ctx context.Context, ci *callInfo, userID string) error {
	c := ci.caller
	u := c.userRate
	if u == nil {
		return nil
	}
	retry, ok, decided, err := h.shared.decide(ctx, "user:"+c.name+":"+userID, u.perSecond, u.burst)
	if err != nil {
		return err
	}
	if !decided {
		var evicted bool
		if retry, evicted, ok = u.allow(userID); evicted {
			h.metrics.userEvicted(c.name)
		}
	}
	if !ok {
		h.metrics.userRateLimited(c.name)
		return errUserRateLimited(c.name, retry)
	}
	return nil
}

// errRateLimited is RESOURCE_EXHAUSTED with a google.rpc.RetryInfo saying
// when the caller's bucket holds a token again.
func errRateLimited(caller string, retry time.Duration) error {
	return withRetryInfo(status.New(codes.ResourceExhausted, fmt.Sprintf("caller %q is over its rate limit; retry after %s", caller, retry.Round(time.Millisecond))), retry)
}

// The caller option rate_per_user, whole, as rate above: its schema
// (UserRateConfig), its rule (checker.userRate), the buckets it becomes
// (userRate, one table per caller), how they survive a reload
// (inheritRates), and where a call spends from them (service.spendUserRate,
// which the handlers call once the app, the user id and the request have
// passed their checks, so that a refused call spends nothing).

// UserRateConfig is a token bucket per user id of a caller: PerSecond
// calls a second on average for each user id, with bursts of up to Burst
// (default: PerSecond rounded up). A caller keeps the buckets of at most
// MaxUsers user ids (default DefaultMaxUsers); see userBuckets for what
// happens beyond.
type UserRateConfig struct {
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
	MaxUsers  int     `yaml:"max_users"`
}

// Limits of rate_per_user's table of buckets, per caller.
const (
	DefaultMaxUsers = 100_000
	MaxMaxUsers     = 10_000_000
)

// userRate is a caller's rate_per_user and its buckets.
type userRate struct {
	perSecond float64
	burst     int
	maxUsers  int
	buckets   *userBuckets // set by inheritRates
}

// userRate checks a caller's rate_per_user; nil when it has none or it is
// invalid.
func (c *checker) userRate(field string, r *UserRateConfig) *userRate {
	if r == nil {
		return nil
	}
	cr := c.rate(field, &RateConfig{PerSecond: r.PerSecond, Burst: r.Burst})
	switch {
	case r.MaxUsers < 0 || r.MaxUsers > MaxMaxUsers:
		c.addf(field+".max_users", "must be 1 to %d (default %d)", MaxMaxUsers, DefaultMaxUsers)
		return nil
	case cr == nil:
		return nil
	}
	u := &userRate{perSecond: cr.perSecond, burst: cr.burst, maxUsers: r.MaxUsers}
	if u.maxUsers == 0 {
		u.maxUsers = DefaultMaxUsers
	}
	return u
}

// inheritUserRates gives each caller with a rate_per_user its table of
// buckets: the one it had under old when its rate_per_user is unchanged,
// as inheritRates does for rate; a changed one starts afresh, every user's
// bucket full.
func (p *policy) inheritUserRates(prev map[string]*caller) {
	for _, c := range p.callers {
		u := c.userRate
		if u == nil {
			continue
		}
		if o := prev[c.name]; o != nil && o.userRate != nil && o.userRate.perSecond == u.perSecond && o.userRate.burst == u.burst && o.userRate.maxUsers == u.maxUsers {
			u.buckets = o.userRate.buckets
			continue
		}
		u.buckets = newUserBuckets(u.perSecond, u.burst, u.maxUsers)
	}
}

// userEpoch is where the buckets' clock starts: nanoseconds since it, on
// the monotonic clock, are their time.
var userEpoch = time.Now()

// allow spends one token of the user's bucket. A nil userRate allows
// everything. evicted says another user's bucket was dropped to make room
// when not yet full (userBuckets).
func (u *userRate) allow(userID string) (retry time.Duration, evicted, ok bool) {
	if u == nil {
		return 0, false, true
	}
	return u.buckets.allow(userID, int64(time.Since(userEpoch)))
}

// userBuckets is a token bucket per user id in one word: the time at
// which the bucket will be full again (GCRA, the generic cell rate
// algorithm; the same bucket as rate.Limiter's, without its 100 bytes and
// mutex per user). A call spends one interval; it is refused, spending
// nothing, when the bucket would then be more than burst intervals from
// full.
//
// Memory: a bucket that is full again is the same as no bucket, so such
// buckets are dropped: sweeps run after every len/8 new user ids (so a
// sweep costs a new user id's call at most eight entries' checks), and a
// table that a sweep leaves at a quarter of its peak is rebuilt smaller
// (Go maps never shrink). At most max user ids are held: beyond that, a new user id
// takes the place of the one, among a few sampled at random, whose bucket
// is the nearest to full (approximately the least recently used). That
// user's next call finds a full bucket: the price of the bound is at most
// burst extra calls for a user evicted, never unlimited calls, and
// evicting a chosen user takes about max other user ids' calls first.
type userBuckets struct {
	interval, window int64 // nanoseconds a call spends; burst of them
	max              int

	mu      sync.Mutex
	full    map[string]int64 // user id → when its bucket is full again
	peak    int              // the most entries full has held since it was made
	inserts int              // new user ids since the last sweep
	sweepAt int              // inserts that trigger the next sweep
}

// Sweeps and eviction: at least this many new user ids between sweeps,
// and the number of entries an eviction samples.
const (
	minSweep     = 64
	evictSamples = 8
)

func newUserBuckets(perSecond float64, burst, max int) *userBuckets {
	const most = float64(1 << 61) // about 73 years: no overflow near it
	window := min(float64(burst)*1e9/perSecond, most)
	interval := min(1e9/perSecond, window)
	return &userBuckets{interval: int64(interval), window: int64(window), max: max, full: map[string]int64{}, sweepAt: minSweep}
}

func (b *userBuckets) allow(userID string, now int64) (retry time.Duration, evicted, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	at, known := b.full[userID]
	next := max(at, now) + b.interval
	if over := next - now - b.window; over > 0 {
		return time.Duration(over), false, false
	}
	if known {
		b.full[userID] = next
		return 0, false, true
	}
	if b.inserts++; b.inserts >= b.sweepAt {
		b.sweep(now)
	}
	if len(b.full) >= b.max {
		evicted = b.evict(now)
	}
	b.full[strings.Clone(userID)] = next // not the request's memory
	b.peak = max(b.peak, len(b.full))
	return 0, evicted, true
}

// sweep drops the buckets that are full again, and rebuilds the table
// when it holds a quarter of its peak or less.
func (b *userBuckets) sweep(now int64) {
	for id, at := range b.full {
		if at <= now {
			delete(b.full, id)
		}
	}
	if b.peak >= 4*minSweep && len(b.full) <= b.peak/4 {
		m := make(map[string]int64, len(b.full))
		for id, at := range b.full {
			m[id] = at
		}
		b.full, b.peak = m, len(m)
	}
	b.inserts, b.sweepAt = 0, max(len(b.full)/8, minSweep)
}

// evict drops, of a few entries sampled at random (a map's iteration
// starts at random), the bucket nearest to full; it reports whether that
// bucket was not yet full (dropping a full one loses nothing).
func (b *userBuckets) evict(now int64) bool {
	var (
		victim string
		least  int64
		n      int
	)
	for id, at := range b.full {
		if n == 0 || at < least {
			victim, least = id, at
		}
		if n++; n == evictSamples {
			break
		}
	}
	delete(b.full, victim)
	return least > now
}

// errUserRateLimited is RESOURCE_EXHAUSTED with a google.rpc.RetryInfo
// saying when the user's bucket holds a token again. The message names the
// caller and the option, not the user id, which the caller sent.
func errUserRateLimited(caller string, retry time.Duration) error {
	return withRetryInfo(status.New(codes.ResourceExhausted, fmt.Sprintf("caller %q is over its rate_per_user for this user_id; retry after %s", caller, retry.Round(time.Millisecond))), retry)
}

// userLen is how many user ids the table holds (tests).
func (b *userBuckets) userLen() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.full)
}
