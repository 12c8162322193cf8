// Package proxy is Gatehouse's HTTP front: it routes Gatehouse's own
// endpoints, decides for every other request whether it may pass, and
// forwards it to the upstream with the identity attached.
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/assertion"
	"github.com/gatehouse/gatehouse/canonical"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/metrics"
	"github.com/gatehouse/gatehouse/oauthserver"
	"github.com/gatehouse/gatehouse/oauthserver/workload"
	"github.com/gatehouse/gatehouse/tokens"

	"github.com/gatehouse/gatehouse/authn"
	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
)

// Options are what the proxy handler is built from. Configs must have been
// validated; the parsed values come from their Validate methods.
type Options struct {
	Server    ServerConfig
	Upstream  UpstreamConfig
	Headers   HeadersConfig
	PublicURL *url.URL
	Target    *url.URL
	Trusted   []netip.Prefix
	Routes    Routes
	Policies  filters.Policies
	Login     *authn.Login
	Revalid   *authn.Revalidator
	Sessions  *session.Manager
	Assertion *assertion.Signer   // nil: no assertion header
	Tokens    *tokens.Store       // nil: bearer tokens are refused
	Workload  *workload.Verifier  // bearer JWTs from auth.jwt_issuers; nil: none
	OAuth     *oauthserver.Server // machine-facing endpoints; nil: none
	Cookie    string              // session cookie name
	Pages     *pages.Renderer
	Logger    *slog.Logger
	Metrics   *metrics.Metrics // may be nil
}

// Handler is the whole of Gatehouse's HTTP surface on server.listen.
type Handler struct {
	o      Options
	prefix string
	// forward sends an allowed request on: the reverse proxy to the
	// upstream (a field so benchmarks can measure the gate alone).
	forward http.Handler
	headers *identityHeaders
	values  *valuesCache
	trusted trustedProxies
	mux     *http.ServeMux
}

// New builds the handler.
func New(o Options) *Handler {
	if o.OAuth == nil {
		// Still answer the device flow's endpoints, in OAuth's terms.
		o.OAuth = oauthserver.New(oauthserver.Config{})
	}
	h := &Handler{o: o, prefix: o.Server.PathPrefix, trusted: trustedProxies(o.Trusted)}
	h.headers = newIdentityHeaders(o.Headers)
	h.values = newValuesCache(4096)
	h.forward = newUpstream(o.Target, o.Upstream, h.headers, h.trusted, o.Cookie, o.Pages, o.Logger, o.Metrics)

	mux := http.NewServeMux()
	p := h.prefix
	mux.HandleFunc("GET "+p+"/sign_in", o.Login.SignIn)
	mux.HandleFunc("GET "+p+"/start", o.Login.Start)
	for _, prov := range o.Login.Providers() {
		mux.Handle("GET "+p+"/callback/"+prov.Name(), o.Login.Callback(prov))
	}
	mux.HandleFunc("GET "+p+"/sign_out", o.Login.SignOut)
	mux.HandleFunc("POST "+p+"/sign_out", o.Login.SignOut)
	// The "you are signed out" page (also the post-logout redirect URI
	// registered at providers).
	mux.HandleFunc("GET "+p+"/signed_out", func(w http.ResponseWriter, r *http.Request) {
		o.Pages.SignedOut(w, p+"/sign_in")
	})
	mux.HandleFunc("GET "+p+"/userinfo", h.userinfo)
	mux.HandleFunc("GET "+p+"/auth", h.forwardAuth)
	mux.HandleFunc("GET "+p+"/jwks.json", h.jwks)
	o.OAuth.Register(mux, p)
	h.mux = mux
	return h
}

// ServeHTTP brings the request to its canonical form (SPEC "Canonical
// requests"), then routes it: Gatehouse's endpoints under the prefix,
// /ping and /ready, and everything else to the upstream gate. Every
// decision and the upstream see the same canonical method and path.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, ok := rawRequestPath(r)
	if !ok {
		h.refusePath(w, r, &canonical.Error{Reason: "the request target is not a path"})
		return
	}
	// Envoy's ext_authz appends the original path to the check URL: that
	// path is the request being asked about, never a route of ours, so it
	// is recognised before anything could resolve it elsewhere.
	if rest, ok := strings.CutPrefix(raw, h.prefix+"/auth/"); ok {
		h.envoyCheck(w, r, "/"+rest)
		return
	}
	p, err := canonical.Parse(raw, h.o.Routes.Paths)
	if err != nil {
		h.refusePath(w, r, err)
		return
	}
	r = withCanonicalURL(r, p)
	clean := p.Decoded
	switch {
	case clean == "/ping" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		noteHandler(r.Context(), "ping")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("OK\n"))
	case clean == "/ready" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		noteHandler(r.Context(), "ready")
		h.ready(w, r)
	case clean == "/.well-known/oauth-authorization-server" && h.o.OAuth.HasMetadata() && r.Method == http.MethodGet:
		noteHandler(r.Context(), "metadata")
		h.o.OAuth.Metadata(w, r)
	case strings.HasPrefix(clean, h.prefix+"/auth/"):
		// Reached through an escape (/oauth2/%61uth/...): still only the check.
		h.envoyCheck(w, r, strings.TrimPrefix(p.Escaped, h.prefix+"/auth"))
	case clean == h.prefix || strings.HasPrefix(clean, h.prefix+"/"):
		h.serveOwn(w, r, clean)
	default:
		noteHandler(r.Context(), "upstream")
		h.gate(w, r, target{method: r.Method, path: p})
	}
}

// serveOwn serves an endpoint under the prefix. Every answer there is
// private: not cached, not framed, no Referer.
func (h *Handler) serveOwn(w http.ResponseWriter, r *http.Request, clean string) {
	pages.NoStore(w.Header())
	// Route on the decoded canonical path ("/oauth2/%73ign_in" is
	// sign_in); dot segments never reach here.
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path, u.RawPath = clean, ""
	r2.URL = &u
	// Our endpoints have exactly one name each: a path with "//" (which
	// ServeMux would redirect to its merged form) names none of them.
	var handler http.Handler
	pattern := ""
	exact := !strings.Contains(clean, "//")
	if exact {
		handler, pattern = h.mux.Handler(r2)
	}
	noteHandler(r.Context(), handlerName(pattern, h.prefix))
	if pattern == "" && exact && h.otherMethodServes(r2) {
		w.Header().Set("Allow", "GET, HEAD, POST")
		if pages.WantsJSON(r) {
			pages.JSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed")
			return
		}
		h.o.Pages.Error(w, http.StatusMethodNotAllowed, "Method not allowed", "This page does not accept that kind of request.", "")
		return
	}
	if pattern == "" {
		if pages.WantsJSON(r) {
			pages.JSONError(w, http.StatusNotFound, "not_found", "no such endpoint")
			return
		}
		h.o.Pages.Error(w, http.StatusNotFound, "Not found", "There is no such page.", "")
		return
	}
	handler.ServeHTTP(w, r2)
}

// otherMethodServes reports whether the path exists for GET or POST, so
// a wrong method gets 405 rather than 404.
func (h *Handler) otherMethodServes(r *http.Request) bool {
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		probe := new(http.Request)
		*probe = *r
		probe.Method = m
		if _, pattern := h.mux.Handler(probe); pattern != "" {
			return true
		}
	}
	return false
}

// handlerName turns a mux pattern such as "GET /oauth2/callback/corp"
// into a metrics label such as "callback".
func handlerName(pattern, prefix string) string {
	if pattern == "" {
		return "not_found"
	}
	_, path, _ := strings.Cut(pattern, " ")
	name := strings.TrimPrefix(strings.TrimPrefix(path, prefix), "/")
	name, _, _ = strings.Cut(name, "/")
	return strings.TrimSuffix(name, ".json")
}

// gate decides whether a request for the upstream may pass.
func (h *Handler) gate(w http.ResponseWriter, r *http.Request, t target) {
	if t.permits(func(method, path string) bool { return matchAny(h.o.Routes.SkipAuth, method, path) }) {
		h.forward.ServeHTTP(w, r)
		return
	}
	f, ok := h.authorize(w, r, t)
	if !ok {
		return
	}
	noteUser(r.Context(), f.identity.User)
	if !h.sign(w, r, f) {
		return
	}
	f.values = h.values.get(f.cacheKey, f.identity)
	h.forward.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), forwardKey, f)))
}

// sign adds the assertion to f. Upstreams may rely on it, so a request is
// never forwarded without it; when it returns false it has answered.
func (h *Handler) sign(w http.ResponseWriter, r *http.Request, f *forwarded) bool {
	if h.o.Assertion == nil {
		return true
	}
	jwt, err := h.o.Assertion.SignCached(f.cacheKey, f.identity, f.sid)
	if err != nil {
		h.o.Logger.Error("signing assertion", "err", err)
		if pages.WantsJSON(r) {
			pages.JSONError(w, http.StatusInternalServerError, "server_error", "the identity assertion could not be signed")
		} else {
			h.o.Pages.Error(w, http.StatusInternalServerError, "Internal error", "Your identity could not be signed for the service. Please try again.", "")
		}
		return false
	}
	f.assertion = jwt
	return true
}

// authorize authenticates the request (a bearer token, else the session
// cookie) and applies the provider's filters, the token's scopes and the
// route's policy. When it returns false it has written the answer.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request, t target) (*forwarded, bool) {
	if raw, ok := bearer(r); ok {
		return h.authorizeBearer(w, r, raw, t)
	}
	s, err := h.o.Sessions.Load(r.Context(), r)
	switch {
	case errors.Is(err, session.ErrNoSession):
		h.unauthenticated(w, r, t)
		return nil, false
	case err != nil:
		h.o.Logger.Error("session store unavailable", "err", err)
		h.unavailable(w, r)
		return nil, false
	}
	s, ok := h.revalidate(w, r, s)
	if !ok {
		return nil, false
	}
	// The assertion is reused per session until the identity is revalidated.
	f := &forwarded{identity: s.Identity, sid: s.ID(), cacheKey: s.ID() + "|" + strconv.FormatInt(s.ValidatedAt.UnixNano(), 36)}
	if s.Token != nil {
		f.accessToken = s.Token.AccessToken
	}
	if d := h.check(f.identity, false, t); !d.Allowed {
		h.o.Logger.Info("request denied", "event", "authz", "reason", string(d.Kind), "user", s.Identity.User, "path", t.path.Decoded)
		h.denied(w, r, f.identity, d)
		return nil, false
	}
	if t.kind == routeUnknown && len(h.o.Policies) > 0 {
		// Route policies exist but the route is unknown (no original URL
		// from a trusted proxy): fail closed rather than skip them.
		h.forwardAuthRefused(w, "the original request URL is unknown, so route policies cannot be applied")
		return nil, false
	}
	return f, true
}

// check applies the provider's filters (again on every request, so a
// tightened list or a removed provider takes effect for live sessions
// too) and the route's policy. Static machine tokens and workload JWTs
// have no sign-in provider: the operator who listed them (or the issuer's
// claim rules) vouched for them; only policies apply.
func (h *Handler) check(id identity.Identity, machine bool, t target) filters.Decision {
	if !machine {
		prov, ok := h.o.Login.Provider(id.Provider)
		if !ok {
			return filters.Decision{Kind: filters.KindRevoked}
		}
		if d := prov.Rule().Check(id); !d.Allowed {
			return d
		}
	}
	if t.kind != routeKnown {
		return filters.Allow
	}
	return t.restrict(h.o.Policies, id)
}

// authorizeBearer authenticates by an Authorization: Bearer token alone.
func (h *Handler) authorizeBearer(w http.ResponseWriter, r *http.Request, raw string, tgt target) (*forwarded, bool) {
	if h.o.Workload != nil && h.o.Tokens != nil && !strings.HasPrefix(raw, tokens.Prefix) && workload.LooksLikeJWT(raw) {
		return h.authorizeWorkload(w, r, raw, tgt)
	}
	if h.o.Tokens == nil {
		bearerError(w, http.StatusUnauthorized, "invalid_token", "bearer tokens are not enabled here")
		return nil, false
	}
	tok, err := h.o.Tokens.Lookup(r.Context(), raw)
	switch {
	case errors.Is(err, tokens.ErrUnknown):
		bearerError(w, http.StatusUnauthorized, "invalid_token", "the token is unknown, expired or revoked")
		return nil, false
	case err != nil:
		h.o.Logger.Error("token store unavailable", "err", err)
		h.unavailable(w, r)
		return nil, false
	}
	switch tgt.kind {
	case routeUnknown:
		// A token reaches only its scopes; with the route unknown they
		// cannot be checked, so nothing is reached.
		h.o.Metrics.Denied("scope")
		bearerError(w, http.StatusForbidden, "insufficient_scope", "the original request URL is unknown, so the token's scopes cannot be checked")
		return nil, false
	case routeKnown:
		if !tgt.permits(func(method, path string) bool { return h.o.Tokens.Scopes().Allows(tok.Scopes, method, path) }) {
			h.o.Metrics.Denied("scope")
			bearerError(w, http.StatusForbidden, "insufficient_scope", "the token's scopes do not reach this request")
			return nil, false
		}
	}
	if d := h.check(tok.Identity, tok.Static, tgt); !d.Allowed {
		h.o.Metrics.Denied(string(d.Kind))
		h.o.Logger.Info("request denied", "event", "authz", "reason", string(d.Kind), "user", tok.Identity.User, "path", tgt.path.Decoded)
		pages.JSONError(w, http.StatusForbidden, "forbidden", strings.TrimSuffix(d.Message(), "."))
		return nil, false
	}
	return &forwarded{identity: tok.Identity, sid: tok.ID, cacheKey: "t|" + tok.ID, bearer: true}, true
}

// bearer returns the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func bearerError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse", error="`+code+`"`)
	pages.JSONError(w, status, code, description)
}

// revalidate re-checks the session with its provider when it is due.
// When it returns false it has written the answer.
func (h *Handler) revalidate(w http.ResponseWriter, r *http.Request, s *session.Session) (*session.Session, bool) {
	fresh, err := h.o.Revalid.Check(r.Context(), s)
	switch {
	case err == nil:
		return fresh, true
	case errors.Is(err, authn.ErrRevoked):
		h.o.Sessions.ClearCookie(w)
		h.denied(w, r, s.Identity, filters.Decision{Kind: filters.KindRevoked})
	case errors.Is(err, authn.ErrProviderDown):
		w.Header().Set("Retry-After", "30")
		if pages.WantsJSON(r) {
			pages.JSONError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the sign-in provider cannot confirm your access right now")
		} else {
			h.o.Pages.Error(w, http.StatusServiceUnavailable, "Sign-in provider unavailable",
				"Your access cannot be confirmed with your sign-in provider right now, so nobody is let through. Please try again in a moment.", "")
		}
	default:
		h.o.Logger.Error("revalidating session", "err", err)
		h.unavailable(w, r)
	}
	return nil, false
}

func (h *Handler) unauthenticated(w http.ResponseWriter, r *http.Request, t target) {
	api := t.kind == routeKnown && t.matches(func(_, path string) bool { return matchAny(h.o.Routes.API, "", path) })
	if api || pages.WantsJSON(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse"`)
		pages.JSONError(w, http.StatusUnauthorized, "unauthorized", "authentication required")
		return
	}
	signIn := h.o.Login.SignInURL(r.URL.RequestURI())
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		// Redirecting would turn a POST into a GET and drop its body.
		h.o.Pages.Error(w, http.StatusUnauthorized, "Sign-in required", "Please sign in, then try again.", signIn)
		return
	}
	pages.NoStore(w.Header())
	http.Redirect(w, r, signIn, http.StatusFound)
}

func (h *Handler) denied(w http.ResponseWriter, r *http.Request, id identity.Identity, d filters.Decision) {
	h.o.Metrics.Denied(string(d.Kind))
	if pages.WantsJSON(r) {
		pages.JSONError(w, http.StatusForbidden, "forbidden", strings.TrimSuffix(d.Message(), "."))
		return
	}
	who := id.Email
	if who == "" {
		who = id.User
	}
	h.o.Pages.Denied(w, d.Message(), who, h.prefix+"/sign_out?rd="+url.QueryEscape(h.prefix+"/sign_in"))
}

func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "5")
	if pages.WantsJSON(r) {
		pages.JSONError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the session store is unavailable")
		return
	}
	h.o.Pages.Error(w, http.StatusServiceUnavailable, "Service unavailable",
		"Sessions cannot be checked right now, so nobody is let through. Please try again in a moment.", "")
}

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
	if !ok || !h.sign(w, r, f) {
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

// ready serves /ready: 200 only when the session store and every
// provider can be used.
func (h *Handler) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	checks := map[string]string{}
	ok := true
	if err := h.o.Sessions.Store().Ping(ctx); err != nil {
		checks["session_store"] = "unavailable"
		ok = false
	} else {
		checks["session_store"] = "ok"
	}
	for _, p := range h.o.Login.Providers() {
		err := p.Ready(ctx)
		h.o.Metrics.SetProviderUp(p.Name(), err == nil)
		if err != nil {
			checks["provider:"+p.Name()] = "unavailable"
			ok = false
		} else {
			checks["provider:"+p.Name()] = "ok"
		}
	}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]any{"ready": ok, "checks": checks})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
