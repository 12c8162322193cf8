package filters

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/internal/confcheck"
)

// PolicyConfig is one entry of the top-level policies list: a route that
// needs more than sign-in.
type PolicyConfig struct {
	Path                 string   `mapstructure:"path"`
	Methods              []string `mapstructure:"methods"`
	AllowedDomains       []string `mapstructure:"allowed_domains"`
	AllowedEmails        []string `mapstructure:"allowed_emails"`
	AllowedOrganizations []string `mapstructure:"allowed_organizations"`
	AllowedTeams         []string `mapstructure:"allowed_teams"`
	AllowedUsers         []string `mapstructure:"allowed_users"`
	AllowedGroups        []string `mapstructure:"allowed_groups"`
}

// Policy is a compiled PolicyConfig.
type Policy struct {
	path    *regexp.Regexp
	methods map[string]bool // empty: all
	rule    Rule
}

// Policies are checked in order; the first whose path and method match
// decides.
type Policies []Policy

// CompilePolicies validates and compiles the policies section.
func CompilePolicies(cfgs []PolicyConfig) (Policies, confcheck.Problems) {
	var ps confcheck.Problems
	var out Policies
	for i, c := range cfgs {
		key := "[" + strconv.Itoa(i) + "]"
		var sub confcheck.Problems
		re, err := regexp.Compile(c.Path)
		switch {
		case c.Path == "":
			sub.Addf("path", "required")
		case err != nil:
			sub.Addf("path", "not a valid regular expression: %v", err)
		}
		methods := map[string]bool{}
		for _, m := range c.Methods {
			m = strings.ToUpper(strings.TrimSpace(m))
			if !validMethod(m) {
				sub.Addf("methods", "%q is not an HTTP method", m)
			}
			methods[m] = true
		}
		checkDomains(&sub, "allowed_domains", c.AllowedDomains)
		checkEmails(&sub, "allowed_emails", c.AllowedEmails)
		CheckTeams(&sub, "allowed_teams", c.AllowedTeams)
		rule := NewRule(Lists{
			Domains: c.AllowedDomains, Emails: c.AllowedEmails,
			Organizations: c.AllowedOrganizations, Teams: c.AllowedTeams,
			Users: c.AllowedUsers, Groups: c.AllowedGroups,
		})
		if rule.Empty() {
			sub.Addf("", "a policy needs at least one allowed_* list")
		}
		ps.Nest(key, sub)
		if len(sub) == 0 {
			out = append(out, Policy{path: re, methods: methods, rule: rule})
		}
	}
	return out, ps
}

// Check applies the first policy matching method and the cleaned path.
// A route that no policy matches needs nothing beyond sign-in.
func (ps Policies) Check(method, cleanPath string, id identity.Identity) Decision {
	for _, p := range ps {
		if len(p.methods) > 0 && !p.methods[method] {
			continue
		}
		if p.path.MatchString(cleanPath) {
			return p.rule.Check(id)
		}
	}
	return Allow
}

func validMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return true
	}
	return false
}
