package proxy

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gatehouse/gatehouse/canonical"

	"github.com/gatehouse/gatehouse/pages"
)

// userinfo serves GET /oauth2/userinfo.
func (h *Handler) userinfo(w http.ResponseWriter, r *http.Request) {
	// The same checks as any request (session or bearer token, filters,
	// revalidation), answered in JSON; no route policy applies here.
	r = r.Clone(r.Context())
	r.Header.Set("Accept", "application/json")
	f, ok := h.authorize(w, r, target{kind: routeNone})
	if !ok {
		return
	}
	id := f.identity
	groups := id.Groups
	if groups == nil {
		groups = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"user": id.User, "email": id.Email, "email_verified": id.EmailVerified,
		"preferred_username": id.PreferredUsername, "name": id.Name,
		"groups": groups, "provider": id.Provider,
	})
}

// forwardAuth serves GET /oauth2/auth for nginx auth_request and Traefik
// forwardAuth: 202 with identity headers, 401 or 403. It always answers
// JSON; the proxy in front turns a 401 into a sign-in redirect.
func (h *Handler) forwardAuth(w http.ResponseWriter, r *http.Request) {
	t, reason := h.originalRequest(r)
	if reason != "" {
		h.forwardAuthRefused(w, reason)
		return
	}
	h.forwardAuthFor(w, r, t)
}

// envoyCheck serves Envoy's HTTP ext_authz form, /oauth2/auth/<original
// path> with the original method. rawPath is the original path as
// received; the check never lands on any other endpoint.
func (h *Handler) envoyCheck(w http.ResponseWriter, r *http.Request, rawPath string) {
	pages.NoStore(w.Header())
	noteHandler(r.Context(), "auth")
	t := target{kind: routeUnknown, method: canonicalMethod(r.Method)}
	if h.trusted.trusts(r) {
		var refused string
		if t, refused = h.originalTarget(t.method, rawPath); refused != "" {
			h.forwardAuthRefused(w, refused)
			return
		}
	}
	h.forwardAuthFor(w, r, t)
}

// originalTarget is the target of a forward-auth check about method and
// rawPath, or why the path must be refused: it goes through the same
// canonical rules as any request.
func (h *Handler) originalTarget(method, rawPath string) (target, string) {
	p, err := canonical.Parse(rawPath, h.o.Routes.Paths)
	if err != nil {
		return target{kind: routeUnknown, method: method}, "the original request path is not canonical: " + reasonOf(err)
	}
	return target{kind: routeKnown, method: method, path: p}, ""
}

func (h *Handler) forwardAuthFor(w http.ResponseWriter, r *http.Request, t target) {
	r = r.Clone(r.Context())
	r.Header.Set("Accept", "application/json")
	f, ok := h.authorize(w, r, t)
	if !ok || !h.sign(w, r, f, nil) {
		return
	}
	noteUser(r.Context(), f.identity.User)
	v := h.values.get(f.cacheKey, f.identity)
	hdr := w.Header()
	setClean(hdr, "X-Auth-Request-User", v.user)
	setClean(hdr, "X-Auth-Request-Email", v.email)
	setClean(hdr, "X-Auth-Request-Groups", v.groups)
	setClean(hdr, "X-Auth-Request-Preferred-Username", v.preferredUsername)
	// (Canonical names already: a response header map of our own.)
	if f.assertion != "" {
		hdr.Set(h.o.Headers.Assertion.Header, f.assertion)
	}
	w.WriteHeader(http.StatusAccepted)
}

// forwardAuthRefused answers a check about a request that must not pass
// whoever asks: 403, which every forward-auth proxy passes on as a denial.
func (h *Handler) forwardAuthRefused(w http.ResponseWriter, reason string) {
	h.o.Metrics.Denied("path")
	pages.JSONError(w, http.StatusForbidden, "forbidden", reason)
}

func reasonOf(err error) string {
	var ce *canonical.Error
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return "it cannot be read"
}

// jwks serves the public keys that verify the assertion header.
func (h *Handler) jwks(w http.ResponseWriter, r *http.Request) {
	if h.o.Assertion == nil {
		pages.JSONError(w, http.StatusNotFound, "not_found", "identity assertions are disabled")
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_, _ = w.Write(h.o.Assertion.JWKS())
}

// originalRequest is the canonical method and path of the request a
// forward-auth call asks about, believed only from a trusted proxy. An
// unknown original request gives routeUnknown; one that is known but not
// canonical gives a reason to refuse it.
func (h *Handler) originalRequest(r *http.Request) (t target, refused string) {
	unknown := target{kind: routeUnknown, method: http.MethodGet}
	if !h.trusted.trusts(r) {
		return unknown, ""
	}
	raw := r.Header.Get("X-Original-URL")
	if raw == "" {
		raw = r.Header.Get("X-Forwarded-Uri")
	}
	if raw == "" {
		return unknown, ""
	}
	method := http.MethodGet
	m := r.Header.Get("X-Forwarded-Method") // Traefik, nginx as documented
	if m == "" {
		m = r.Header.Get("X-Original-Method") // ingress-nginx's auth-url
	}
	if m != "" {
		method = canonicalMethod(m)
		if !isToken(method) {
			return unknown, "the original request method is not a valid method"
		}
	}
	// nginx sends a whole URL ($scheme://$host$request_uri), Traefik a
	// path. A value starting with "//" is a path (never a host), and so is
	// anything else that is not an http(s) URL.
	path, ok := canonical.RawPath(raw)
	if !ok {
		return unknown, "the original request URL is not a path or an http(s) URL"
	}
	return h.originalTarget(method, path)
}

// isToken reports whether m is an HTTP token (RFC 9110), as a method must be.
func isToken(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
