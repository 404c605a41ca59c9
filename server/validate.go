package server

// Validation: a checker collects every problem of a config, one line each
// naming its field, and fills in the defaults of the settings.

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"
)

// checker collects problems, each naming its field.
type checker struct {
	problems, warnings []string
	digest             *inputDigest
}

func (c *checker) addf(field, format string, args ...any) {
	c.problems = append(c.problems, field+": "+fmt.Sprintf(format, args...))
}

// duration parses d, applying def when it is absent.
func (c *checker) duration(field string, d *Duration, def time.Duration) time.Duration {
	v, _ := c.parseDuration(field, d, def)
	return v
}

// parseDuration is duration, and whether the value could be read.
func (c *checker) parseDuration(field string, d *Duration, def time.Duration) (time.Duration, bool) {
	if d.text == "" {
		if d.d == 0 {
			d.d = def
		}
		return d.d, true
	}
	v, err := time.ParseDuration(d.text)
	if err != nil {
		c.addf(field, "%q is not a duration (write e.g. 720h, 30m or 90s)", d.text)
		return def, false
	}
	if v < 0 {
		c.addf(field, "%s is negative", d.text)
		return def, false
	}
	d.d = v
	return v, true
}

// ttl parses a ticket lifetime: whole seconds, 1s to 50 years.
func (c *checker) ttl(field string, d *Duration, def time.Duration) time.Duration {
	v, ok := c.parseDuration(field, d, def)
	switch {
	case !ok, d.text == "" && def == 0:
	case v < time.Second:
		c.addf(field, "%s is below 1s", human(v))
	case v%time.Second != 0:
		c.addf(field, "%s is not a whole number of seconds", human(v))
	case v > MaxTTL:
		c.addf(field, "%s is above 438000h (50 years, Tencent's documented maximum)", human(v))
	}
	return v
}

// human writes a duration as a config would: 720h, 1h30m, 90s.
func human(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

var (
	keyIDPattern      = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	callerNamePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

// certPair checks a listener's certificate and key files: both set, and
// each by tlsFile's rules.
func (c *checker) certPair(field, certFile, keyFile string) {
	if certFile == "" || keyFile == "" {
		c.addf(field, "cert_file and key_file are both required")
	}
	c.tlsFile(field+".cert_file", certFile, false)
	c.tlsFile(field+".key_file", keyFile, true)
}

// tlsFile checks a TLS file by the rules of the config and key files: a
// writable client CA file lets its writer name any caller by a
// certificate of his own, and a TLS key readable by others lets them
// pose as the server. A missing file is left to the server, which reports
// it when it loads the files at start.
func (c *checker) tlsFile(field, path string, secret bool) {
	if path == "" {
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	for _, p := range trustProblems(path, fi, secret) {
		c.addf(field, "%s", p)
	}
}

// anchoredPattern compiles a caller's user_id_pattern (or its
// private_map_key.room_str_pattern) so that it must match the whole user
// id (or room string). The pattern is compiled on its own first: wrapped in
// ^(?: and )$ at once, an unbalanced ")" in it would close the wrapper's
// group and let the rest match anywhere (u_[0-9]+)|(x matches u_1zzz).
// A pattern that compiles on its own is one group, so wrapping it anchors
// all of it; only an unterminated \Q then swallows the wrapper's end,
// which fails to compile.
func (c *checker) anchoredPattern(field, what, pattern string) *regexp.Regexp {
	if _, err := regexp.Compile(pattern); err != nil {
		c.addf(field, "%s", oneLine(err.Error()))
		return nil
	}
	re, err := regexp.Compile(`^(?:` + pattern + `)$`)
	if err != nil {
		c.addf(field, "cannot be anchored to the whole %s (end a \\Q quote with \\E): %s", what, oneLine(err.Error()))
		return nil
	}
	return re
}

// settings validates the sections that are not apps or callers, filling in
// their defaults.
func (c *checker) settings(cfg *Config) {
	if cfg.GRPC.Listen == "" {
		cfg.GRPC.Listen = DefaultListen
	}
	if t := cfg.GRPC.TLS; t != nil {
		c.certPair("grpc.tls", t.CertFile, t.KeyFile)
		c.tlsFile("grpc.tls.client_ca_file", t.ClientCAFile, false)
	}
	if a := cfg.HTTPAPI; a != nil {
		c.httpAPI(a)
	}
	c.duration("grpc.max_call_duration", &cfg.GRPC.MaxCallDuration, DefaultMaxCallDuration)
	// Below 100ms a deadline could pass between the tap setting it and
	// grpc-go admitting the stream, which then never frees its slot.
	if cfg.GRPC.MaxCallDuration.d < 100*time.Millisecond {
		c.addf("grpc.max_call_duration", "must be at least 100ms")
	}
	switch n := cfg.GRPC.MaxConcurrentCalls; {
	case n == 0:
		cfg.GRPC.MaxConcurrentCalls = DefaultMaxConcurrentCalls
	case n < 0:
		c.addf("grpc.max_concurrent_calls", "must be positive")
	}
	c.duration("shutdown.delay", &cfg.Shutdown.Delay, 0)
	if c.duration("shutdown.timeout", &cfg.Shutdown.Timeout, DefaultShutdownTimeout) == 0 {
		c.addf("shutdown.timeout", "must be above 0s")
	}
	c.duration("reload.interval", &cfg.Reload.Interval, DefaultReloadInterval)
	switch cfg.Log.Level {
	case "":
		cfg.Log.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		c.addf("log.level", "%q is not one of debug, info, warn, error", cfg.Log.Level)
	}
}

// httpAPI validates the http_api section.
func (c *checker) httpAPI(a *HTTPAPIConfig) {
	if a.Listen == "" {
		c.addf("http_api.listen", "is required (host:port) when http_api is set")
	}
	if t := a.TLS; t != nil {
		c.certPair("http_api.tls", t.CertFile, t.KeyFile)
	}
	if a.CORS == nil {
		return
	}
	if len(a.CORS.AllowedOrigins) == 0 {
		c.addf("http_api.cors.allowed_origins", "must list at least one origin (leave cors out to turn it off)")
	}
	for i, o := range a.CORS.AllowedOrigins {
		if !isOrigin(o) {
			c.addf(fmt.Sprintf("http_api.cors.allowed_origins[%d]", i),
				"%q is not an origin: scheme://host or scheme://host:port, http or https, no path and no wildcard", o)
		}
	}
}

// isOrigin reports whether s is a serialized origin as browsers send it
// in the Origin header: http or https, a host, an optional port, nothing
// else.
func isOrigin(s string) bool {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		return false
	}
	if strings.Contains(u.Host, "*") || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return false
	}
	return u.Path == "" && u.Scheme+"://"+u.Host == s && strings.ToLower(s) == s
}
