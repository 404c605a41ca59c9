package server

import (
	"fmt"
	"math"
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
// refill budgets.
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

// errRateLimited is RESOURCE_EXHAUSTED with a google.rpc.RetryInfo saying
// when the caller's bucket holds a token again.
func errRateLimited(caller string, retry time.Duration) error {
	return withRetryInfo(status.New(codes.ResourceExhausted, fmt.Sprintf("caller %q is over its rate limit; retry after %s", caller, retry.Round(time.Millisecond))), retry)
}
