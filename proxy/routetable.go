package proxy

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/gatehouse/gatehouse/canonical"
	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/internal/hostname"
)

// Route is a compiled routes entry.
type Route struct {
	Name     string
	host     string // canonical; "*.example.com" for a wildcard
	prefix   string // "/" or "/a/b", no trailing slash
	target   *url.URL
	upstream UpstreamConfig // with the upstream section's defaults applied
	auth     authorizationMode
	strip    bool
	skipAuth []routeMatcher
	api      []routeMatcher
	policies filters.Policies
	filter   filters.Policies // the route's allowed_* lists, as a policy for every path
	headers  *RouteHeadersConfig
	index    int // in the table, for per-route state kept by the Handler
}

// Host is the route's from.host (canonical): "*.example.com" for a
// wildcard route.
func (r *Route) Host() string { return r.host }

// audience is the aud of the assertions sent on this route for a request
// to hostport: the route's from.host, or for a wildcard route the
// canonical host the request came to, so that one tenant's assertion
// ("a.apps.example.com") is no good at another's. Routes on one host with
// different prefixes share that host as their audience.
func (r *Route) audience(hostport string) string {
	if strings.HasPrefix(r.host, "*.") {
		return hostname.Canonical(hostport)
	}
	return r.host
}

// Prefix is the route's from.path_prefix.
func (r *Route) Prefix() string { return r.prefix }

// matchesPath reports whether the canonical path lies under the prefix, on
// a segment boundary: "/docs" takes "/docs" and "/docs/x", not "/docsx".
func (r *Route) matchesPath(path string) bool {
	if r.prefix == "/" {
		return true
	}
	rest, ok := strings.CutPrefix(path, r.prefix)
	return ok && (rest == "" || rest[0] == '/')
}

// RouteTable finds the route of a request: by host first (an exact name
// beats a wildcard), then by the longest path prefix among that host's
// routes.
type RouteTable struct {
	routes []*Route
	exact  map[string][]*Route // by host
	wild   map[string][]*Route // by the parent of "*.parent"
}

func newRouteTable(routes []*Route) *RouteTable {
	t := &RouteTable{routes: routes, exact: map[string][]*Route{}, wild: map[string][]*Route{}}
	for _, r := range routes {
		if parent, ok := strings.CutPrefix(r.host, "*."); ok {
			t.wild[parent] = append(t.wild[parent], r)
		} else {
			t.exact[r.host] = append(t.exact[r.host], r)
		}
	}
	longestFirst := func(rs []*Route) {
		sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].prefix) > len(rs[j].prefix) })
	}
	for _, rs := range t.exact {
		longestFirst(rs)
	}
	for _, rs := range t.wild {
		longestFirst(rs)
	}
	return t
}

// Routes lists the routes in configuration order.
func (t *RouteTable) Routes() []*Route { return t.routes }

// hostRoutes are the routes of a Host header's host: its exact routes if
// it has any, else those of the wildcard that covers it. A host with
// exact routes never falls through to a wildcard, so adding an exact route
// cannot leave some of its paths served by another upstream.
func (t *RouteTable) hostRoutes(hostport string) []*Route {
	h := hostname.Canonical(hostport)
	if rs, ok := t.exact[h]; ok {
		return rs
	}
	label, parent, ok := strings.Cut(h, ".")
	if !ok || label == "" {
		return nil
	}
	return t.wild[parent]
}

// MatchPath returns the route for a Host header and a canonical path, and
// whether the path's readings choose different routes. Besides the
// decoded path, an upstream may read the path without its ";" parameters
// (when they are kept: Tomcat and Spring serve "/alertmanager;x/api" as
// "/alertmanager/api") or with runs of slashes merged (many servers serve
// "//alertmanager/api" as "/alertmanager/api"). If those readings chose
// another route than the decoded path, the request would pass one route's
// rules and reach another's upstream as if it were there: such a request
// is ambiguous, and refused. (Nil for no route counts as a choice.)
func (t *RouteTable) MatchPath(hostport string, p canonical.Path) (route *Route, ambiguous bool) {
	routes := t.hostRoutes(hostport)
	match := func(path string) *Route {
		for _, r := range routes {
			if r.matchesPath(path) {
				return r
			}
		}
		return nil
	}
	route = match(p.Decoded)
	if len(routes) < 2 && route != nil {
		return route, false // one route takes every path of the host
	}
	readings := [...]string{p.Stripped, mergeSlashes(p.Decoded), mergeSlashes(p.Stripped)}
	for _, path := range readings {
		if path != p.Decoded && match(path) != route {
			return nil, true
		}
		// With encoded slashes kept, a server that decodes %2F reads
		// "/alertmanager%2Fapi" as a path under /alertmanager.
		if slashed, ok := keptSlashReading(path); ok && match(mergeSlashes(slashed)) != route {
			return nil, true
		}
	}
	if slashed, ok := keptSlashReading(p.Decoded); ok && match(slashed) != route {
		return nil, true
	}
	return route, false
}

// mergeSlashes is path with each run of slashes made one.
func mergeSlashes(path string) string {
	if !strings.Contains(path, "//") {
		return path
	}
	var b strings.Builder
	b.Grow(len(path))
	for i := 0; i < len(path); i++ {
		if path[i] == '/' && i > 0 && path[i-1] == '/' {
			continue
		}
		b.WriteByte(path[i])
	}
	return b.String()
}

// IsRouteHost reports whether a host (a port is ignored) is one that some
// route answers: where sign-in may send a browser back to.
func (t *RouteTable) IsRouteHost(hostport string) bool {
	return t != nil && len(t.hostRoutes(hostport)) > 0
}

// authorizationMode is set_authorization: what Gatehouse sends upstream as
// "Authorization: Bearer".
type authorizationMode int

const (
	authorizeNone authorizationMode = iota
	authorizeAssertion
	authorizeAccessToken
)

func parseAuthorizationMode(s string) (authorizationMode, error) {
	switch s {
	case "", "none":
		return authorizeNone, nil
	case "assertion":
		return authorizeAssertion, nil
	case "access_token":
		return authorizeAccessToken, nil
	}
	return authorizeNone, fmt.Errorf("%q is not one of none, assertion, access_token", s)
}
