// Package proxy is Gatehouse's HTTP front: it routes Gatehouse's own
// endpoints, decides for every other request whether it may pass, and
// forwards it to the upstream with the identity attached.
package proxy

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/assertion"
	"github.com/gatehouse/gatehouse/canonical"
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
	// RouteTable holds the routes (several upstreams, by host and path);
	// nil: the single upstream at Target.
	RouteTable *RouteTable
	// Handoff gives each route host a session of its own (package
	// handoff); nil when a shared cookie_domain does, or without routes.
	Handoff Handoff
	// Account serves GET and POST <prefix>/sessions (the person's
	// sessions page); nil: not served.
	Account http.Handler
}

// Handoff is what the proxy needs of the hand-off between the auth host
// and route hosts (see package handoff).
type Handoff interface {
	// ServeHTTP serves GET <prefix>/handoff on a route host.
	http.Handler
	// Bind sets the browser's binding cookie on a route host before it is
	// sent to the auth host, and returns what /start passes on.
	Bind(w http.ResponseWriter) (string, error)
}

// Handler is the whole of Gatehouse's HTTP surface on server.listen.
type Handler struct {
	o      Options
	prefix string
	// forward sends an allowed request on: the reverse proxy to the
	// upstream (a field so benchmarks can measure the gate alone).
	forward http.Handler
	// routeForward are the routes' reverse proxies, by Route.index.
	routeForward []http.Handler
	publicHost   string // canonical host name of public_url: the auth host
	authBase     string // public_url without a trailing "/" (with routes)
	headers      *identityHeaders
	values       *valuesCache
	trusted      trustedProxies
	mux          *http.ServeMux
}

// New builds the handler.
func New(o Options) *Handler {
	if o.OAuth == nil {
		// Still answer the device flow's endpoints, in OAuth's terms.
		o.OAuth = oauthserver.New(oauthserver.Config{})
	}
	h := &Handler{o: o, prefix: o.Server.PathPrefix, trusted: trustedProxies(o.Trusted)}
	h.values = newValuesCache(4096)
	if o.RouteTable == nil {
		h.headers = newIdentityHeaders(o.Headers)
		h.forward = newUpstream(o.Target, o.Upstream, h.headers, h.trusted, o.Cookie, o.Pages, o.Logger, o.Metrics)
	} else {
		h.buildRoutes()
	}

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
	if o.Handoff != nil {
		mux.Handle("GET "+p+"/handoff", o.Handoff)
	}
	if o.Account != nil {
		mux.Handle("GET "+p+"/sessions", o.Account)
		mux.Handle("POST "+p+"/sessions", o.Account)
	}
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
		t := target{method: r.Method, path: p}
		if h.o.RouteTable != nil {
			// Routes are chosen on the canonical path, like every
			// decision, and every reading an upstream may make of it
			// must choose the same one.
			var ambiguous bool
			if t.route, ambiguous = h.o.RouteTable.MatchPath(r.Host, p); ambiguous {
				noteHandler(r.Context(), "bad_request")
				h.o.Metrics.Denied("path")
				h.refuseAmbiguousRoute(w, r)
				return
			}
			if t.route == nil {
				noteHandler(r.Context(), "no_route")
				h.noRoute(w, r)
				return
			}
		}
		noteHandler(r.Context(), "upstream")
		h.gate(w, r, t)
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
	if pattern != "" && (h.toAuthHost(w, r2, clean) || h.personalOnAuthHostOnly(w, r2, clean)) {
		return
	}
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
	forward, skipAuth := h.forward, h.o.Routes.SkipAuth
	if t.route != nil {
		forward, skipAuth = h.routeForward[t.route.index], t.route.skipAuth
	}
	if t.permits(func(method, path string) bool { return matchAny(skipAuth, method, path) }) {
		forward.ServeHTTP(w, r)
		return
	}
	f, ok := h.authorize(w, r, t)
	if !ok {
		return
	}
	noteUser(r.Context(), f.identity.User)
	if !h.sign(w, r, f, t.route) {
		return
	}
	f.values = h.values.get(f.cacheKey, f.identity)
	// Behind Observe (always, in the server) the identity rides on the
	// request's own note, which is this request's alone: no new context
	// and request copy for each request.
	if n, ok := r.Context().Value(noteKey).(*requestNote); ok {
		n.forward = f
		forward.ServeHTTP(w, r)
		return
	}
	forward.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), forwardKey, f)))
}

// sign adds the assertion to f, for route's audience when there is a
// route (the cache is keyed by audience too).
// Upstreams may rely on it, so a request is never forwarded without it;
// when it returns false it has answered.
func (h *Handler) sign(w http.ResponseWriter, r *http.Request, f *forwarded, route *Route) bool {
	if h.o.Assertion == nil {
		return true
	}
	var jwt string
	var err error
	audience := h.o.Assertion.Audience()
	if route != nil {
		audience = route.audience(r.Host)
	}
	jwt, err = h.o.Assertion.SignCachedUntil(audience, f.cacheKey, f.identity, f.sid, f.until)
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
