package tokens

import (
	"encoding/hex"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/confcheck"
)

// Config is the tokens section: scopes and static machine tokens.
type Config struct {
	Scopes map[string][]ScopeRuleConfig `mapstructure:"scopes"`
	Static []StaticConfig               `mapstructure:"static"`
}

// ScopeRuleConfig is one rule of a scope: the methods and path regexes it
// reaches.
type ScopeRuleConfig struct {
	Methods []string `mapstructure:"methods"`
	Paths   []string `mapstructure:"paths"`
}

// StaticConfig is a machine token known only by its SHA-256.
type StaticConfig struct {
	Name      string   `mapstructure:"name"`
	SHA256    string   `mapstructure:"sha256"`
	Scopes    []string `mapstructure:"scopes"`
	ExpiresAt string   `mapstructure:"expires_at"` // RFC 3339; "" never
}

// Scopes are compiled scope definitions by name.
type Scopes map[string]scope

type scope []scopeRule

type scopeRule struct {
	methods map[string]bool // empty: all
	paths   []*regexp.Regexp
}

// Statics are the compiled static tokens by the SHA-256 of the token.
type Statics map[[32]byte]static

// static is a compiled StaticConfig.
type static struct {
	name    string
	scopes  []string
	expires time.Time // zero: never
}

var scopeName = regexp.MustCompile(`^[a-z][a-z0-9:_-]*$`)

// Compile validates the section.
func (c Config) Compile() (Scopes, Statics, confcheck.Problems) {
	var ps confcheck.Problems
	scopes := Scopes{}
	for _, name := range slices.Sorted(maps.Keys(c.Scopes)) {
		if !scopeName.MatchString(name) {
			ps.Addf("scopes."+name, "scope names are lower-case letters, digits, ':', '_' and '-'")
		}
		var sc scope
		for i, r := range c.Scopes[name] {
			key := "scopes." + name + "[" + strconv.Itoa(i) + "]"
			rule := scopeRule{methods: map[string]bool{}}
			for _, m := range r.Methods {
				m = strings.ToUpper(strings.TrimSpace(m))
				if !validMethod(m) {
					ps.Addf(key+".methods", "%q is not an HTTP method", m)
				}
				rule.methods[m] = true
			}
			if len(r.Paths) == 0 {
				ps.Addf(key+".paths", "at least one path regex is required")
			}
			for _, p := range r.Paths {
				re, err := regexp.Compile(p)
				if err != nil {
					ps.Addf(key+".paths", "%q is not a valid regular expression: %v", p, err)
					continue
				}
				rule.paths = append(rule.paths, re)
			}
			sc = append(sc, rule)
		}
		scopes[name] = sc
	}
	statics := Statics{}
	for i, st := range c.Static {
		key := "static[" + strconv.Itoa(i) + "]"
		if st.Name == "" {
			ps.Addf(key+".name", "required")
		}
		var sum [32]byte
		b, err := hex.DecodeString(strings.ToLower(strings.TrimSpace(st.SHA256)))
		if err != nil || len(b) != 32 {
			ps.Addf(key+".sha256", "must be 64 hex characters: the output of `gatehouse hash-token`")
		} else {
			copy(sum[:], b)
		}
		if len(st.Scopes) == 0 {
			ps.Addf(key+".scopes", "at least one scope is required")
		}
		for _, s := range st.Scopes {
			if _, ok := scopes[s]; !ok {
				ps.Addf(key+".scopes", "unknown scope %q (define it under tokens.scopes)", s)
			}
		}
		var exp time.Time
		if st.ExpiresAt != "" {
			if exp, err = time.Parse(time.RFC3339, st.ExpiresAt); err != nil {
				ps.Addf(key+".expires_at", "%q is not an RFC 3339 time such as 2027-01-31T00:00:00Z", st.ExpiresAt)
			}
		}
		if _, dup := statics[sum]; dup {
			ps.Addf(key+".sha256", "the same token is listed twice")
		}
		statics[sum] = static{name: st.Name, scopes: st.Scopes, expires: exp}
	}
	return scopes, statics, ps
}

// Allows reports whether any of the named scopes reaches method and the
// cleaned path.
func (s Scopes) Allows(names []string, method, cleanPath string) bool {
	for _, n := range names {
		for _, r := range s[n] {
			if len(r.methods) > 0 && !r.methods[method] {
				continue
			}
			for _, p := range r.paths {
				if p.MatchString(cleanPath) {
					return true
				}
			}
		}
	}
	return false
}

// Names lists the defined scopes, sorted.
func (s Scopes) Names() []string { return slices.Sorted(maps.Keys(s)) }

// Has reports whether a scope of that name is defined.
func (s Scopes) Has(name string) bool { _, ok := s[name]; return ok }

func validMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return true
	}
	return false
}
