package proxy

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/oauthserver/workload"
	"github.com/gatehouse/gatehouse/tokens"

	"github.com/gatehouse/gatehouse/authn"
	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
)

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
	f := &forwarded{identity: s.Identity, sid: s.ID(), cacheKey: sessionCacheKey(s)}
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
	if d := t.restrict(h.o.Policies, id); !d.Allowed || t.route == nil {
		return d
	}
	// A route's own filters and policies hold on top of the global ones,
	// for every kind of identity, as policies do.
	if d := t.restrict(t.route.filter, id); !d.Allowed {
		return d
	}
	return t.restrict(t.route.policies, id)
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
	outOfScope := func(w http.ResponseWriter) {
		bearerError(w, http.StatusForbidden, "insufficient_scope", "the token's scopes do not reach this request")
	}
	if !h.bearerMayPass(w, tgt, tok.Identity, tok.Scopes, tok.Static, outOfScope) {
		return nil, false
	}
	return &forwarded{identity: tok.Identity, sid: tok.ID, cacheKey: "t|" + tok.ID, bearer: true}, true
}

// bearerMayPass applies a bearer credential's scopes (outOfScope answers
// a request they do not reach), then what every request gets: the
// provider's filters (unless machine: static tokens and workload JWTs have
// none) and the route's policies. When it returns false it has answered.
func (h *Handler) bearerMayPass(w http.ResponseWriter, tgt target, id identity.Identity, scopes []string, machine bool, outOfScope func(http.ResponseWriter)) bool {
	switch tgt.kind {
	case routeUnknown:
		// A token reaches only its scopes; with the route unknown they
		// cannot be checked, so nothing is reached.
		h.o.Metrics.Denied("scope")
		bearerError(w, http.StatusForbidden, "insufficient_scope", "the original request URL is unknown, so the token's scopes cannot be checked")
		return false
	case routeKnown:
		if !tgt.permits(func(method, path string) bool { return h.o.Tokens.Scopes().Allows(scopes, method, path) }) {
			h.o.Metrics.Denied("scope")
			outOfScope(w)
			return false
		}
	}
	if d := h.check(id, machine, tgt); !d.Allowed {
		h.o.Metrics.Denied(string(d.Kind))
		h.o.Logger.Info("request denied", "event", "authz", "reason", string(d.Kind), "user", id.User, "path", tgt.path.Decoded)
		pages.JSONError(w, http.StatusForbidden, "forbidden", strings.TrimSuffix(d.Message(), "."))
		return false
	}
	return true
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
	apiRoutes := h.o.Routes.API
	if t.route != nil {
		apiRoutes = t.route.api
	}
	api := t.kind == routeKnown && t.matches(func(_, path string) bool { return matchAny(apiRoutes, "", path) })
	if api || pages.WantsJSON(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse"`)
		pages.JSONError(w, http.StatusUnauthorized, "unauthorized", "authentication required")
		return
	}
	var signIn string
	if t.route != nil && !h.onAuthHost(r) {
		// Sign-in happens on the auth host only.
		signIn = h.startURL(w, r)
	} else {
		signIn = h.o.Login.SignInURL(r.URL.RequestURI())
	}
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

// sessionCacheKey is ID|ValidatedAt (base 36): what the assertion and
// identity values of a session may be reused for, until it is
// revalidated. Built in a stack buffer: one allocation, not three.
func sessionCacheKey(s *session.Session) string {
	var buf [128]byte
	b := append(buf[:0], s.ID()...)
	b = append(b, '|')
	b = strconv.AppendInt(b, s.ValidatedAt.UnixNano(), 36)
	return string(b)
}
