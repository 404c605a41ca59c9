package server

// The config file: its schema, how it is read (LoadConfig: read the file
// by the rules of files.go, ParseConfig, then Compile) and its errors.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is usersigd's configuration file. Key names are part of the
// interface: operators write them, so they never change.
type Config struct {
	GRPC     GRPCConfig     `yaml:"grpc"`
	HTTP     HTTPConfig     `yaml:"http"`
	HTTPAPI  *HTTPAPIConfig `yaml:"http_api"`
	Shutdown ShutdownConfig `yaml:"shutdown"`
	Log      LogConfig      `yaml:"log"`
	Reload   ReloadConfig   `yaml:"reload"`
	// RateLimits is where rates are kept: this process (default) or a
	// Redis the replicas share (sharedrate.go). It applies at start.
	RateLimits RateLimitsConfig `yaml:"rate_limits"`
	Apps       []AppConfig      `yaml:"apps"`
	Callers    []CallerConfig   `yaml:"callers"`
}

// GRPCConfig is the gRPC listener.
type GRPCConfig struct {
	// Listen is host:port; default 127.0.0.1:50051.
	Listen string     `yaml:"listen"`
	TLS    *TLSConfig `yaml:"tls"`
	// MaxCallDuration caps every call's deadline; default 5s.
	MaxCallDuration Duration `yaml:"max_call_duration"`
	// MaxConcurrentCalls bounds the calls in flight; above it calls fail
	// fast with RESOURCE_EXHAUSTED. Default 4096.
	MaxConcurrentCalls int `yaml:"max_concurrent_calls"`
}

// TLSConfig turns on TLS; ClientCAFile turns on mutual TLS.
type TLSConfig struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// HTTPConfig is the HTTP listener for /metrics, /healthz and /readyz; no
// listener when Listen is empty.
type HTTPConfig struct {
	Listen string `yaml:"listen"`
	// Pprof serves net/http/pprof under /debug/pprof/ (off by default;
	// keep the listener private when it is on).
	Pprof bool `yaml:"pprof"`
}

// HTTPAPIConfig is the HTTP/JSON API (httpapi.go): UserSigService's
// methods as POST routes, under the same admission, authentication and
// policy as gRPC calls. No listener when the section is absent.
type HTTPAPIConfig struct {
	// Listen is host:port; required.
	Listen string `yaml:"listen"`
	// TLS serves HTTPS. There is no client certificate: callers are
	// known over HTTP by their bearer tokens only.
	TLS *HTTPAPITLSConfig `yaml:"tls"`
	// CORS lets browser apps on the listed origins call the API; off
	// when absent.
	CORS *CORSConfig `yaml:"cors"`
}

// HTTPAPITLSConfig is the HTTP API's certificate, reloaded when its files
// change as the gRPC listener's is.
type HTTPAPITLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// CORSConfig lists the origins ("https://app.example.com", scheme, host
// and port exactly) whose pages may call the HTTP API.
type CORSConfig struct {
	AllowedOrigins []string `yaml:"allowed_origins"`
}

// ShutdownConfig is how the server drains on SIGTERM.
type ShutdownConfig struct {
	// Delay is how long the server keeps serving after it reports not
	// ready, so load balancers notice; default 0s.
	Delay Duration `yaml:"delay"`
	// Timeout bounds how long in-flight calls may take to finish; default 20s.
	Timeout Duration `yaml:"timeout"`
}

// LogConfig sets the log level: debug, info, warn or error.
type LogConfig struct {
	Level string `yaml:"level"`
}

// ReloadConfig sets how often the config file and key files are checked
// for changes; default 2s, 0s turns the check off (SIGHUP still reloads).
type ReloadConfig struct {
	Interval Duration `yaml:"interval"`
}

// AppConfig is one SDKAppID and its keys.
type AppConfig struct {
	SDKAppID   uint64      `yaml:"sdk_app_id"`
	DefaultTTL Duration    `yaml:"default_ttl"`
	MaxTTL     Duration    `yaml:"max_ttl"`
	Keys       []KeyConfig `yaml:"keys"`
}

// KeyConfig names where one secret key is: a file or an environment
// variable. The config never holds a key itself.
type KeyConfig struct {
	ID   string `yaml:"id"`
	File string `yaml:"file"`
	Env  string `yaml:"env"`

	secret []byte // set only by DevConfig
}

// CallerConfig is one caller and what it may do.
type CallerConfig struct {
	Name string `yaml:"name"`
	// TokenSHA256 is the hex SHA-256 of the caller's bearer token.
	TokenSHA256 string `yaml:"token_sha256"`
	// ClientCertNames name the caller by a verified client certificate's
	// DNS or URI SAN, or its subject common name when it has no SAN at
	// all (mutual TLS only). A name belongs to one caller. A caller that
	// lists names is bound to them: its token is accepted only over a
	// certificate that names it.
	ClientCertNames []string `yaml:"client_cert_names"`
	// Apps are SDKAppIDs, or "*" for every configured app.
	Apps []string `yaml:"apps"`
	// Methods are UserSigService method names (methods.go).
	Methods       []string    `yaml:"methods"`
	MaxTTL        Duration    `yaml:"max_ttl"`
	UserIDPattern string      `yaml:"user_id_pattern"`
	Rate          *RateConfig `yaml:"rate"`
	// RatePerUser is a token bucket per user id the caller calls for.
	RatePerUser *UserRateConfig `yaml:"rate_per_user"`
	// OIDC makes the caller the users of an OpenID Connect issuer: its
	// bearer tokens are their ID tokens, and a call's user id is the
	// token's. Such a caller has no token_sha256 or client_cert_names.
	OIDC *OIDCConfig `yaml:"oidc"`
	// PrivateMapKey narrows what the caller's PrivateMapKeys may grant.
	PrivateMapKey *PrivateMapKeyConfig `yaml:"private_map_key"`
}

// PrivateMapKeyConfig is what a caller's PrivateMapKeys may grant (pmk.go).
// Each field is optional; left out, it allows everything.
type PrivateMapKeyConfig struct {
	// Privileges are the bits it may grant, by name: create_room,
	// enter_room, send_audio, receive_audio, send_video, receive_video,
	// send_substream, receive_substream.
	Privileges []string `yaml:"privileges"`
	// RoomIDs are numeric rooms: "5000" or ranges "1000-1999".
	RoomIDs []string `yaml:"room_ids"`
	// RoomStrPattern is an RE2 pattern the string room must match whole.
	// A caller with only one of RoomIDs and RoomStrPattern may only use
	// that kind of room.
	RoomStrPattern string `yaml:"room_str_pattern"`
	// MaxTTL caps its PrivateMapKeys' lifetime, below the caller's and
	// the apps' max_ttl.
	MaxTTL Duration `yaml:"max_ttl"`
}

// OIDCConfig is the OpenID Connect issuer an OIDC caller's ID tokens come
// from (oidc.go).
type OIDCConfig struct {
	// Issuer is the tokens' exact iss; discovery is at Issuer +
	// /.well-known/openid-configuration. https, or http on loopback.
	Issuer string `yaml:"issuer"`
	// Audience must be one of the tokens' aud: the app's client id.
	Audience string `yaml:"audience"`
	// UserIDClaim is the claim that is the Tencent UserID; default sub.
	UserIDClaim string `yaml:"user_id_claim"`
	// RequiredClaims are values the tokens must carry, compared as JSON
	// values (the string "true" is not true); for a claim that is an
	// array, the value must be one of its elements.
	RequiredClaims map[string]any `yaml:"required_claims"`
	// CAFile is a PEM bundle: the issuer's certificate must chain to it
	// instead of the system's roots.
	CAFile string `yaml:"ca_file"`
	// MaxCallsPerUser bounds each user's calls in flight; default 8. A
	// backend calling with its own workload identity's ID token (one
	// subject, many calls at once) may need more.
	MaxCallsPerUser int `yaml:"max_calls_per_user"`
}

// Duration is a duration written as Go writes them (720h, 90s). It keeps
// its text until validation, so errors can quote it.
type Duration struct {
	text string
	d    time.Duration
}

// UnmarshalYAML keeps the text of the value.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as 720h or 90s", n.Line)
	}
	d.text = n.Value
	return nil
}

// Dur returns a parsed duration.
func Dur(d time.Duration) Duration { return Duration{text: d.String(), d: d} }

// Defaults and limits.
const (
	DefaultListen             = "127.0.0.1:50051"
	DefaultTTL                = 180 * 24 * time.Hour // Tencent's console default
	MaxTTL                    = 50 * 365 * 24 * time.Hour
	DefaultShutdownTimeout    = 20 * time.Second
	DefaultReloadInterval     = 2 * time.Second
	DefaultMaxCallDuration    = 5 * time.Second
	DefaultMaxConcurrentCalls = 1024
	shortKeyLen               = 32
)

// ConfigError lists every problem found in a config, one line each.
type ConfigError struct {
	Path     string
	Problems []string
}

func (e *ConfigError) Error() string {
	prefix := "config: "
	if e.Path != "" {
		prefix = "config " + e.Path + ": "
	}
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = prefix + p
	}
	return strings.Join(lines, "\n")
}

// Loaded is a validated config with its secrets read, ready to serve.
type Loaded struct {
	Config   *Config
	Hash     string   // SHA-256 of the config file, first 12 hex digits
	Warnings []string // problems that do not stop the server
	policy   *policy
	shared   *sharedRateSettings // nil unless rate_limits.backend is redis
}

// LoadConfig reads, validates and compiles the config file at path,
// reading the key files it names. The error is a *ConfigError listing
// every problem; no message holds a secret. A config file that anyone but
// its owner may write, or that is owned by neither root nor the server's
// user, is refused unread, as such key files are.
func LoadConfig(path string) (*Loaded, error) {
	b, problems := readTrusted(path, false)
	if problems != nil {
		return nil, &ConfigError{Path: path, Problems: problems}
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return nil, &ConfigError{Path: path, Problems: strings.Split(err.Error(), "\n")}
	}
	d := newInputDigest()
	d.add(path, b)
	l, err := compile(cfg, d)
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			ce.Path = path
		}
		return nil, err
	}
	sum := sha256.Sum256(b)
	l.Hash = hex.EncodeToString(sum[:6])
	return l, nil
}

// yamlTypeNames maps the config's Go types to the sections they are, for
// yaml's errors.
var yamlTypeNames = strings.NewReplacer(
	"server.Config", "the top level",
	"server.GRPCConfig", "grpc",
	"server.TLSConfig", "grpc.tls",
	"server.HTTPConfig", "http",
	"server.HTTPAPIConfig", "http_api",
	"server.HTTPAPITLSConfig", "http_api.tls",
	"server.CORSConfig", "http_api.cors",
	"server.ShutdownConfig", "shutdown",
	"server.LogConfig", "log",
	"server.ReloadConfig", "reload",
	"server.AppConfig", "an app",
	"server.KeyConfig", "a key",
	"server.CallerConfig", "a caller",
	"server.RateConfig", "a caller's rate",
	"server.UserRateConfig", "a caller's rate_per_user",
	"server.OIDCConfig", "a caller's oidc",
	"server.PrivateMapKeyConfig", "a caller's private_map_key",
	"server.RateLimitsConfig", "rate_limits",
	"server.RedisConfig", "rate_limits.redis",
	"server.RedisTLSConfig", "rate_limits.redis.tls",
)

var yamlUnknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type (.+)$`)

// ParseConfig decodes a config strictly: an unknown key is an error.
func ParseConfig(b []byte) (*Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file is empty")
		}
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, errors.New(oneLine(strings.TrimPrefix(err.Error(), "yaml: ")))
		}
		problems := make([]string, len(te.Errors))
		for i, e := range te.Errors {
			if m := yamlUnknownField.FindStringSubmatch(e); m != nil {
				e = fmt.Sprintf("line %s: unknown key %q in %s", m[1], m[2], yamlTypeNames.Replace(m[3]))
			}
			problems[i] = oneLine(e)
		}
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	return &cfg, nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// clone is a copy of cfg that shares nothing Compile writes to.
func (cfg *Config) clone() *Config {
	out := *cfg
	if cfg.GRPC.TLS != nil {
		t := *cfg.GRPC.TLS
		out.GRPC.TLS = &t
	}
	if a := cfg.HTTPAPI; a != nil {
		c := *a
		if a.TLS != nil {
			t := *a.TLS
			c.TLS = &t
		}
		if a.CORS != nil {
			c.CORS = &CORSConfig{AllowedOrigins: slices.Clone(a.CORS.AllowedOrigins)}
		}
		out.HTTPAPI = &c
	}
	if r := cfg.RateLimits.Redis; r != nil {
		rc := *r
		if r.TLS != nil {
			t := *r.TLS
			rc.TLS = &t
		}
		out.RateLimits.Redis = &rc
	}
	out.Apps = slices.Clone(cfg.Apps)
	for i := range out.Apps {
		out.Apps[i].Keys = slices.Clone(out.Apps[i].Keys)
	}
	out.Callers = slices.Clone(cfg.Callers)
	for i := range out.Callers {
		cc := &out.Callers[i]
		cc.ClientCertNames, cc.Apps, cc.Methods = slices.Clone(cc.ClientCertNames), slices.Clone(cc.Apps), slices.Clone(cc.Methods)
		if cc.Rate != nil {
			r := *cc.Rate
			cc.Rate = &r
		}
		if cc.RatePerUser != nil {
			r := *cc.RatePerUser
			cc.RatePerUser = &r
		}
		if cc.OIDC != nil {
			o := *cc.OIDC
			o.RequiredClaims = maps.Clone(o.RequiredClaims)
			cc.OIDC = &o
		}
		if cc.PrivateMapKey != nil {
			pm := *cc.PrivateMapKey
			pm.Privileges, pm.RoomIDs = slices.Clone(pm.Privileges), slices.Clone(pm.RoomIDs)
			cc.PrivateMapKey = &pm
		}
	}
	return &out
}
