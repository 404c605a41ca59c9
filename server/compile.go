package server

// Compile: a validated config, with its keys read, becomes the policy the
// server enforces (policy.go).

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/usersig/usersig/signer"
)

// Compile validates cfg, reads the secrets it names and builds the policy
// the server enforces. Every problem is reported, one line each. cfg is
// not changed: Loaded.Config is a copy with the defaults filled in.
func Compile(cfg *Config) (*Loaded, error) { return compile(cfg, newInputDigest()) }

// compile is Compile, adding the key files it reads to d.
func compile(cfg *Config, d *inputDigest) (*Loaded, error) {
	cfg = cfg.clone()
	c := checker{digest: d}
	c.settings(cfg)
	shared := c.rateLimits(&cfg.RateLimits)

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
	issuerAudiences := map[[2]string]string{}
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
		if o := cl.oidc; o != nil {
			// A token must pick one caller.
			k := [2]string{o.issuerURL, o.audience}
			if other, dup := issuerAudiences[k]; dup {
				c.addf(field+".oidc", "issuer and audience are also caller %q's", other)
			}
			issuerAudiences[k] = cl.name
			p.oidcCallers = append(p.oidcCallers, cl)
		}
		p.callers = append(p.callers, cl)
	}
	if len(c.problems) > 0 {
		return nil, &ConfigError{Problems: c.problems}
	}
	p.inputs = c.digest.sum()
	return &Loaded{Config: cfg, Warnings: c.warnings, policy: p, shared: shared}, nil
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
	switch {
	case cc.OIDC != nil && (cc.TokenSHA256 != "" || len(cc.ClientCertNames) > 0):
		c.addf(field+".oidc", "an OIDC caller is known by its ID tokens: drop token_sha256 and client_cert_names")
	case cc.OIDC != nil:
		cl.oidc = c.oidcCaller(field+".oidc", cc.OIDC)
	case cc.TokenSHA256 == "" && len(cc.ClientCertNames) == 0:
		c.addf(field, "set token_sha256, client_cert_names or oidc, or the caller can never call")
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
		cl.userIDPattern = c.anchoredPattern(field+".user_id_pattern", "user id", cc.UserIDPattern)
	}
	cl.rate = c.rate(field+".rate", cc.Rate)
	cl.userRate = c.userRate(field+".rate_per_user", cc.RatePerUser)
	cl.pmk = c.privateMapKey(field+".private_map_key", cc.PrivateMapKey, cl, p)
	if len(c.problems) > before {
		return nil
	}
	return cl
}
