package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/usersig/usersig/signer"
)

// Config is usersigd's configuration file. Key names are part of the
// interface: operators write them, so they never change.
type Config struct {
	GRPC     GRPCConfig     `yaml:"grpc"`
	HTTP     HTTPConfig     `yaml:"http"`
	Shutdown ShutdownConfig `yaml:"shutdown"`
	Log      LogConfig      `yaml:"log"`
	Reload   ReloadConfig   `yaml:"reload"`
	Apps     []AppConfig    `yaml:"apps"`
	Callers  []CallerConfig `yaml:"callers"`
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
}

// RateConfig is a token bucket: PerSecond calls a second on average, with
// bursts of up to Burst.
type RateConfig struct {
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
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

// readTrusted reads a file the server takes orders or keys from: the
// config file or a key file. It must be a regular file that no one but
// its owner may write (group-writable is refused too), owned by root or
// by the server's user; a secret must also not be readable by others.
// The rules are checked on the opened file, so the file read is the file
// checked. A symlink is followed (Kubernetes mounts ConfigMaps and
// Secrets through ..data symlinks): what counts is the file it leads to.
// The directories on the way are not checked; see trustProblems.
func readTrusted(path string, secret bool) ([]byte, []string) {
	// Stat before opening, so that a FIFO is refused rather than waited on.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, []string{pathError(err)}
	}
	if !fi.Mode().IsRegular() {
		return nil, []string{path + " is not a regular file"}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, []string{pathError(err)}
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, []string{pathError(err)}
	}
	if !fi.Mode().IsRegular() {
		return nil, []string{path + " is not a regular file"}
	}
	if problems := trustProblems(path, fi, secret); problems != nil {
		return nil, problems
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, []string{pathError(err)}
	}
	return b, nil
}

// trustProblems says why a file the server trusts must be refused, one
// line per rule it breaks, or nil. Another local user who may write the
// config can add a caller, and one who may write a key file can make
// tickets signed with a key of his own verify. Only the file is checked,
// not the directories that lead to it: a file swapped in through a
// writable directory is owned by whoever swapped it, which the owner rule
// refuses; and Kubernetes shows the directories of ConfigMap and Secret
// volumes as mode 0777 (they are mounted read-only), so a rule on
// directories would refuse every pod.
func trustProblems(path string, fi os.FileInfo, secret bool) []string {
	var out []string
	mode := fi.Mode().Perm()
	if secret && mode&0o004 != 0 {
		out = append(out, fmt.Sprintf("%s is readable by others (mode %04o); run chmod o-rwx on it", path, mode))
	}
	if mode&0o022 != 0 {
		out = append(out, fmt.Sprintf("%s is writable by its group or others (mode %04o); run chmod go-w on it", path, mode))
	}
	if uid, ok := fileOwner(fi); ok && uid != 0 && int64(uid) != int64(os.Geteuid()) {
		out = append(out, fmt.Sprintf("%s is owned by uid %d, neither root nor the server's user (uid %d)", path, uid, os.Geteuid()))
	}
	return out
}

// fileOwner is the uid that owns a file, where the system has one: the
// Uid of syscall.Stat_t on every Unix. It is read by name so that this
// package, which cmd/usersig imports, still builds where there is none.
func fileOwner(fi os.FileInfo) (uint32, bool) {
	v := reflect.ValueOf(fi.Sys())
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return 0, false
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return 0, false
	}
	uid := v.FieldByName("Uid")
	if !uid.IsValid() || !uid.CanUint() {
		return 0, false
	}
	return uint32(uid.Uint()), true
}

// inputDigest is a digest of what a config was loaded from: the config
// file and every key file, path and content. It lets the server tell
// whether the files on disk still say what the config in force says
// (usersig_config_stale) without keeping a copy of any key.
type inputDigest struct{ h hash.Hash }

func newInputDigest() *inputDigest { return &inputDigest{h: sha256.New()} }

func (d *inputDigest) add(path string, content []byte) {
	var n [16]byte
	binary.BigEndian.PutUint64(n[:8], uint64(len(path)))
	binary.BigEndian.PutUint64(n[8:], uint64(len(content)))
	d.h.Write(n[:])
	d.h.Write([]byte(path))
	d.h.Write(content)
}

func (d *inputDigest) sum() (out [sha256.Size]byte) {
	d.h.Sum(out[:0])
	return out
}

// diskDigest digests the config file at path and the key files it names
// as they are now, as LoadConfig digests them; ok is false when they
// cannot be read. Nothing is validated: it only tells whether the files
// changed.
func diskDigest(path string) (sum [sha256.Size]byte, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return sum, false
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return sum, false
	}
	d := newInputDigest()
	d.add(path, b)
	for _, a := range cfg.Apps {
		for _, k := range a.Keys {
			if k.File == "" || k.Env != "" {
				continue
			}
			kb, err := os.ReadFile(k.File)
			if err != nil {
				return sum, false
			}
			d.add(k.File, kb)
		}
	}
	return d.sum(), true
}

// yamlTypeNames maps the config's Go types to the sections they are, for
// yaml's errors.
var yamlTypeNames = strings.NewReplacer(
	"server.Config", "the top level",
	"server.GRPCConfig", "grpc",
	"server.TLSConfig", "grpc.tls",
	"server.HTTPConfig", "http",
	"server.ShutdownConfig", "shutdown",
	"server.LogConfig", "log",
	"server.ReloadConfig", "reload",
	"server.AppConfig", "an app",
	"server.KeyConfig", "a key",
	"server.CallerConfig", "a caller",
	"server.RateConfig", "a caller's rate",
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

var (
	keyIDPattern      = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	callerNamePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

// Compile validates cfg, reads the secrets it names and builds the policy
// the server enforces. Every problem is reported, one line each.
func Compile(cfg *Config) (*Loaded, error) { return compile(cfg, newInputDigest()) }

// compile is Compile, adding the key files it reads to d.
func compile(cfg *Config, d *inputDigest) (*Loaded, error) {
	c := checker{digest: d}
	if cfg.GRPC.Listen == "" {
		cfg.GRPC.Listen = DefaultListen
	}
	if t := cfg.GRPC.TLS; t != nil {
		if t.CertFile == "" || t.KeyFile == "" {
			c.addf("grpc.tls", "cert_file and key_file are both required")
		}
		c.tlsFile("grpc.tls.cert_file", t.CertFile, false)
		c.tlsFile("grpc.tls.key_file", t.KeyFile, true)
		c.tlsFile("grpc.tls.client_ca_file", t.ClientCAFile, false)
	}
	c.duration("grpc.max_call_duration", &cfg.GRPC.MaxCallDuration, DefaultMaxCallDuration)
	if cfg.GRPC.MaxCallDuration.d < time.Millisecond {
		c.addf("grpc.max_call_duration", "must be at least 1ms")
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

	p := &policy{apps: map[uint64]*app{}}
	// Apps named in the config, valid or not: callers that name an app
	// with problems of its own need not be reported too.
	declared := map[uint64]bool{}
	for _, ac := range cfg.Apps {
		declared[ac.SDKAppID] = true
	}
	if len(cfg.Apps) == 0 {
		c.addf("apps", "at least one app is required")
	}
	for i := range cfg.Apps {
		if a := c.app(fmt.Sprintf("apps[%d]", i), &cfg.Apps[i]); a != nil {
			if _, dup := p.apps[a.id]; dup {
				c.addf(fmt.Sprintf("apps[%d].sdk_app_id", i), "%d is configured twice", a.id)
				continue
			}
			p.apps[a.id] = a
			p.appList = append(p.appList, a)
		}
	}
	sort.Slice(p.appList, func(i, j int) bool { return p.appList[i].id < p.appList[j].id })

	if len(cfg.Callers) == 0 {
		c.addf("callers", "at least one caller is required")
	}
	names, tokens, certNames := map[string]bool{}, map[[sha256.Size]byte]string{}, map[string]string{}
	mtls := cfg.GRPC.TLS != nil && cfg.GRPC.TLS.ClientCAFile != ""
	for i := range cfg.Callers {
		field := fmt.Sprintf("callers[%d]", i)
		cl := c.caller(field, &cfg.Callers[i], p, declared, mtls)
		if cl == nil {
			continue
		}
		if names[cl.name] {
			c.addf(field+".name", "%q is used by another caller", cl.name)
		}
		names[cl.name] = true
		if cl.hasToken {
			if other, dup := tokens[cl.tokenHash]; dup {
				c.addf(field+".token_sha256", "is also the token of caller %q", other)
			}
			tokens[cl.tokenHash] = cl.name
		}
		// A certificate name picks one caller, or a certificate could be
		// read as either.
		for j, n := range cl.certNames {
			if other, dup := certNames[n]; dup && other != cl.name {
				c.addf(fmt.Sprintf("%s.client_cert_names[%d]", field, j), "%q is also listed by caller %q", n, other)
				continue
			}
			certNames[n] = cl.name
		}
		p.callers = append(p.callers, cl)
	}
	if len(c.problems) > 0 {
		return nil, &ConfigError{Problems: c.problems}
	}
	p.inputs = c.digest.sum()
	return &Loaded{Config: cfg, Warnings: c.warnings, policy: p}, nil
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

func (c *checker) app(field string, ac *AppConfig) *app {
	before := len(c.problems)
	if err := signer.ValidateSDKAppID(ac.SDKAppID); err != nil {
		c.addf(field+".sdk_app_id", "%s", signer.RuleSDKAppID)
	}
	def := c.ttl(field+".default_ttl", &ac.DefaultTTL, DefaultTTL)
	maxTTL := c.ttl(field+".max_ttl", &ac.MaxTTL, def)
	if def > maxTTL {
		c.addf(field+".default_ttl", "%s is above max_ttl %s", human(def), human(maxTTL))
	}
	a := &app{id: ac.SDKAppID, defaultTTL: def, maxTTL: maxTTL}
	if len(ac.Keys) == 0 {
		c.addf(field+".keys", "at least one key is required")
	}
	ids := map[string]bool{}
	for j := range ac.Keys {
		kf := fmt.Sprintf("%s.keys[%d]", field, j)
		kc := &ac.Keys[j]
		if !keyIDPattern.MatchString(kc.ID) {
			c.addf(kf+".id", "must be 1 to 64 of A-Z a-z 0-9 _ . -")
		} else if ids[kc.ID] {
			c.addf(kf+".id", "%q is used by another key of this app", kc.ID)
		}
		ids[kc.ID] = true
		secret := c.secret(kf, kc)
		if secret == nil {
			continue
		}
		if len(secret) < shortKeyLen {
			c.warnings = append(c.warnings, fmt.Sprintf("%s: key %q is %d bytes; Tencent's keys are 64, and a key under %d bytes is weak", kf, kc.ID, len(secret), shortKeyLen))
		}
		k, err := signer.NewKey(secret)
		if err != nil {
			c.addf(kf, "the key is empty")
			continue
		}
		a.keys = append(a.keys, k)
		a.keyIDs = append(a.keyIDs, kc.ID)
	}
	if len(c.problems) > before {
		return nil
	}
	return a
}

// secret reads one key from its file or environment variable. A key file
// readable by others, writable by anyone but its owner, or owned by
// neither root nor the server's user is refused; group-readable is fine
// (a Kubernetes Secret mounted 0440 with an fsGroup).
func (c *checker) secret(field string, kc *KeyConfig) []byte {
	switch {
	case kc.secret != nil:
		return kc.secret
	case kc.File != "" && kc.Env != "":
		c.addf(field, "set file or env, not both")
	case kc.File != "":
		raw, problems := readTrusted(kc.File, true)
		for _, p := range problems {
			c.addf(field+".file", "%s", p)
		}
		if problems != nil {
			return nil
		}
		c.digest.add(kc.File, raw)
		// A key file usually ends in a newline; a key never does.
		b := bytes.TrimSpace(raw)
		if len(b) == 0 {
			c.addf(field+".file", "%s is empty", kc.File)
			return nil
		}
		return b
	case kc.Env != "":
		v := strings.TrimSpace(os.Getenv(kc.Env))
		if v == "" {
			c.addf(field+".env", "$%s is not set or is empty", kc.Env)
			return nil
		}
		return []byte(v)
	default:
		c.addf(field, "set file or env to where the key is")
	}
	return nil
}

func pathError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Path + ": " + pe.Err.Error()
	}
	return err.Error()
}

// userIDPattern compiles a caller's user_id_pattern so that it must match
// the whole user id. The pattern is compiled on its own first: wrapped in
// ^(?: and )$ at once, an unbalanced ")" in it would close the wrapper's
// group and let the rest match anywhere (u_[0-9]+)|(x matches u_1zzz).
// A pattern that compiles on its own is one group, so wrapping it anchors
// all of it; only an unterminated \Q then swallows the wrapper's end,
// which fails to compile.
func (c *checker) userIDPattern(field, pattern string) *regexp.Regexp {
	if _, err := regexp.Compile(pattern); err != nil {
		c.addf(field, "%s", oneLine(err.Error()))
		return nil
	}
	re, err := regexp.Compile(`^(?:` + pattern + `)$`)
	if err != nil {
		c.addf(field, "cannot be anchored to the whole user id (end a \\Q quote with \\E): %s", oneLine(err.Error()))
		return nil
	}
	return re
}

func (c *checker) caller(field string, cc *CallerConfig, p *policy, declared map[uint64]bool, mtls bool) *caller {
	before := len(c.problems)
	cl := &caller{name: cc.Name}
	if !callerNamePattern.MatchString(cc.Name) {
		c.addf(field+".name", "must be 1 to 64 of A-Z a-z 0-9 _ . -")
	}
	if cc.TokenSHA256 != "" {
		h, err := hex.DecodeString(cc.TokenSHA256)
		if err != nil || len(h) != sha256.Size {
			c.addf(field+".token_sha256", "must be 64 hex digits: the SHA-256 of the token, e.g. printf %%s \"$TOKEN\" | sha256sum")
		} else {
			copy(cl.tokenHash[:], h)
			cl.hasToken = true
		}
	}
	if len(cc.ClientCertNames) > 0 && !mtls {
		c.addf(field+".client_cert_names", "needs mutual TLS: set grpc.tls.client_ca_file")
	}
	for j, n := range cc.ClientCertNames {
		if n == "" {
			c.addf(fmt.Sprintf("%s.client_cert_names[%d]", field, j), "must not be empty")
		}
	}
	cl.certNames = cc.ClientCertNames
	if cc.TokenSHA256 == "" && len(cc.ClientCertNames) == 0 {
		c.addf(field, "set token_sha256 or client_cert_names, or the caller can never call")
	}
	if len(cc.Apps) == 0 {
		c.addf(field+".apps", `list the SDKAppIDs it may use, or "*"`)
	}
	cl.apps = map[uint64]bool{}
	for j, s := range cc.Apps {
		if s == "*" {
			cl.allApps = true
			continue
		}
		id, err := strconv.ParseUint(s, 10, 64)
		switch {
		case err != nil:
			c.addf(fmt.Sprintf("%s.apps[%d]", field, j), `%q is neither an SDKAppID nor "*"`, s)
		case !declared[id]:
			c.addf(fmt.Sprintf("%s.apps[%d]", field, j), "%d is not a configured app", id)
		default:
			cl.apps[id] = true
		}
	}
	if len(cc.Methods) == 0 {
		c.addf(field+".methods", "list the methods it may call: %s", methodNames("and"))
	}
	for j, name := range cc.Methods {
		m, ok := methodByName[name]
		if !ok {
			c.addf(fmt.Sprintf("%s.methods[%d]", field, j), "%q is not %s", name, methodNames("or"))
		}
		cl.methods |= m.bit
	}
	cl.maxTTL = c.ttl(field+".max_ttl", &cc.MaxTTL, 0)
	if cl.maxTTL > 0 {
		for _, a := range p.appList {
			if (cl.allApps || cl.apps[a.id]) && cl.maxTTL > a.maxTTL {
				c.addf(field+".max_ttl", "%s is above app %d's max_ttl %s", human(cl.maxTTL), a.id, human(a.maxTTL))
			}
		}
	}
	if cc.UserIDPattern != "" {
		cl.userIDPattern = c.userIDPattern(field+".user_id_pattern", cc.UserIDPattern)
	}
	if r := cc.Rate; r != nil {
		switch {
		case r.PerSecond <= 0 || math.IsInf(r.PerSecond, 0) || math.IsNaN(r.PerSecond):
			c.addf(field+".rate.per_second", "must be above 0")
		case r.Burst < 0:
			c.addf(field+".rate.burst", "must not be negative")
		default:
			burst := r.Burst
			if burst == 0 {
				burst = int(math.Ceil(r.PerSecond))
			}
			cl.rate = &rateSpec{perSecond: r.PerSecond, burst: burst}
		}
	}
	if len(c.problems) > before {
		return nil
	}
	return cl
}
