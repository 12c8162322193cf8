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
	// Account is set when auth.link_accounts_by_verified_email joined
	// this sign-in to the person's other providers: "email:" and the
	// verified address, lower-cased. It is then who the user is for
	// sign out everywhere, allowed_users and the assertion's sub.
	Account string `json:"account,omitempty"`
}

// accountPrefix begins an Account linked by e-mail address.
const accountPrefix = "email:"

// LinkByEmail returns id joined to the account of its e-mail address when
// that address is verified and well-formed, and id unchanged otherwise:
// an unverified address is anyone's to type, so it never links.
func LinkByEmail(id Identity) Identity {
	if !id.EmailVerified {
		return id
	}
	if _, _, ok := SplitEmail(id.Email); !ok {
		return id
	}
	id.Account = accountPrefix + LowerASCII(id.Email)
	return id
}

// LinkedEmail is the address of a linked account, "" when id is not
// linked.
func (id Identity) LinkedEmail() string {
	e, _ := strings.CutPrefix(id.Account, accountPrefix)
	return e
}

// Key is who the user is across Gatehouse: the linked account when there
// is one, else "provider:subject". The assertion's sub.
func (id Identity) Key() string {
	if id.Account != "" {
		return id.Account
	}
	return id.Provider + ":" + id.Subject
}

// DisplayName is how pages name the user: the e-mail address, else the
// user name.
func (id Identity) DisplayName() string {
	if id.Email != "" {
		return id.Email
	}
	return id.User
}

// LocalPart returns the part of an e-mail address before its single '@',
// lower-cased, or "" when the address does not have exactly one '@'.
func LocalPart(email string) string {
	local, _, ok := SplitEmail(email)
	if !ok {
		return ""
	}
	return LowerASCII(local)
}

// LowerASCII lower-cases the ASCII letters A-Z and leaves every other byte
// alone. Names are compared case-insensitively only in ASCII: Unicode case
// mapping (strings.ToLower, strings.EqualFold) turns U+0130 (İ) into 'i'
// and U+212A (Kelvin sign) into 'k', so "alİce@İbm.com" would otherwise
// pass for "alice@ibm.com", an address at a look-alike domain somebody
// else can register, or become the user "alice".
func LowerASCII(s string) string {
	i := 0
	for i < len(s) && (s[i] < 'A' || s[i] > 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if 'A' <= b[i] && b[i] <= 'Z' {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}

// EqualFoldASCII reports whether a and b are equal once ASCII letters are
// lower-cased (see LowerASCII), without allocating.
func EqualFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
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
