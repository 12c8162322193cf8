// Package identity defines who a signed-in user is, as every other package
// sees it: providers produce an Identity, filters judge it, sessions keep it
// and the proxy forwards it.
package identity

import "strings"

// Identity is a user as proven by a provider.
type Identity struct {
	Provider          string   `json:"provider"` // provider name, e.g. "github", "corp"
	Subject           string   `json:"sub"`      // provider's stable user id
	User              string   `json:"user"`     // short user name sent as X-Forwarded-User
	Email             string   `json:"email,omitempty"`
	EmailVerified     bool     `json:"email_verified"`
	Name              string   `json:"name,omitempty"`
	PreferredUsername string   `json:"preferred_username,omitempty"`
	Groups            []string `json:"groups"`                  // forwarded upstream; OIDC/GitLab groups, GitHub orgs and org/team
	Organizations     []string `json:"organizations,omitempty"` // GitHub org logins
	Teams             []string `json:"teams,omitempty"`         // GitHub "org/team-slug"
	Login             string   `json:"login,omitempty"`         // GitHub login, for allowed_users
	// GroupsArePaths marks hierarchical group paths (GitLab): an allowed
	// group then also admits its subgroups.
	GroupsArePaths bool `json:"groups_are_paths,omitempty"`
}

// LocalPart returns the part of an e-mail address before its single '@',
// lower-cased, or "" when the address does not have exactly one '@'.
func LocalPart(email string) string {
	local, _, ok := SplitEmail(email)
	if !ok {
		return ""
	}
	return asciiLower(local)
}

// asciiLower lower-cases ASCII letters only: strings.ToLower maps U+0130
// (İ) and U+212A (Kelvin sign) to ASCII letters, which would let
// "alİce@..." become the user "alice".
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// SplitEmail splits an address into local part and domain. It fails for
// anything but exactly one '@' with something on both sides: an address like
// "a@evil.com@example.com" must never be read as belonging to example.com.
func SplitEmail(email string) (local, domain string, ok bool) {
	if strings.Count(email, "@") != 1 {
		return "", "", false
	}
	local, domain, _ = strings.Cut(email, "@")
	if local == "" || domain == "" {
		return "", "", false
	}
	return local, domain, true
}
