// Package proxy is Gatehouse's HTTP front: it routes Gatehouse's own
// endpoints, decides for every other request whether it may pass, and
// forwards it to the upstream with the identity attached.
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/gatehouse/gatehouse/assertion"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/metrics"
	"github.com/gatehouse/gatehouse/tokens"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

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
	Assertion *assertion.Signer // nil: no assertion header
	Tokens    *tokens.Store     // nil: bearer tokens are refused
	Device    *authn.Device     // nil: device flow off
	Cookie    string            // session cookie name
	Pages     *pages.Renderer
	Logger    *slog.Logger
	Metrics   *metrics.Metrics // may be nil
}

// Handler is the whole of Gatehouse's HTTP surface on server.listen.
type Handler struct {
	o        Options
	prefix   string
	upstream *upstream
	headers  *identityHeaders
	trusted  trustedProxies
	mux      *http.ServeMux
}

// New builds the handler.
func New(o Options) *Handler {
	h := &Handler{o: o, prefix: o.Server.PathPrefix, trusted: trustedProxies(o.Trusted)}
	h.headers = newIdentityHeaders(o.Headers)
	h.upstream = newUpstream(o.Target, o.Upstream, h.headers, h.trusted, o.Cookie, o.Pages, o.Logger, o.Metrics)

	mux := http.NewServeMux()
	p := h.prefix
	mux.HandleFunc("GET "+p+"/sign_in", o.Login.SignIn)
	mux.HandleFunc("GET "+p+"/start", o.Login.Start)
	for _, prov := range o.Login.Providers() {
		mux.Handle("GET "+p+"/callback/"+prov.Name(), o.Login.Callback(prov))
	}
	mux.HandleFunc("GET "+p+"/sign_out", o.Login.SignOut)
	mux.HandleFunc("POST "+p+"/sign_out", o.Login.SignOut)
	mux.HandleFunc("GET "+p+"/userinfo", h.userinfo)
	mux.HandleFunc("GET "+p+"/auth", h.forwardAuth)
	// Envoy's HTTP ext_authz appends the original path to the check URL
	// and keeps the original method.
	mux.HandleFunc(p+"/auth/", h.forwardAuth)
	mux.HandleFunc("GET "+p+"/jwks.json", h.jwks)
	if o.Tokens != nil {
		mux.HandleFunc("POST "+p+"/revoke", authn.Revoke(o.Tokens, o.Logger))
	}
	if d := o.Device; d != nil {
		mux.HandleFunc("POST "+p+"/device/code", d.Code)
		mux.HandleFunc("GET "+p+"/device", d.Page)
		mux.HandleFunc("POST "+p+"/device", d.Page)
		mux.HandleFunc("POST "+p+"/token", d.Token)
	} else {
		mux.HandleFunc("POST "+p+"/device/code", authn.DeviceFlowDisabled)
		mux.HandleFunc("POST "+p+"/token", authn.DeviceFlowDisabled)
	}
	h.mux = mux
	return h
}

// ServeHTTP routes by the cleaned path: Gatehouse's endpoints under the
// prefix, /ping and /ready, and everything else to the upstream gate.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	clean := CleanPath(r)
	switch {
	case clean == "/ping" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		noteHandler(r.Context(), "ping")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("OK\n"))
	case clean == "/ready" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		noteHandler(r.Context(), "ready")
		h.ready(w, r)
	case clean == "/.well-known/oauth-authorization-server" && h.o.Device != nil && r.Method == http.MethodGet:
		noteHandler(r.Context(), "metadata")
		h.o.Device.Metadata(w, r)
	case clean == h.prefix || strings.HasPrefix(clean, h.prefix+"/"):
		h.serveOwn(w, r, clean)
	default:
		noteHandler(r.Context(), "upstream")
		h.gate(w, r, clean)
	}
}

// serveOwn serves an endpoint under the prefix. Every answer there is
// private: not cached, not framed, no Referer.
func (h *Handler) serveOwn(w http.ResponseWriter, r *http.Request, clean string) {
	pages.NoStore(w.Header())
	// Route on the cleaned path, so "/oauth2//sign_in" is sign_in and
	// "/oauth2/../admin" never reaches here.
	r2 := r.Clone(r.Context())
	r2.URL.Path, r2.URL.RawPath = clean, ""
	handler, pattern := h.mux.Handler(r2)
	noteHandler(r.Context(), handlerName(pattern, h.prefix))
	if pattern == "" && h.otherMethodServes(r2) {
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
		probe := r.Clone(r.Context())
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
func (h *Handler) gate(w http.ResponseWriter, r *http.Request, clean string) {
	if matchAny(h.o.Routes.SkipAuth, r.Method, clean) {
		h.upstream.ServeHTTP(w, r)
		return
	}
	f, ok := h.authorize(w, r, r.Method, clean)
	if !ok {
		return
	}
	noteUser(r.Context(), f.identity.User)
	if !h.sign(w, r, f) {
		return
	}
	h.upstream.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), forwardKey, f)))
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
// route's policy. When it returns false it has written the answer. With
// an empty clean path (forward-auth without a trusted original URL) no
// route policy or scope applies.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request, method, clean string) (*forwarded, bool) {
	if raw, ok := bearer(r); ok {
		return h.authorizeBearer(w, r, raw, method, clean)
	}
	s, err := h.o.Sessions.Load(r.Context(), r)
	switch {
	case errors.Is(err, session.ErrNoSession):
		h.unauthenticated(w, r, clean)
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
	f := &forwarded{identity: s.Identity, sid: s.ID(), cacheKey: s.ID() + "|" + s.ValidatedAt.String()}
	if s.Token != nil {
		f.accessToken = s.Token.AccessToken
	}
	if d := h.check(f.identity, false, method, clean); !d.Allowed {
		h.o.Logger.Info("request denied", "event", "authz", "reason", string(d.Kind), "user", s.Identity.User, "path", clean)
		h.denied(w, r, f.identity, d)
		return nil, false
	}
	return f, true
}

// check applies the provider's filters (again on every request, so a
// tightened list or a removed provider takes effect for live sessions
// too) and the route's policy. Static machine tokens have no provider:
// the operator who listed them vouched for them; only policies apply.
func (h *Handler) check(id identity.Identity, static bool, method, clean string) filters.Decision {
	if !static {
		prov, ok := h.o.Login.Provider(id.Provider)
		if !ok {
			return filters.Decision{Kind: filters.KindRevoked}
		}
		if d := prov.Rule().Check(id); !d.Allowed {
			return d
		}
	}
	if clean == "" {
		return filters.Allow
	}
	return h.o.Policies.Check(method, clean, id)
}

// authorizeBearer authenticates by an Authorization: Bearer token alone.
func (h *Handler) authorizeBearer(w http.ResponseWriter, r *http.Request, raw, method, clean string) (*forwarded, bool) {
	if h.o.Tokens == nil {
		bearerError(w, http.StatusUnauthorized, "invalid_token", "bearer tokens are not enabled here")
		return nil, false
	}
	t, err := h.o.Tokens.Lookup(r.Context(), raw)
	switch {
	case errors.Is(err, tokens.ErrUnknown):
		bearerError(w, http.StatusUnauthorized, "invalid_token", "the token is unknown, expired or revoked")
		return nil, false
	case err != nil:
		h.o.Logger.Error("token store unavailable", "err", err)
		h.unavailable(w, r)
		return nil, false
	}
	if clean != "" && !h.o.Tokens.Scopes().Allows(t.Scopes, method, clean) {
		h.o.Metrics.Denied("scope")
		bearerError(w, http.StatusForbidden, "insufficient_scope", "the token's scopes do not reach this request")
		return nil, false
	}
	if d := h.check(t.Identity, t.Static, method, clean); !d.Allowed {
		h.o.Metrics.Denied(string(d.Kind))
		h.o.Logger.Info("request denied", "event", "authz", "reason", string(d.Kind), "user", t.Identity.User, "path", clean)
		pages.JSONError(w, http.StatusForbidden, "forbidden", strings.TrimSuffix(d.Message(), "."))
		return nil, false
	}
	return &forwarded{identity: t.Identity, sid: t.ID, cacheKey: "t|" + t.ID, bearer: true}, true
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

func (h *Handler) unauthenticated(w http.ResponseWriter, r *http.Request, clean string) {
	if matchAny(h.o.Routes.API, "", clean) || pages.WantsJSON(r) {
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
	f, ok := h.authorize(w, r, "", "")
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

// forwardAuth serves GET /oauth2/auth for nginx auth_request, Traefik
// forwardAuth and Envoy: 202 with identity headers, 401 or 403. It always
// answers JSON; the proxy in front turns a 401 into a sign-in redirect.
func (h *Handler) forwardAuth(w http.ResponseWriter, r *http.Request) {
	method, path, ok := h.originalRequest(r)
	if !ok && len(h.o.Policies) > 0 {
		// Route policies exist but the route is unknown (no original URL
		// from a trusted proxy): fail closed rather than skip them.
		pages.JSONError(w, http.StatusForbidden, "forbidden", "the original request URL is unknown, so route policies cannot be applied")
		return
	}
	r = r.Clone(r.Context())
	r.Header.Set("Accept", "application/json")
	f, ok := h.authorize(w, r, method, path)
	if !ok || !h.sign(w, r, f) {
		return
	}
	noteUser(r.Context(), f.identity.User)
	id := f.identity
	hdr := w.Header()
	setIf(hdr, "X-Auth-Request-User", id.User)
	setIf(hdr, "X-Auth-Request-Email", id.Email)
	setIf(hdr, "X-Auth-Request-Groups", strings.Join(id.Groups, ","))
	setIf(hdr, "X-Auth-Request-Preferred-Username", id.PreferredUsername)
	if f.assertion != "" {
		hdr.Set(h.o.Headers.Assertion.Header, f.assertion)
	}
	w.WriteHeader(http.StatusAccepted)
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

// originalRequest is the method and cleaned path of the request a
// forward-auth call asks about, believed only from a trusted proxy.
func (h *Handler) originalRequest(r *http.Request) (method, path string, ok bool) {
	if !h.trusted.trusts(r) {
		return "", "", false
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, h.prefix+"/auth/"); ok {
		return r.Method, CleanPath(&http.Request{URL: &url.URL{Path: "/" + rest}}), true
	}
	raw := r.Header.Get("X-Original-URL")
	if raw == "" {
		raw = r.Header.Get("X-Forwarded-Uri")
	}
	if raw == "" {
		return "", "", false
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", false
	}
	method = r.Header.Get("X-Forwarded-Method")
	if method == "" {
		method = http.MethodGet
	}
	return method, CleanPath(&http.Request{URL: u}), true
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
		if err := p.Ready(ctx); err != nil {
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
