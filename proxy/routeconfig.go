package proxy

import (
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/internal/confcheck"
	"github.com/gatehouse/gatehouse/internal/hostname"
)

// RouteConfig is one entry of the routes section: an upstream reached by
// host (and path prefix), with rules of its own on top of the global ones.
type RouteConfig struct {
	Name string          `mapstructure:"name"`
	From RouteFromConfig `mapstructure:"from"`
	To   string          `mapstructure:"to"`
	// StripPrefix removes from.path_prefix from the path sent upstream.
	StripPrefix bool `mapstructure:"strip_prefix"`
	// PassHostHeader and Timeout default to upstream's (nil: not set), as
	// does SetAuthorization ("").
	PassHostHeader   *bool                  `mapstructure:"pass_host_header"`
	Timeout          *time.Duration         `mapstructure:"timeout"`
	SetAuthorization string                 `mapstructure:"set_authorization"`
	TLS              UpstreamTLSConfig      `mapstructure:"tls"`
	SkipAuthRoutes   []string               `mapstructure:"skip_auth_routes"`
	APIRoutes        []string               `mapstructure:"api_routes"`
	Policies         []filters.PolicyConfig `mapstructure:"policies"`
	// Route-level filters: the same kinds as auth's, ANDed with the
	// global filters and the provider's.
	AllowedDomains       []string `mapstructure:"allowed_domains"`
	AllowedEmails        []string `mapstructure:"allowed_emails"`
	AllowedGroups        []string `mapstructure:"allowed_groups"`
	AllowedUsers         []string `mapstructure:"allowed_users"`
	AllowedOrganizations []string `mapstructure:"allowed_organizations"`
	AllowedTeams         []string `mapstructure:"allowed_teams"`
	// Headers, when present, replace the identity header names of the
	// headers section for this route (nil: the global ones).
	Headers *RouteHeadersConfig `mapstructure:"headers"`
}

// RouteFromConfig is what a route answers: a host, and a path prefix on it.
type RouteFromConfig struct {
	Host       string `mapstructure:"host"`
	PathPrefix string `mapstructure:"path_prefix"`
}

// RouteHeadersConfig is a route's own identity headers. A name left empty
// is not sent to that route (it is still removed from requests).
type RouteHeadersConfig struct {
	User              string `mapstructure:"user"`
	Email             string `mapstructure:"email"`
	Groups            string `mapstructure:"groups"`
	PreferredUsername string `mapstructure:"preferred_username"`
	PassAccessToken   bool   `mapstructure:"pass_access_token"`
}

// RouteDefaults is what compiling routes needs from other sections.
type RouteDefaults struct {
	// Upstream lends pass_host_header, timeout and set_authorization.
	Upstream UpstreamConfig
	// PathPrefix is server.path_prefix: Gatehouse's own endpoints answer
	// there on every host, so no route may lie under it.
	PathPrefix string
	// Assertion is headers.assertion.enabled: set_authorization:
	// assertion needs it.
	Assertion bool
}

var routeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// CompileRoutes validates the routes section (keys relative to it) and
// compiles it. No routes: a nil table (single-upstream mode).
func CompileRoutes(cfgs []RouteConfig, d RouteDefaults) (*RouteTable, confcheck.Problems) {
	var ps confcheck.Problems
	if len(cfgs) == 0 {
		return nil, nil
	}
	names := map[string]int{}
	places := map[string]int{}
	var routes []*Route
	for i, c := range cfgs {
		key := "[" + strconv.Itoa(i) + "]"
		r, sub := compileRoute(c, d)
		if j, dup := names[c.Name]; dup && c.Name != "" {
			sub.Addf("name", "%q is also the name of routes[%d]; names must be unique", c.Name, j)
		}
		names[c.Name] = i
		if r != nil {
			place := r.host + " " + r.prefix
			if j, dup := places[place]; dup {
				sub.Addf("from", "routes[%d] already answers host %q and path_prefix %q", j, r.host, r.prefix)
			}
			places[place] = i
		}
		ps.Nest(key, sub)
		if len(sub) == 0 {
			r.index = len(routes)
			routes = append(routes, r)
		}
	}
	if len(ps) > 0 {
		return nil, ps
	}
	return newRouteTable(routes), nil
}

func compileRoute(c RouteConfig, d RouteDefaults) (*Route, confcheck.Problems) {
	var ps confcheck.Problems
	r := &Route{Name: c.Name, strip: c.StripPrefix, headers: c.Headers}
	if c.Name == "" {
		ps.Addf("name", "required: a short name for logs, e.g. \"grafana\"")
	} else if !routeName.MatchString(c.Name) {
		ps.Addf("name", "%q must be letters, digits, '.', '_' and '-'", c.Name)
	}
	var ok bool
	if r.host, ok = routeHost(c.From.Host); !ok {
		ps.Addf("from.host", "%q is not a host name (e.g. \"grafana.example.com\", or \"*.example.com\" for any one label "+
			"in front of example.com); no port: it is ignored when matching", c.From.Host)
	}
	if r.prefix, ok = routePrefix(c.From.PathPrefix); !ok {
		ps.Addf("from.path_prefix", "must start with '/' and hold only letters, digits, '-', '.', '_', '~' between single slashes, e.g. \"/\" or \"/prometheus\"; got %q", c.From.PathPrefix)
	} else if d.PathPrefix != "" && (r.prefix == d.PathPrefix || strings.HasPrefix(r.prefix, d.PathPrefix+"/")) {
		ps.Addf("from.path_prefix", "%q lies under server.path_prefix %q, where Gatehouse's own endpoints answer on every host", r.prefix, d.PathPrefix)
	}
	if c.StripPrefix && r.prefix == "/" {
		ps.Addf("strip_prefix", "strips nothing with path_prefix \"/\"")
	}
	if u, err := url.Parse(c.To); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		ps.Addf("to", "%q is not an absolute http(s) URL", c.To)
	} else if u.RawQuery != "" || u.Fragment != "" {
		ps.Addf("to", "must not have a query or fragment")
	} else {
		r.target = u
	}
	up := UpstreamConfig{PassHostHeader: d.Upstream.PassHostHeader, Timeout: d.Upstream.Timeout, TLS: c.TLS,
		SetAuthorization: d.Upstream.SetAuthorization}
	if c.PassHostHeader != nil {
		up.PassHostHeader = *c.PassHostHeader
	}
	if c.Timeout != nil {
		up.Timeout = *c.Timeout
		if up.Timeout <= 0 {
			ps.Addf("timeout", "must be a positive duration such as 30s")
		}
	}
	if c.SetAuthorization != "" {
		up.SetAuthorization = c.SetAuthorization
	}
	mode, err := parseAuthorizationMode(up.SetAuthorization)
	if err != nil {
		ps.Addf("set_authorization", "%v", err)
	} else if mode == authorizeAssertion && !d.Assertion && c.SetAuthorization != "" {
		// (An inherited value is reported once, at upstream.)
		ps.Addf("set_authorization", "assertion needs headers.assertion.enabled: true")
	}
	r.upstream, r.auth = up, mode
	c.TLS.validate(&ps, r.target, "to", c.To)
	for _, raw := range c.SkipAuthRoutes {
		m, err := parseRoute(raw, true)
		if err != nil {
			ps.Addf("skip_auth_routes", "%v", err)
			continue
		}
		r.skipAuth = append(r.skipAuth, m)
	}
	for _, raw := range c.APIRoutes {
		m, err := parseRoute(raw, false)
		if err != nil {
			ps.Addf("api_routes", "%v", err)
			continue
		}
		r.api = append(r.api, m)
	}
	var sub confcheck.Problems
	r.policies, sub = filters.CompilePolicies(c.Policies)
	ps.Nest("policies", sub)
	r.filter, sub = routeFilter(c)
	ps = append(ps, sub...)
	if h := c.Headers; h != nil {
		for k, name := range map[string]string{"headers.user": h.User, "headers.email": h.Email, "headers.groups": h.Groups,
			"headers.preferred_username": h.PreferredUsername} {
			if name != "" && !validHeaderName(name) {
				ps.Addf(k, "%q is not a valid HTTP header name", name)
			}
		}
	}
	return r, ps
}

// routeFilter compiles a route's allowed_* lists. They are checked exactly
// as a policy that matches every path, so they are compiled as one: the
// same validation, the same messages.
func routeFilter(c RouteConfig) (filters.Policies, confcheck.Problems) {
	pc := filters.PolicyConfig{
		Path:           "^",
		AllowedDomains: c.AllowedDomains, AllowedEmails: c.AllowedEmails, AllowedGroups: c.AllowedGroups,
		AllowedUsers: c.AllowedUsers, AllowedOrganizations: c.AllowedOrganizations, AllowedTeams: c.AllowedTeams,
	}
	if len(pc.AllowedDomains)+len(pc.AllowedEmails)+len(pc.AllowedGroups)+len(pc.AllowedUsers)+
		len(pc.AllowedOrganizations)+len(pc.AllowedTeams) == 0 {
		return nil, nil
	}
	compiled, ps := filters.CompilePolicies([]filters.PolicyConfig{pc})
	// Its keys are those of the route itself, not of a policies list.
	for i := range ps {
		ps[i].Key = strings.TrimPrefix(strings.TrimPrefix(ps[i].Key, "[0]"), ".")
	}
	return compiled, ps
}

// routeHost is the canonical form of from.host, and whether it is valid:
// a host name or IP address, or "*." and a host name.
func routeHost(raw string) (string, bool) {
	if raw == "" || strings.ContainsAny(raw, ":/ ") {
		return "", false
	}
	h := hostname.Canonical(raw)
	name, wildcard := strings.CutPrefix(h, "*.")
	if strings.Contains(name, "*") || !validServerName(name) {
		return "", false
	}
	if wildcard {
		return "*." + name, true
	}
	return h, true
}

// routePrefix is the canonical form of from.path_prefix ("" is "/"; a
// trailing slash is dropped: prefixes match whole segments anyway).
func routePrefix(raw string) (string, bool) {
	if raw == "" || raw == "/" {
		return "/", true
	}
	p := strings.TrimSuffix(raw, "/")
	return p, validPathPrefix(p)
}

// RoutesWarnings are the routes section's start-up warnings.
func RoutesWarnings(cfgs []RouteConfig) []string {
	var out []string
	for i, c := range cfgs {
		if c.TLS.InsecureSkipVerify {
			out = append(out, "routes["+strconv.Itoa(i)+"].tls.insecure_skip_verify is true: THE UPSTREAM'S CERTIFICATE IS NOT CHECKED "+
				"for route "+strconv.Quote(c.Name)+", so anybody on the network path can pose as it and read every request, "+
				"identity headers and assertions included; use tls.ca_file (and server_name) instead")
		}
	}
	return out
}

// ValidateAuthorization checks set_authorization against the headers
// section: sending the assertion needs assertions to be made.
func (c *UpstreamConfig) ValidateAuthorization(assertionEnabled bool) confcheck.Problems {
	var ps confcheck.Problems
	if mode, err := parseAuthorizationMode(c.SetAuthorization); err == nil && mode == authorizeAssertion && !assertionEnabled {
		ps.Addf("set_authorization", "assertion needs headers.assertion.enabled: true")
	}
	return ps
}

// CookieDomainProblems (keys relative to routes) are the route hosts a
// session.cookie_domain does not cover. With a cookie domain the one
// cookie is meant to serve every route host, and no hand-off is made; a
// host outside it would never get a session at all.
func CookieDomainProblems(cfgs []RouteConfig, domain string) confcheck.Problems {
	var ps confcheck.Problems
	d := strings.ToLower(strings.TrimPrefix(domain, "."))
	if d == "" {
		return nil
	}
	for i, c := range cfgs {
		h, ok := routeHost(c.From.Host)
		if !ok {
			continue // reported by CompileRoutes
		}
		// A wildcard is covered when any one name it stands for is.
		probe := strings.Replace(h, "*", "x", 1)
		if probe != d && !strings.HasSuffix(probe, "."+d) {
			ps.Addf("["+strconv.Itoa(i)+"].from.host", "%q is not under session.cookie_domain %q, so the session cookie would not reach it; "+
				"leave cookie_domain empty to give each host its own session through a hand-off", c.From.Host, domain)
		}
	}
	return ps
}
