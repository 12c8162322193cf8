// Package filters decides who may pass: allowed e-mail domains and addresses,
// GitHub organizations, teams and users, and provider groups.
//
// A Rule holds lists of several kinds. A user passes a Rule when every kind
// that has a list has at least one match (AND across kinds, OR within a
// list); domains and e-mail addresses count as one kind, so "anyone at
// example.com, plus bob@partner.org" is expressible.
package filters

import (
	"strings"

	"github.com/gatehouse/gatehouse/identity"
)

// Kind names which check failed. The values are stable: they label the
// gatehouse_authz_denied_total metric and appear in audit logs.
type Kind string

const (
	KindEmail        Kind = "email"
	KindUnverified   Kind = "email_unverified"
	KindOrganization Kind = "organization"
	KindTeam         Kind = "team"
	KindUser         Kind = "user"
	KindGroup        Kind = "group"
	KindRevoked      Kind = "revoked" // the provider no longer accepts the session
)

// Decision is the outcome of a check.
type Decision struct {
	Allowed bool
	Kind    Kind // which kind of check failed, when not Allowed
}

// Allow is the Decision that lets a user pass.
var Allow = Decision{Allowed: true}

// Message is a sentence for the person who was denied. It says which kind
// of check failed but never lists the configured values.
func (d Decision) Message() string {
	switch d.Kind {
	case KindEmail:
		return "Your e-mail address is not among those allowed here."
	case KindUnverified:
		return "Your e-mail address is not verified with your sign-in provider, so it cannot be used here."
	case KindOrganization:
		return "You are not a member of an allowed organization."
	case KindTeam:
		return "You are not a member of an allowed team."
	case KindUser:
		return "Your user name is not among those allowed here."
	case KindGroup:
		return "You are not a member of an allowed group."
	case KindRevoked:
		return "Your sign-in is no longer accepted by your sign-in provider (access was revoked or the account changed). Sign in again."
	}
	return ""
}

// Rule is a compiled set of requirements. Build one with NewRule so that
// its lists are normalized; the zero Rule allows everyone.
type Rule struct {
	domains       []string // lower-case; "*" any, ".x.com" subdomains of x.com
	emails        []string // lower-case
	organizations []string // lower-case
	teams         []string // lower-case "org/team"
	users         []string // lower-case
	groups        []string // as configured
}

// Lists are the raw lists a Rule is built from.
type Lists struct {
	Domains       []string
	Emails        []string
	Organizations []string
	Teams         []string
	Users         []string
	Groups        []string
}

// NewRule normalizes lists into a Rule.
func NewRule(l Lists) Rule {
	return Rule{
		domains:       lowerAll(l.Domains),
		emails:        lowerAll(l.Emails),
		organizations: lowerAll(l.Organizations),
		teams:         lowerAll(l.Teams),
		users:         lowerAll(l.Users),
		groups:        trimAll(l.Groups),
	}
}

// Empty reports whether the rule has no requirement at all.
func (r Rule) Empty() bool {
	return len(r.domains)+len(r.emails)+len(r.organizations)+len(r.teams)+len(r.users)+len(r.groups) == 0
}

// Check applies the rule to id.
func (r Rule) Check(id identity.Identity) Decision {
	if len(r.domains)+len(r.emails) > 0 {
		if !id.EmailVerified {
			return Decision{Kind: KindUnverified}
		}
		if !r.emailAllowed(id.Email) {
			return Decision{Kind: KindEmail}
		}
	}
	if len(r.organizations) > 0 && !anyEqualFold(r.organizations, id.Organizations) {
		return Decision{Kind: KindOrganization}
	}
	if len(r.teams) > 0 && !anyEqualFold(r.teams, id.Teams) {
		return Decision{Kind: KindTeam}
	}
	if len(r.users) > 0 && !anyEqualFold(r.users, []string{id.Login}) && !linkedUserAllowed(r.users, id) {
		return Decision{Kind: KindUser}
	}
	if len(r.groups) > 0 && !groupsAllowed(r.groups, id.Groups, id.GroupsArePaths) {
		return Decision{Kind: KindGroup}
	}
	return Allow
}

// linkedUserAllowed: a linked account (auth.link_accounts_by_verified_email)
// is listed in allowed_users by its e-mail address, whatever provider it
// signed in with.
func linkedUserAllowed(users []string, id identity.Identity) bool {
	e := id.LinkedEmail()
	return e != "" && anyEqualFold(users, []string{e})
}

func (r Rule) emailAllowed(email string) bool {
	_, domain, ok := identity.SplitEmail(email)
	if !ok {
		return false
	}
	email, domain = identity.LowerASCII(email), identity.LowerASCII(domain)
	for _, e := range r.emails {
		if e == email {
			return true
		}
	}
	for _, d := range r.domains {
		if DomainMatches(d, domain) {
			return true
		}
	}
	return false
}

// DomainMatches reports whether domain (lower-case) matches the allowed
// pattern: "*" matches any domain, ".example.com" any subdomain of
// example.com (not example.com itself), anything else exactly.
func DomainMatches(pattern, domain string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasPrefix(pattern, "."):
		return len(domain) > len(pattern) && strings.HasSuffix(domain, pattern)
	default:
		return domain == pattern
	}
}

// groupsAllowed matches group names. Path groups (GitLab) are
// case-insensitive and an allowed group also admits its subgroups:
// "acme/infra" admits "acme/infra/db" but not "acme/infra-old".
func groupsAllowed(allowed, have []string, paths bool) bool {
	for _, a := range allowed {
		for _, h := range have {
			if !paths {
				if a == h {
					return true
				}
				continue
			}
			a, h := identity.LowerASCII(strings.Trim(a, "/")), identity.LowerASCII(h)
			if h == a || strings.HasPrefix(h, a+"/") {
				return true
			}
		}
	}
	return false
}

func anyEqualFold(allowed, have []string) bool {
	for _, a := range allowed {
		for _, h := range have {
			if h != "" && identity.EqualFoldASCII(a, h) {
				return true
			}
		}
	}
	return false
}

func lowerAll(in []string) []string {
	out := trimAll(in)
	for i := range out {
		out[i] = identity.LowerASCII(out[i])
	}
	return out
}

func trimAll(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
