package main

import (
	"crypto/x509"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"reflect"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/internal/confcheck"
	"github.com/gatehouse/gatehouse/proxy"
)

// zeroDurationAllowed lists the duration keys for which 0 means something
// (say, "off"). Every other duration must be positive.
var zeroDurationAllowed = map[string]bool{}

// crossChecks reports what no section checks for itself: listen addresses
// that are not host:port, and durations that are zero or negative. A key
// that already has a problem in known is not reported again.
func crossChecks(cfg Config, known confcheck.Problems) confcheck.Problems {
	var ps confcheck.Problems
	reported := func(key string) bool {
		has := func(p confcheck.Problem) bool { return p.Key == key }
		return slices.ContainsFunc(known, has) || slices.ContainsFunc(ps, has)
	}
	listens := []struct{ key, addr string }{
		{"server.listen", cfg.Server.Listen},
		{"server.metrics_listen", cfg.Server.MetricsListen}, // "" turns /metrics off
	}
	for _, l := range listens {
		if l.addr == "" || reported(l.key) {
			continue
		}
		if msg := checkListen(l.addr); msg != "" {
			ps.Addf(l.key, "%s", msg)
		}
	}
	if s := cfg.Server; s.MetricsListen != "" && s.MetricsListen == s.Listen && !reported("server.metrics_listen") {
		if _, port, err := net.SplitHostPort(s.Listen); err == nil && port != "0" {
			ps.Addf("server.metrics_listen", "%q is also server.listen; metrics need an address of their own (or \"\" for none)", s.MetricsListen)
		}
	}
	for _, d := range durations(reflect.ValueOf(cfg)) {
		if d.value > 0 || (d.value == 0 && zeroDurationAllowed[d.key]) || reported(d.key) {
			continue
		}
		ps.Addf(d.key, "must be a positive duration such as 30s, got %s", d.value)
	}
	return ps
}

// providerRoots checks auth.ca_file (keys relative to auth) and returns
// the roots every provider's client trusts: the system's plus the
// bundle's, because a corporate IdP on a private CA and a public one
// (GitHub, Google) may be configured side by side. package authn
// declares the key; the pool is built here, where the client is.
func providerRoots(caFile string) (*x509.CertPool, confcheck.Problems) {
	var ps confcheck.Problems
	if caFile == "" {
		return nil, nil
	}
	pool, err := proxy.CertPool(caFile, true)
	if err != nil {
		ps.Addf("ca_file", "%v", err)
		return nil, ps
	}
	return pool, nil
}

// uiWarnings: ui settings that do nothing with this configuration.
func uiWarnings(cfg Config) []string {
	if !cfg.UI.SkipProviderButton {
		return nil
	}
	n := len(cfg.Auth.OIDC)
	for _, enabled := range []bool{cfg.Auth.GitHub.Enabled, cfg.Auth.GitLab.Enabled, cfg.Auth.Google.Enabled, cfg.Auth.Microsoft.Enabled} {
		if enabled {
			n++
		}
	}
	if n == 1 {
		return nil
	}
	return []string{fmt.Sprintf("ui.skip_provider_button: %d sign-in providers are configured, so the sign-in page still shows "+
		"a button for each; it goes straight to the provider only when there is exactly one", n)}
}

// publicURLWarnings: a public_url on plain http anywhere but loopback
// sends the session cookie and the providers' codes in clear, and most
// providers refuse such a redirect URI anyway.
func publicURLWarnings(public *url.URL) []string {
	if public == nil || public.Scheme != "http" {
		return nil
	}
	host := public.Hostname()
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		return nil
	}
	return []string{fmt.Sprintf("server.public_url: %q is plain http on a host that is not loopback: the providers' redirect URIs "+
		"(%s/oauth2/callback/...) and the session cookie travel unencrypted, and most providers refuse such a redirect URI; use https", public.String(), strings.TrimSuffix(public.String(), "/"))}
}

// checkListen says what is wrong with a listen address, or "".
func checkListen(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("%q is not host:port, e.g. \":4180\" or \"127.0.0.1:4180\"", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || strings.HasPrefix(port, "+") {
		return fmt.Sprintf("%q: the port must be a number from 0 to 65535", addr)
	}
	return ""
}

type durationKey struct {
	key   string
	value time.Duration
}

// durations lists every duration in a configuration with its key.
func durations(v reflect.Value) []durationKey {
	var out []durationKey
	eachLeaf(v, func(key, _ string, v reflect.Value) {
		if v.Type() == reflect.TypeOf(time.Duration(0)) {
			out = append(out, durationKey{key, time.Duration(v.Int())})
		}
	})
	return out
}

// patternWarnings are the route, policy and scope patterns that probably
// do not say what was meant. Patterns match anywhere in the canonical path
// unless anchored, so "/admin" also matches "/x/admin" (and a skip-auth
// route "/health" lets "/admin/health" through). And Gatehouse does not
// merge slashes, so the policy "^/admin" does not restrict "//admin",
// which many upstreams serve as "/admin".
func patternWarnings(cfg Config) []string {
	var out []string
	unanchored := func(key, raw, method, expr string) {
		if anchoredAtStart(expr) {
			return
		}
		fix := "^" + expr
		if strings.Contains(expr, "|") {
			fix = "^(?:" + expr + ")"
		}
		if method != "" {
			fix = method + "=" + fix
		}
		out = append(out, fmt.Sprintf("%s: the pattern %q is not anchored at the start, so it matches any path that merely contains it; write %q", key, raw, fix))
	}
	for _, raw := range cfg.Upstream.SkipAuthRoutes {
		method, expr := splitMethod(raw)
		unanchored("upstream.skip_auth_routes", raw, method, expr)
	}
	for _, raw := range cfg.Upstream.APIRoutes {
		unanchored("upstream.api_routes", raw, "", raw)
	}
	for i, p := range cfg.Policies {
		key := "policies[" + strconv.Itoa(i) + "].path"
		if p.Path == "" {
			continue
		}
		unanchored(key, p.Path, "", p.Path)
		if flags, rest, ok := slashThenName(p.Path); ok {
			after := strings.TrimPrefix(rest, "^/")
			name := after[:strings.IndexFunc(after+"/", func(r rune) bool {
				return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '-' && r != '_'
			})]
			out = append(out, fmt.Sprintf("%s: the pattern %q does not match %q, which many upstreams serve as %q (Gatehouse does not merge slashes); write %q",
				key, p.Path, "//"+name, "/"+name, flags+"^/+"+after))
		}
	}
	for i, r := range cfg.Routes {
		key := "routes[" + strconv.Itoa(i) + "]"
		for _, raw := range r.SkipAuthRoutes {
			method, expr := splitMethod(raw)
			unanchored(key+".skip_auth_routes", raw, method, expr)
		}
		for _, raw := range r.APIRoutes {
			unanchored(key+".api_routes", raw, "", raw)
		}
		for j, p := range r.Policies {
			if p.Path != "" {
				unanchored(key+".policies["+strconv.Itoa(j)+"].path", p.Path, "", p.Path)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Tokens.Scopes)) {
		for i, r := range cfg.Tokens.Scopes[name] {
			key := "tokens.scopes." + name + "[" + strconv.Itoa(i) + "].paths"
			for _, p := range r.Paths {
				unanchored(key, p, "", p)
			}
		}
	}
	return out
}

// splitMethod splits a skip-auth route "METHOD=regex" as the proxy does.
func splitMethod(raw string) (method, expr string) {
	if m, rest, ok := strings.Cut(raw, "="); ok {
		switch m {
		case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE":
			return m, rest
		}
	}
	return "", raw
}

// anchoredAtStart reports whether every match of the regex starts at the
// beginning of the text. An invalid regex counts as anchored: it is
// reported as an error elsewhere.
func anchoredAtStart(expr string) bool {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return true
	}
	var anchored func(re *syntax.Regexp) bool
	anchored = func(re *syntax.Regexp) bool {
		switch re.Op {
		case syntax.OpBeginText, syntax.OpBeginLine: // paths hold no newline
			return true
		case syntax.OpConcat, syntax.OpCapture:
			return len(re.Sub) > 0 && anchored(re.Sub[0])
		case syntax.OpAlternate:
			for _, s := range re.Sub {
				if !anchored(s) {
					return false
				}
			}
			return len(re.Sub) > 0
		}
		return false
	}
	return anchored(re)
}

// slashThenName reports a pattern of the form "^/name...", after optional
// leading flags such as "(?i)", returning the flags and the rest.
func slashThenName(expr string) (flags, rest string, ok bool) {
	rest = expr
	if strings.HasPrefix(rest, "(?") {
		if end := strings.Index(rest, ")"); end > 0 && !strings.Contains(rest[:end], ":") {
			flags, rest = rest[:end+1], rest[end+1:]
		}
	}
	after, found := strings.CutPrefix(rest, "^/")
	if !found {
		return "", "", false
	}
	r, _ := utf8.DecodeRuneInString(after)
	return flags, rest, unicode.IsLetter(r) || unicode.IsDigit(r)
}
