package workload

import (
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/confcheck"
)

// IssuerConfig is one auth.jwt_issuers.NAME entry.
type IssuerConfig struct {
	Issuer      string            `mapstructure:"issuer"`
	IssuerURL   string            `mapstructure:"issuer_url"`
	JWKSURL     string            `mapstructure:"jwks_url"`
	JWKSFile    string            `mapstructure:"jwks_file"`
	Audiences   []string          `mapstructure:"audiences"`
	Algorithms  []string          `mapstructure:"algorithms"`
	Claims      map[string]string `mapstructure:"claims"`
	UserClaim   string            `mapstructure:"user_claim"`
	EmailClaim  string            `mapstructure:"email_claim"`
	GroupsClaim string            `mapstructure:"groups_claim"`
	MaxLifetime time.Duration     `mapstructure:"max_lifetime"`
	Scopes      []string          `mapstructure:"scopes"`
}

// Fields are the keys of an auth.jwt_issuers.NAME entry, for mapping
// environment variables such as GATEHOUSE_AUTH_JWT_ISSUERS_K8S_ISSUER.
var Fields = []string{
	"issuer", "issuer_url", "jwks_url", "jwks_file", "audiences", "algorithms",
	"claims", "user_claim", "email_claim", "groups_claim", "max_lifetime", "scopes",
}

// Defaults as documented in config.example.yaml.
const (
	DefaultUserClaim   = "sub"
	DefaultMaxLifetime = 24 * time.Hour
)

// DefaultAlgorithms are used when an entry lists none: what Kubernetes
// (RS256) and most cloud issuers (RS256, ES256) sign with.
var DefaultAlgorithms = []string{"RS256", "ES256"}

// asymmetric are the algorithms an entry may list. Symmetric (HS*) and
// "none" are left out on purpose: a shared secret cannot come from a
// public key set, and accepting HS256 is the classic key-confusion hole
// (the public RSA key used as an HMAC secret).
var asymmetric = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"EdDSA": true,
}

var issuerName = regexp.MustCompile(`^[a-z][a-z0-9]*$`)

// Defaults fills the documented defaults. With no key source at all,
// keys are discovered at the issuer itself, which is what Kubernetes and
// GitHub Actions publish.
func (c *IssuerConfig) Defaults() {
	if len(c.Algorithms) == 0 {
		c.Algorithms = append([]string(nil), DefaultAlgorithms...)
	}
	if c.UserClaim == "" {
		c.UserClaim = DefaultUserClaim
	}
	if c.MaxLifetime == 0 {
		c.MaxLifetime = DefaultMaxLifetime
	}
	if c.IssuerURL == "" && c.JWKSURL == "" && c.JWKSFile == "" {
		c.IssuerURL = c.Issuer
	}
}

// Validate checks one entry named name. Problems are keyed relative to
// the entry ("" is the entry itself). knownScopes reports whether a
// tokens.scopes name exists; nil skips that check. Validate works before
// or after Defaults; it cannot see other entries, so duplicate issuers
// are found by ValidateAll.
func (c IssuerConfig) Validate(name string, knownScopes func(string) bool) confcheck.Problems {
	var ps confcheck.Problems
	if !issuerName.MatchString(name) {
		ps.Addf("", "issuer names must be lower-case letters and digits, starting with a letter")
	}
	if c.Issuer == "" {
		ps.Addf("issuer", "required: the iss the tokens carry")
	} else if strings.TrimSpace(c.Issuer) != c.Issuer {
		ps.Addf("issuer", "must not have surrounding spaces: it is compared with the token's iss exactly")
	}

	sources := 0
	for _, s := range []struct{ key, val string }{
		{"issuer_url", c.IssuerURL}, {"jwks_url", c.JWKSURL}, {"jwks_file", c.JWKSFile},
	} {
		if s.val == "" {
			continue
		}
		if sources++; sources > 1 {
			ps.Addf(s.key, "set only one of issuer_url, jwks_url and jwks_file")
		}
	}
	// Discovery at the issuer itself (what Defaults sets up when no key
	// source is given) is reported on issuer, where the fix is.
	if c.JWKSURL == "" && c.JWKSFile == "" && (c.IssuerURL == "" || c.IssuerURL == c.Issuer) {
		if err := httpURL(c.Issuer, false); c.Issuer != "" && err != nil {
			ps.Addf("issuer", "%v; keys are discovered at the issuer unless issuer_url, jwks_url or jwks_file is set", err)
		}
	} else if c.IssuerURL != "" {
		if err := httpURL(c.IssuerURL, false); err != nil {
			ps.Addf("issuer_url", "%v", err)
		}
	}
	if c.JWKSURL != "" {
		// A key set URL may carry a query (some issuers version it so).
		if err := httpURL(c.JWKSURL, true); err != nil {
			ps.Addf("jwks_url", "%v", err)
		}
	}

	if len(c.Audiences) == 0 {
		ps.Addf("audiences", "at least one audience is required: a token must be meant for this proxy")
	}
	for _, a := range c.Audiences {
		if strings.TrimSpace(a) == "" {
			ps.Addf("audiences", "audiences must not be empty strings")
			break
		}
	}
	for _, a := range c.Algorithms {
		if !asymmetric[a] {
			ps.Addf("algorithms", "%q is not allowed: asymmetric only (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)", a)
		}
	}
	for _, claim := range slices.Sorted(maps.Keys(c.Claims)) {
		if claim == "" {
			ps.Addf("claims", "claim names must not be empty")
			continue
		}
		if err := checkGlob(c.Claims[claim]); err != nil {
			ps.Addf("claims."+claim, "%v", err)
		}
	}
	if len(c.Claims) == 0 && sharedIssuers[strings.TrimSuffix(c.Issuer, "/")] {
		// Anyone can get a token from these issuers, for any audience
		// they choose: only claim rules say whose workloads may pass.
		ps.Addf("claims", "required for %s, which issues tokens to anyone's workloads (with any audience they ask for): "+
			"add rules such as repository_owner or project_path", c.Issuer)
	}
	if c.MaxLifetime < 0 {
		ps.Addf("max_lifetime", "must be positive")
	}
	for _, s := range c.Scopes {
		if knownScopes != nil && !knownScopes(s) {
			ps.Addf("scopes", "unknown scope %q (define it under tokens.scopes)", s)
		}
	}
	return ps
}

// sharedIssuers are public issuers whose tokens any of their users can
// obtain for workloads of their own.
var sharedIssuers = map[string]bool{
	"https://token.actions.githubusercontent.com": true,
	"https://gitlab.com":                          true,
	"https://accounts.google.com":                 true,
	"https://app.terraform.io":                    true,
	"https://oidc.circleci.com":                   true,
}

// ValidateAll fills the defaults of every entry in place and validates
// them. Problems are keyed relative to auth.jwt_issuers ("k8s.issuer").
// Two entries with the same issuer are a problem: a token must match
// exactly one entry, or which rules apply to it would be a guess.
func ValidateAll(issuers map[string]IssuerConfig, knownScopes func(string) bool) confcheck.Problems {
	var ps confcheck.Problems
	byIssuer := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(issuers)) {
		c := issuers[name]
		c.Defaults()
		ps.Nest(name, c.Validate(name, knownScopes))
		if other, dup := byIssuer[c.Issuer]; dup && c.Issuer != "" {
			ps.Addf(confcheck.Join(name, "issuer"), "the same issuer as jwt_issuers.%s; each issuer may be listed once", other)
		} else {
			byIssuer[c.Issuer] = name
		}
		issuers[name] = c
	}
	return ps
}

// httpURL checks an absolute http(s) URL. Discovery URLs get a path
// appended, so a query there would end up in the wrong place.
func httpURL(raw string, allowQuery bool) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	if (u.RawQuery != "" && !allowQuery) || u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("%q must not have a query or fragment", raw)
	}
	return nil
}
