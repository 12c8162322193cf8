package authn

import (
	"context"
	"crypto/hmac"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/metrics"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
)

// Login serves the sign-in dance: the sign-in page, /start, the provider
// callbacks and sign-out.
type Login struct {
	providers   []Provider
	byName      map[string]Provider
	sessions    *session.Manager
	pages       *pages.Renderer
	state       *stateCookies
	public      *url.URL
	prefix      string
	log         *slog.Logger
	metrics     *metrics.Metrics
	now         func() time.Time
	csrfKey     []byte // keys csrfToken
	linkByEmail bool
	clientIP    func(*http.Request) string
	skipButton  bool
	routeHost   func(host string) bool // hosts rd may name besides public's; nil: none
	handoff     Handoff                // nil: no hand-off
}

// ErrBadBinding is what Handoff.Issue returns for a binding it did not
// make: the browser is sent back to be bound again.
var ErrBadBinding = errors.New("hand-off: malformed binding")

// Handoff hands a signed-in browser over to a route host that cannot read
// the auth host's session cookie (see package handoff).
type Handoff interface {
	// Covers reports whether rd, an absolute URL SafeRedirectTo accepted,
	// is on a host that gets its session by hand-off.
	Covers(rd string) bool
	// Issue returns the URL on rd's host that exchanges a fresh code for
	// a session like s, for the browser bound with binding.
	Issue(ctx context.Context, s *session.Session, rd, binding string) (string, error)
}

// LoginConfig gathers what Login depends on.
type LoginConfig struct {
	Providers []Provider
	Sessions  *session.Manager
	Pages     *pages.Renderer
	PublicURL *url.URL // external base URL
	Prefix    string   // path prefix of Gatehouse's endpoints, e.g. "/oauth2"
	Secret    string   // session.secret, keys the sign-in state cookies
	Cookie    string   // session cookie name; state cookies derive theirs from it
	Secure    bool     // Secure attribute on cookies
	Logger    *slog.Logger
	Metrics   *metrics.Metrics // may be nil
	Now       func() time.Time // nil: time.Now
	// ClientIP tells where a sign-in comes from, for the sessions page;
	// nil: the TCP peer.
	ClientIP func(*http.Request) string
	// LinkAccountsByVerifiedEmail makes sign-ins of one verified e-mail
	// address with any provider one user (see identity.LinkByEmail).
	LinkAccountsByVerifiedEmail bool
	// SkipProviderButton (ui.skip_provider_button) makes the sign-in page
	// go straight to /start when there is exactly one provider.
	SkipProviderButton bool
	// RouteHost reports whether a host (any port) is one a route answers:
	// rd may name it. nil: only public_url's host.
	RouteHost func(host string) bool
	// Handoff gives route hosts sessions of their own; nil: none (a shared
	// cookie_domain, or no routes).
	Handoff Handoff
}

// NewLogin builds the sign-in handlers.
func NewLogin(c LoginConfig) *Login {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ClientIP == nil {
		c.ClientIP = peer
	}
	l := &Login{
		providers: c.Providers, byName: map[string]Provider{}, sessions: c.Sessions, pages: c.Pages,
		state:  newStateCookies(c.Secret, c.Cookie, c.Prefix+"/callback/", c.Secure, c.Now),
		public: c.PublicURL, prefix: c.Prefix, log: c.Logger, metrics: c.Metrics, now: c.Now,
		csrfKey:     []byte("gatehouse session csrf v1\x00" + c.Secret),
		linkByEmail: c.LinkAccountsByVerifiedEmail,
		clientIP:    c.ClientIP,
		skipButton:  c.SkipProviderButton,
		routeHost:   c.RouteHost,
		handoff:     c.Handoff,
	}
	for _, p := range c.Providers {
		l.byName[p.Name()] = p
	}
	return l
}

// CallbackURL is the redirect_uri registered with a provider called name.
func CallbackURL(public *url.URL, prefix, name string) string {
	return strings.TrimSuffix(public.String(), "/") + prefix + "/callback/" + name
}

// Providers returns the configured providers in button order.
func (l *Login) Providers() []Provider { return l.providers }

// Provider returns the provider called name, if any.
func (l *Login) Provider(name string) (Provider, bool) {
	p, ok := l.byName[name]
	return p, ok
}

// SignInURL is the sign-in page for a browser that wanted rd.
func (l *Login) SignInURL(rd string) string {
	return l.prefix + "/sign_in?rd=" + url.QueryEscape(rd)
}

// SignIn serves GET sign_in: one button per provider, or, with
// SkipProviderButton and a single provider, a redirect to its start.
func (l *Login) SignIn(w http.ResponseWriter, r *http.Request) {
	rd := l.safeRedirect(r.URL.Query().Get("rd"))
	start := func(p Provider) string {
		return l.prefix + "/start?provider=" + url.QueryEscape(p.Name()) + "&rd=" + url.QueryEscape(rd)
	}
	if l.skipButton && len(l.providers) == 1 {
		// A page with one button only costs a click. The redirect stays
		// a GET to /start, which sets the state cookie as the button would.
		pages.NoStore(w.Header())
		http.Redirect(w, r, start(l.providers[0]), http.StatusFound)
		return
	}
	buttons := make([]pages.ProviderButton, 0, len(l.providers))
	for _, p := range l.providers {
		buttons = append(buttons, pages.ProviderButton{Name: p.Name(), DisplayName: p.DisplayName(), StartURL: start(p)})
	}
	l.pages.SignIn(w, buttons)
}

// Start serves GET start: it remembers the sign-in in a state cookie and
// sends the browser to the provider.
func (l *Login) Start(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rd := l.safeRedirect(q.Get("rd"))
	if l.handoff != nil && l.handoff.Covers(rd) && l.handOff(w, r, rd, q.Get("binding")) {
		return
	}
	name := q.Get("provider")
	if name == "" && len(l.providers) == 1 {
		name = l.providers[0].Name()
	}
	if name == "" && len(l.providers) > 1 {
		// A route host sends browsers here without a provider: they
		// choose on the sign-in page.
		pages.NoStore(w.Header())
		http.Redirect(w, r, l.SignInURL(rd), http.StatusFound)
		return
	}
	p, ok := l.byName[name]
	if !ok {
		l.pages.Error(w, http.StatusBadRequest, "Unknown sign-in provider",
			"The sign-in link names a provider this site does not use.", l.prefix+"/sign_in")
		return
	}
	st := newLoginState(p.Name(), rd, l.now())
	target, err := p.AuthCodeURL(r.Context(), st)
	if err != nil {
		l.fail(w, r, p.Name(), err)
		return
	}
	l.state.prune(w, r)
	l.state.set(w, st)
	http.Redirect(w, r, target, http.StatusFound)
}

// safeRedirect is where rd may send a browser (see SafeRedirectTo).
func (l *Login) safeRedirect(rd string) string { return SafeRedirectTo(rd, l.public, l.routeHost) }

// handOff continues a browser a route host sent here (rd is on that
// host): signed in here, it goes back with a hand-off code; otherwise it
// signs in first, and the callback's redirect to rd brings it back here
// through the route host. It reports whether it answered.
func (l *Login) handOff(w http.ResponseWriter, r *http.Request, rd, binding string) bool {
	s, err := l.sessions.Load(r.Context(), r)
	switch {
	case errors.Is(err, session.ErrNoSession):
		return false
	case err != nil:
		l.log.Error("loading session for hand-off", "event", "handoff", "err", err)
		l.pages.Error(w, http.StatusServiceUnavailable, "Service unavailable",
			"Sessions cannot be checked right now. Please try again in a moment.", "")
		return true
	}
	pages.NoStore(w.Header())
	loc, err := "", ErrBadBinding
	if binding != "" {
		loc, err = l.handoff.Issue(r.Context(), s, rd, binding)
	}
	if errors.Is(err, ErrBadBinding) {
		// Not a route host's bounce (a link, a bookmark): only that host
		// can bind the browser a code is for, so the browser goes there
		// first and comes back bound.
		http.Redirect(w, r, rd, http.StatusFound)
		return true
	}
	if err != nil {
		l.log.Error("issuing hand-off code", "event", "handoff", "user", s.Identity.User, "err", err)
		l.pages.Error(w, http.StatusServiceUnavailable, "Service unavailable",
			"Your sign-in could not be passed on to that site right now. Please try again in a moment.", "")
		return true
	}
	l.log.Info("hand-off code issued", "event", "handoff", "user", s.Identity.User, "sid", s.ID())
	http.Redirect(w, r, loc, http.StatusFound)
	return true
}

// Callback serves GET callback/NAME for provider p.
func (l *Login) Callback(p Provider) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		st, err := l.state.take(w, r, q.Get("state"))
		if err != nil {
			l.log.Warn("sign-in rejected", "event", "login", "provider", p.Name(), "result", "bad_state")
			l.metrics.Login(p.Name(), "error")
			l.pages.Error(w, http.StatusBadRequest, "Sign-in expired",
				"This sign-in link is no longer valid (it was used already, expired, or started in another browser). Please start again.",
				l.prefix+"/sign_in")
			return
		}
		// State is bound to the provider it was issued for: a callback
		// arriving at another provider's path is a mix-up attempt.
		if st.Provider != p.Name() {
			l.log.Warn("sign-in rejected", "event", "login", "provider", p.Name(), "result", "provider_mismatch")
			l.metrics.Login(p.Name(), "error")
			l.pages.Error(w, http.StatusBadRequest, "Sign-in failed",
				"The sign-in answer came back for a different provider than the one you chose. Please start again.", l.prefix+"/sign_in")
			return
		}
		if e := q.Get("error"); e != "" {
			l.metrics.Login(p.Name(), "error")
			l.log.Info("sign-in refused by provider", "event", "login", "provider", p.Name(), "result", "provider_error", "error", truncate(e, 64))
			l.pages.Error(w, http.StatusForbidden, "Sign-in cancelled",
				"The sign-in provider did not complete the sign-in.", l.prefix+"/sign_in?rd="+url.QueryEscape(st.Redirect))
			return
		}
		id, tok, err := p.Finish(r.Context(), r, st)
		if err != nil {
			l.fail(w, r, p.Name(), err)
			return
		}
		id = l.link(id)
		if d := p.Rule().Check(id); !d.Allowed {
			l.metrics.Login(p.Name(), "denied")
			l.metrics.Denied(string(d.Kind))
			l.log.Info("sign-in denied", "event", "login", "provider", p.Name(), "result", "denied",
				"reason", string(d.Kind), "user", id.User, "email", id.Email)
			l.pages.Denied(w, d.Message(), id.Email, l.prefix+"/sign_in")
			return
		}
		// A sign-in always gets a new session id; a session the browser
		// still had ends here, so an id planted before sign-in is useless.
		if old, err := l.sessions.Load(r.Context(), r); err == nil {
			_ = l.sessions.Delete(r.Context(), nil, old)
		}
		// A provider that may end this session by back-channel logout gets
		// it bound to its provider session (session.WithBackchannelLogout).
		opts := []session.CreateOption{session.WithClient(l.clientIP(r), r.UserAgent())}
		if bc, ok := p.(backchanneler); ok && bc.BackchannelLogout() {
			opts = append(opts, session.WithBackchannelLogout())
		}
		s, err := l.sessions.Create(r.Context(), w, id, tok, opts...)
		if err != nil {
			l.log.Error("creating session", "event", "login", "provider", p.Name(), "result", "store_error", "err", err)
			l.pages.Error(w, http.StatusServiceUnavailable, "Service unavailable",
				"Your sign-in worked, but the session could not be saved. Please try again in a moment.", "")
			return
		}
		l.metrics.Login(p.Name(), "success")
		l.log.Info("signed in", "event", "login", "provider", p.Name(), "result", "success",
			"user", id.User, "email", id.Email, "sid", s.ID())
		http.Redirect(w, r, st.Redirect, http.StatusFound)
	})
}

// backchanneler is a provider that may end sessions through OpenID Connect
// Back-Channel Logout (see OIDC.BackchannelLogout).
type backchanneler interface{ BackchannelLogout() bool }

// peer is the TCP peer's address, for a Login without ClientIP.
func peer(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// link applies auth.link_accounts_by_verified_email to id.
func (l *Login) link(id identity.Identity) identity.Identity {
	if !l.linkByEmail {
		return id
	}
	return identity.LinkByEmail(id)
}

// csrfToken is the anti-forgery token of the sign out everywhere form.
func (l *Login) csrfToken(s *session.Session) string { return s.FormToken(l.csrfKey) }

// SignOut serves GET and POST sign_out: the session ends server-side,
// the cookie is cleared and the browser goes to rd or the signed-out page.
// sign_out?all=true (end every session and token of the user) is POST-only
// with the form field csrf_token (see csrfToken): a GET answers with a
// page whose button posts it, so a link or a forged form ends nothing.
func (l *Login) SignOut(w http.ResponseWriter, r *http.Request) {
	all := isTrue(r.URL.Query().Get("all"))
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			l.pages.Error(w, http.StatusBadRequest, "Request refused", "The sign-out form could not be read.", "")
			return
		}
		all = all || isTrue(r.PostForm.Get("all"))
	}
	s, err := l.sessions.Load(r.Context(), r)
	if err != nil && !errors.Is(err, session.ErrNoSession) {
		l.log.Error("loading session for sign-out", "event", "logout", "err", err)
		// The cookie stays, so that trying again can still sign out.
		l.pages.Error(w, http.StatusServiceUnavailable, "Service unavailable",
			"The session store could not be reached, so your session could not be ended everywhere. Please try again.", "")
		return
	}
	// sign_out?all=true ends every session and token of the user, on
	// every replica, not only this browser's.
	if all && s != nil {
		if r.Method != http.MethodPost {
			l.confirmSignOutAll(w, r, s)
			return
		}
		if !hmac.Equal([]byte(r.PostForm.Get("csrf_token")), []byte(l.csrfToken(s))) {
			l.log.Warn("sign out everywhere refused", "event", "logout_all", "result", "bad_csrf", "user", s.Identity.User, "sid", s.ID())
			l.pages.Error(w, http.StatusForbidden, "Request refused",
				"This sign-out form expired or did not come from this site. Nothing was ended.", "")
			return
		}
		if err := l.sessions.EndAll(context.WithoutCancel(r.Context()), s.Identity); err != nil {
			l.log.Error("ending all sessions", "event", "logout", "err", err)
			l.pages.Error(w, http.StatusServiceUnavailable, "Service unavailable",
				"Your sessions could not be ended everywhere. Please try again.", "")
			return
		}
		l.log.Info("signed out everywhere", "event", "logout_all", "user", s.Identity.User, "sid", s.ID())
	}
	if err := l.sessions.Delete(context.WithoutCancel(r.Context()), w, s); err != nil {
		l.log.Error("deleting session", "event", "logout", "err", err)
		l.pages.Error(w, http.StatusServiceUnavailable, "Service unavailable",
			"Your session could not be ended on the server. Please try again.", "")
		return
	}
	if s != nil {
		l.log.Info("signed out", "event", "logout", "user", s.Identity.User, "sid", s.ID())
		// RP-initiated logout: the provider ends its own session too, so
		// "sign in as someone else" really asks for credentials again.
		if es, ok := l.byName[s.Identity.Provider].(endSessioner); ok && ownNavigation(r) {
			signedOut := strings.TrimSuffix(l.public.String(), "/") + l.prefix + "/signed_out"
			if u, ok := es.EndSessionURL(r.Context(), s.Token, signedOut); ok {
				http.Redirect(w, r, u, http.StatusFound)
				return
			}
		}
	}
	if rd := r.URL.Query().Get("rd"); rd != "" {
		http.Redirect(w, r, l.safeRedirect(rd), http.StatusFound)
		return
	}
	l.pages.SignedOut(w, l.prefix+"/sign_in")
}

// ownNavigation reports whether a sign-out came from the person: a POST
// (the session cookie is SameSite=Lax, so a cross-site POST carries none),
// or a GET the browser says was typed, bookmarked or followed from this
// site or a sibling (Sec-Fetch-Site). A link on another site still ends
// the Gatehouse session (sign-out may be a GET), but must not also sign
// the person out of their identity provider, and of every other
// application there, behind their back.
func ownNavigation(r *http.Request) bool {
	if r.Method == http.MethodPost {
		return true
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "same-site", "none":
		return true
	}
	return false
}

// endSessioner is a provider that can sign people out at its end
// (OpenID Connect RP-Initiated Logout): see OIDC.EndSessionURL.
type endSessioner interface {
	EndSessionURL(ctx context.Context, tok *session.ProviderToken, postLogout string) (string, bool)
}

// confirmSignOutAll answers a GET of sign_out?all=true: nothing ends; a
// browser gets a page whose button POSTs the request with its CSRF token,
// an API client a 405.
func (l *Login) confirmSignOutAll(w http.ResponseWriter, r *http.Request, s *session.Session) {
	w.Header().Set("Allow", http.MethodPost)
	if pages.WantsJSON(r) {
		pages.JSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", "sign out everywhere needs a POST with csrf_token")
		return
	}
	action := l.prefix + "/sign_out?all=true"
	cancel := "/"
	if rd := r.URL.Query().Get("rd"); rd != "" {
		action += "&rd=" + url.QueryEscape(rd)
		cancel = l.safeRedirect(rd)
	}
	l.pages.SignOutAll(w, s.Identity.DisplayName(), action, l.csrfToken(s), cancel)
}

func isTrue(v string) bool { return v == "true" || v == "1" }

func (l *Login) fail(w http.ResponseWriter, r *http.Request, provider string, err error) {
	le := asLoginError(err)
	l.metrics.Login(provider, "error")
	l.log.Warn("sign-in failed", "event", "login", "provider", provider, "result", "error", "status", le.Status, "err", le.Err)
	l.pages.Error(w, le.Status, le.Title, le.Message, l.prefix+"/sign_in")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
