package proxy

import (
	"bytes"
	"net/http"
	"strings"

	"github.com/gatehouse/gatehouse/authn"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/internal/bounded"
)

// identityHeaders knows which request headers carry identity: those it
// removes from every incoming request, and those it sets.
type identityHeaders struct {
	cfg      HeadersConfig
	reserved map[string]bool // normalized names: lower-case, '_' as '-'
	// names are the configured header names in canonical form ("" off).
	names struct{ user, email, groups, preferredUsername string }
}

// alwaysReserved are removed from incoming requests whatever the config
// enables, so a client can never smuggle an identity through a header the
// operator turned off today and the upstream still trusts.
var alwaysReserved = []string{
	"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups",
	"X-Forwarded-Preferred-Username", "X-Forwarded-Access-Token",
	"X-Gatehouse-Assertion", "X-Auth-Request-User", "X-Auth-Request-Email",
	"X-Auth-Request-Groups", "X-Auth-Request-Preferred-Username",
	"X-Auth-Request-Access-Token", "X-Auth-Request-Redirect", "X-Remote-User",
}

// newIdentityHeaders knows the headers of cfg. extra are more names to
// remove from every request: with routes, each route's identity headers
// are removed on every route, so no client can bring one of them to an
// upstream that does not set it.
func newIdentityHeaders(cfg HeadersConfig, extra ...string) *identityHeaders {
	h := &identityHeaders{cfg: cfg, reserved: map[string]bool{}}
	canon := func(n string) string {
		if n == "" {
			return ""
		}
		return http.CanonicalHeaderKey(n)
	}
	h.names.user, h.names.email = canon(cfg.User), canon(cfg.Email)
	h.names.groups, h.names.preferredUsername = canon(cfg.Groups), canon(cfg.PreferredUsername)
	for _, n := range alwaysReserved {
		h.reserved[normalizeHeader(n)] = true
	}
	for _, n := range append([]string{cfg.User, cfg.Email, cfg.Groups, cfg.PreferredUsername, cfg.Assertion.Header}, extra...) {
		if n != "" {
			h.reserved[normalizeHeader(n)] = true
		}
	}
	return h
}

// normalizeHeader folds case and treats '_' as '-': many servers (nginx
// with underscores_in_headers, CGI, WSGI) read X_Forwarded_Email as
// X-Forwarded-Email, so both spellings must go.
func normalizeHeader(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// strip removes every reserved header, in any spelling.
func (h *identityHeaders) strip(hdr http.Header) {
	for name := range hdr {
		if h.isReserved(name) {
			delete(hdr, name)
		}
	}
}

// isReserved reports whether a header name, in any case and with '_' for
// '-', is one Gatehouse sets. It runs for every header of every request,
// so the usual name is normalized on the stack (a map lookup of string(b)
// does not allocate).
func (h *identityHeaders) isReserved(name string) bool {
	var buf [64]byte
	var n []byte
	if len(name) <= len(buf) {
		n = buf[:len(name)]
	} else {
		n = make([]byte, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		n[i] = c
	}
	return h.reserved[string(n)] || bytes.HasPrefix(n, []byte("x-auth-request-"))
}

// identityValues are an identity's header values, sanitized and joined,
// each already in the []string form a header map holds. A user in
// hundreds of groups would otherwise cost a join and a scan of kilobytes on
// every request; they are computed once per identity version. The slices
// are shared between requests and never modified.
type identityValues struct {
	user, email, groups, preferredUsername []string
}

func newIdentityValues(id identity.Identity) *identityValues {
	one := func(v string) []string {
		if v = sanitizeHeaderValue(v); v == "" {
			return nil
		}
		return []string{v}
	}
	return &identityValues{
		user:              one(id.User),
		email:             one(id.Email),
		groups:            one(strings.Join(id.Groups, ",")),
		preferredUsername: one(id.PreferredUsername),
	}
}

// valuesCache keeps identityValues by the forwarded identity's cache key
// (session and validation time, or token).
type valuesCache struct {
	m *bounded.Map[string, *identityValues]
}

func newValuesCache(max int) *valuesCache {
	return &valuesCache{m: bounded.New[string, *identityValues](max)}
}

func (c *valuesCache) get(key string, id identity.Identity) *identityValues {
	if v, ok := c.m.Get(key); ok {
		return v
	}
	v := newIdentityValues(id)
	c.m.Put(key, v)
	return v
}

// set adds the configured identity headers.
func (h *identityHeaders) set(hdr http.Header, v *identityValues, accessToken string) {
	setClean(hdr, h.names.user, v.user)
	setClean(hdr, h.names.email, v.email)
	setClean(hdr, h.names.groups, v.groups)
	setClean(hdr, h.names.preferredUsername, v.preferredUsername)
	if h.cfg.PassAccessToken {
		setIf(hdr, "X-Forwarded-Access-Token", accessToken)
	}
}

// setClean sets an already sanitized value under a canonical name.
func setClean(hdr http.Header, canonicalName string, value []string) {
	if canonicalName != "" && value != nil {
		hdr[canonicalName] = value
	}
}

func setIf(hdr http.Header, name, value string) {
	if name != "" && value != "" {
		hdr.Set(name, sanitizeHeaderValue(value))
	}
}

// sanitizeHeaderValue drops control characters a provider might have put
// in a claim; net/http would refuse to send them anyway.
func sanitizeHeaderValue(v string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, v)
}

// ownCookies tells, for session cookie name, whether a cookie name is one
// of Gatehouse's: the session cookie, a sign-in state cookie, or the
// hand-off binding cookie (also in its "__Host-" form, see
// handoff.BindingCookieName). An upstream builds it once: its prefixes
// are fixed, and building them per request cost three allocations.
type ownCookies struct{ name, statePrefix, hostStatePrefix string }

func newOwnCookies(cookieName string) ownCookies {
	statePrefix := authn.StateCookiePrefix(cookieName)
	return ownCookies{name: cookieName, statePrefix: statePrefix, hostStatePrefix: "__Host-" + strings.TrimPrefix(statePrefix, "__Secure-")}
}

func (o ownCookies) has(name string) bool {
	return name == o.name || strings.HasPrefix(name, o.statePrefix) || strings.HasPrefix(name, o.hostStatePrefix)
}

// stripCookie removes Gatehouse's own cookies from the Cookie header so
// the upstream never sees a session ticket it could replay.
func stripCookie(hdr http.Header, cookieName string) { stripOwnCookies(hdr, newOwnCookies(cookieName)) }

func stripOwnCookies(hdr http.Header, own ownCookies) {
	lines := hdr.Values("Cookie")
	if len(lines) == 0 {
		return
	}
	var kept strings.Builder // built only when something is kept
	for _, line := range lines {
		for rest := line; rest != ""; {
			var part string
			part, rest, _ = strings.Cut(rest, ";")
			name, _, _ := strings.Cut(part, "=")
			// Compare the name as cookie parsers read it, spaces trimmed,
			// so " _gatehouse =x" cannot slip a ticket to the upstream.
			name = strings.TrimSpace(name)
			if own.has(name) {
				continue
			}
			if p := strings.TrimSpace(part); p != "" {
				if kept.Len() > 0 {
					kept.WriteString("; ")
				}
				kept.WriteString(p)
			}
		}
	}
	hdr.Del("Cookie")
	if kept.Len() > 0 {
		hdr.Set("Cookie", kept.String())
	}
}

// stripSetCookie drops Set-Cookie headers from the upstream that would set
// Gatehouse's own cookies: the upstream must not be able to plant or
// replace a session in the browser.
func stripSetCookie(hdr http.Header, cookieName string) {
	stripOwnSetCookies(hdr, newOwnCookies(cookieName))
}

func stripOwnSetCookies(hdr http.Header, own ownCookies) {
	lines := hdr.Values("Set-Cookie")
	if len(lines) == 0 {
		return
	}
	var kept []string
	for _, line := range lines {
		name, _, _ := strings.Cut(line, "=")
		name = strings.TrimSpace(name)
		if own.has(name) {
			continue
		}
		kept = append(kept, line)
	}
	hdr["Set-Cookie"] = kept
	if len(kept) == 0 {
		hdr.Del("Set-Cookie")
	}
}
