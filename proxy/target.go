package proxy

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse/gatehouse/canonical"
	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/pages"
)

// routeKind says how much a decision knows about the request's route.
type routeKind int

const (
	// routeKnown: method and path are known; every route rule applies.
	routeKnown routeKind = iota
	// routeUnknown: forward-auth without an original URL from a trusted
	// peer. Anything that depends on the route fails closed.
	routeUnknown
	// routeNone: one of Gatehouse's own endpoints (userinfo) where no
	// route rule applies.
	routeNone
)

// target is what a decision is made on: the canonical method and path of
// the request that will reach the upstream.
type target struct {
	method string // upper case
	path   canonical.Path
	kind   routeKind
	// route is the routes entry the request goes to; nil in
	// single-upstream mode and for forward-auth checks.
	route *Route
}

// methods are the methods a rule is checked against: HEAD counts as GET
// (a HEAD is a GET without the body), and as itself for rules that name it.
func (t target) methods() []string {
	if t.method == http.MethodHead {
		return []string{http.MethodHead, http.MethodGet}
	}
	return []string{t.method}
}

// readings are the paths a rule is checked against: the canonical path
// and, when ";" parameters are kept, the same path without them, and when
// encoded slashes are kept, the same with %2F read as "/", since the
// upstream may read any of them (many servers decode %2F before routing).
// A restriction then holds if any reading meets it, a permission only if
// every reading does: kept characters never buy a way around a rule.
func (t target) readings() readingSet {
	var rs readingSet
	rs.add(t.path.Decoded)
	if t.path.HasParams() {
		rs.add(t.path.Stripped)
	}
	for _, p := range rs.paths[:rs.n] {
		if slashed, ok := keptSlashReading(p); ok {
			rs.add(slashed)
		}
	}
	return rs
}

// readingSet holds a request's readings in place: this runs on every
// request, and a slice would cost an allocation each time.
type readingSet struct {
	paths [4]string
	n     int
}

func (rs *readingSet) add(p string) { rs.paths[rs.n] = p; rs.n++ }

// all returns the readings.
func (rs *readingSet) all() []string { return rs.paths[:rs.n] }

// keptSlashReading is path with each kept encoded slash read as "/" (in
// canonical form, with encoded_slashes: keep, a %2F stays in its segment).
func keptSlashReading(path string) (string, bool) {
	if !strings.Contains(path, "%2F") {
		return path, false
	}
	return strings.ReplaceAll(path, "%2F", "/"), true
}

// permits reports whether a permission (skip-auth route, token scope)
// covers the request: some method reading and every path reading allowed.
func (t target) permits(allows func(method, path string) bool) bool {
	for _, m := range t.methods() {
		all := true
		rs := t.readings()
		for _, p := range rs.all() {
			if !allows(m, p) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// matches reports whether a classification (API route) applies under
// any reading.
func (t target) matches(match func(method, path string) bool) bool {
	for _, m := range t.methods() {
		rs := t.readings()
		for _, p := range rs.all() {
			if match(m, p) {
				return true
			}
		}
	}
	return false
}

// restrict applies the policies: a restriction holds if any reading of
// the request meets it.
func (t target) restrict(ps filters.Policies, id identity.Identity) filters.Decision {
	for _, m := range t.methods() {
		rs := t.readings()
		for _, p := range rs.all() {
			if d := ps.Check(m, p, id); !d.Allowed {
				return d
			}
		}
	}
	return filters.Allow
}

// canonicalMethod upper-cases a method: Go forwards "delete" unchanged,
// and many frameworks then run it as DELETE.
func canonicalMethod(m string) string {
	for i := 0; i < len(m); i++ {
		if 'a' <= m[i] && m[i] <= 'z' {
			return strings.ToUpper(m)
		}
	}
	return m
}

// rawRequestPath is the request's path exactly as the client sent it.
func rawRequestPath(r *http.Request) (string, bool) {
	if r.RequestURI != "" {
		return canonical.RawPath(r.RequestURI)
	}
	// A request built in-process (tests) has no RequestURI.
	return r.URL.EscapedPath(), strings.HasPrefix(r.URL.EscapedPath(), "/")
}

// withCanonicalURL returns a shallow copy of r whose method and URL path
// are the canonical ones, so the upstream, the sign-in rd and the logs all
// see what was decided on.
func withCanonicalURL(r *http.Request, p canonical.Path) *http.Request {
	method := canonicalMethod(r.Method)
	if method == r.Method && r.URL.EscapedPath() == p.Escaped {
		return r // already canonical: the common case costs nothing
	}
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path, u.RawPath = unescapePath(p.Escaped), p.Escaped
	r2.URL = &u
	r2.Method = method
	return r2
}

func unescapePath(escaped string) string {
	if !strings.Contains(escaped, "%") {
		return escaped
	}
	p, err := url.PathUnescape(escaped)
	if err != nil { // cannot happen: canonical paths are valid escapes
		return escaped
	}
	return p
}

// refusePath answers a request whose path is not canonical: a redirect
// to the canonical path for GET and HEAD with dot segments, else 400.
func (h *Handler) refusePath(w http.ResponseWriter, r *http.Request, err error) {
	var ce *canonical.Error
	if !errors.As(err, &ce) {
		ce = &canonical.Error{Reason: "the request path cannot be read"}
	}
	method := canonicalMethod(r.Method)
	if errors.Is(err, canonical.ErrDotSegments) && (method == http.MethodGet || method == http.MethodHead) {
		noteHandler(r.Context(), "redirect")
		loc := ce.Resolved.Escaped
		if strings.HasPrefix(loc, "//") {
			// A browser reads "//x" as another host: say ours in full.
			loc = h.o.PublicURL.Scheme + "://" + h.o.PublicURL.Host + loc
		}
		if r.URL.RawQuery != "" {
			loc += "?" + r.URL.RawQuery
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Location", loc)
		w.WriteHeader(http.StatusPermanentRedirect)
		return
	}
	noteHandler(r.Context(), "bad_request")
	h.o.Metrics.Denied("path")
	if pages.WantsJSON(r) {
		pages.JSONError(w, http.StatusBadRequest, "invalid_request", ce.Reason)
		return
	}
	h.o.Pages.Error(w, http.StatusBadRequest, "Bad request",
		"This address cannot be served: "+ce.Reason+". Servers could read it in different ways, so Gatehouse refuses it.", "")
}
