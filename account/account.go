// Package account serves the signed-in person's own view of their access:
// GET <prefix>/sessions lists their browser sessions and device tokens
// (HTML, or JSON for Accept: application/json, which `gatehouse sessions`
// reads with its token), and POST ends one of them, or all: from a
// browser session only, never with a bearer token.
package account

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/tokens"
)

// Config gathers what the sessions page depends on.
type Config struct {
	Sessions  *session.Manager
	Tokens    *tokens.Store // nil: only browser sessions may look
	Pages     *pages.Renderer
	Secret    string                 // session.secret: keys the page's CSRF tokens
	Prefix    string                 // path prefix of Gatehouse's endpoints
	SignInURL func(rd string) string // where a browser without a session goes
	Logger    *slog.Logger
}

// Handler serves the sessions page.
type Handler struct {
	c       Config
	csrfKey []byte
}

// New returns the sessions page handler.
func New(c Config) *Handler {
	return &Handler{c: c, csrfKey: []byte("gatehouse sessions csrf v1\x00" + c.Secret)}
}

// viewer is who is looking: their identity and the handle of the session
// or token they came with ("current" on the page).
type viewer struct {
	id      identity.Identity
	current string
	browser *session.Session // nil for a token
}

// Session is one entry of the JSON answer.
type Session struct {
	ID        string     `json:"id"`
	Kind      string     `json:"kind"`
	Provider  string     `json:"provider"`
	CreatedAt time.Time  `json:"created_at"`
	LastSeen  *time.Time `json:"last_seen"`
	ExpiresAt time.Time  `json:"expires_at"`
	ClientIP  string     `json:"client_ip"`
	UserAgent string     `json:"user_agent"`
	ClientID  string     `json:"client_id,omitempty"`
	Scopes    []string   `json:"scopes,omitempty"`
	Current   bool       `json:"current"`
}

// List is the JSON answer of GET.
type List struct {
	Sessions  []Session `json:"sessions"`
	CSRFToken string    `json:"csrf_token"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	v, ok := h.who(w, r)
	if !ok {
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.list(w, r, v)
	case http.MethodPost:
		if v.browser == nil {
			// A token may look, never end: whatever its scopes, a token
			// handed to a script or a CLI must not be able to sign its
			// person out everywhere (its JSON carries a csrf_token, so the
			// check below would not stop it).
			h.c.Logger.Warn("ending sessions refused", "event", "session_end", "result", "bearer_token", "user", v.id.User)
			pages.JSONError(w, http.StatusForbidden, "forbidden", "sessions can be ended from a browser session only, not with a token")
			return
		}
		h.end(w, r, v)
	default:
		w.Header().Set("Allow", "GET, POST")
		pages.JSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET or POST")
	}
}

// who authenticates the request: a Gatehouse bearer token (the CLI, which
// may only list), else the session cookie. When it returns false it has
// answered.
func (h *Handler) who(w http.ResponseWriter, r *http.Request) (viewer, bool) {
	ctx := r.Context()
	if scheme, raw, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		if h.c.Tokens == nil {
			pages.JSONError(w, http.StatusUnauthorized, "invalid_token", "bearer tokens are not enabled here")
			return viewer{}, false
		}
		tok, err := h.c.Tokens.Lookup(ctx, strings.TrimSpace(raw))
		switch {
		case errors.Is(err, tokens.ErrUnknown):
			w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse", error="invalid_token"`)
			pages.JSONError(w, http.StatusUnauthorized, "invalid_token", "the token is unknown, expired or revoked")
			return viewer{}, false
		case err != nil:
			h.unavailable(w, r, err)
			return viewer{}, false
		case tok.Static:
			// A static token is no person's: it has no sessions to show.
			pages.JSONError(w, http.StatusForbidden, "forbidden", "static tokens have no sessions")
			return viewer{}, false
		}
		return viewer{id: tok.Identity, current: tok.ID}, true
	}
	s, err := h.c.Sessions.Load(ctx, r)
	switch {
	case errors.Is(err, session.ErrNoSession):
		if pages.WantsJSON(r) || r.Method != http.MethodGet {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse"`)
			pages.JSONError(w, http.StatusUnauthorized, "unauthorized", "sign in first")
			return viewer{}, false
		}
		http.Redirect(w, r, h.c.SignInURL(h.c.Prefix+"/sessions"), http.StatusFound)
		return viewer{}, false
	case err != nil:
		h.unavailable(w, r, err)
		return viewer{}, false
	}
	return viewer{id: s.Identity, current: s.ID(), browser: s}, true
}

// csrf is the page's anti-forgery token, bound to the session or token
// looking at it.
func (h *Handler) csrf(v viewer) string {
	m := hmac.New(sha256.New, h.csrfKey)
	m.Write([]byte(v.current))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request, v viewer) {
	entries, err := h.c.Sessions.Index().List(r.Context(), v.id)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	out := List{Sessions: []Session{}, CSRFToken: h.csrf(v)}
	seenCurrent := false
	for _, e := range entries {
		s := Session{ID: e.Handle, Kind: e.Kind, Provider: e.Provider, CreatedAt: e.CreatedAt, ExpiresAt: e.ExpiresAt,
			ClientIP: e.ClientIP, UserAgent: e.UserAgent, ClientID: e.ClientID, Scopes: e.Scopes, Current: e.Handle == v.current}
		if !e.LastSeen.IsZero() {
			t := e.LastSeen
			s.LastSeen = &t
		}
		seenCurrent = seenCurrent || s.Current
		out.Sessions = append(out.Sessions, s)
	}
	if !seenCurrent && v.browser != nil {
		// The index lost it (it is best effort): the page still shows the
		// session it is looked at with.
		t := v.browser.LastSeen
		out.Sessions = append([]Session{{ID: v.current, Kind: session.KindBrowser, Provider: v.id.Provider,
			CreatedAt: v.browser.CreatedAt, LastSeen: &t, Current: true}}, out.Sessions...)
	}
	// The one looking comes first, then the others newest first.
	sort.SliceStable(out.Sessions, func(i, j int) bool { return out.Sessions[i].Current && !out.Sessions[j].Current })
	if pages.WantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		pages.NoStore(w.Header())
		_ = json.NewEncoder(w).Encode(out)
		return
	}
	p := pages.SessionsPage{Who: v.id.DisplayName(), Action: h.c.Prefix + "/sessions", CSRF: out.CSRFToken}
	for _, s := range out.Sessions {
		row := pages.SessionRow{ID: s.ID, Kind: s.Kind, Provider: s.Provider, ClientID: s.ClientID,
			Scopes: strings.Join(s.Scopes, " "), Created: when(s.CreatedAt), Current: s.Current}
		if s.LastSeen != nil {
			row.LastSeen = when(*s.LastSeen)
		}
		row.Where = strings.Trim(s.ClientIP+" · "+s.UserAgent, " ·")
		p.Sessions = append(p.Sessions, row)
	}
	h.c.Pages.Sessions(w, p)
}

func when(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// end serves POST: end=<id> ends that session or token, end=all every one
// of the user's (as sign out everywhere does). Nothing ends without the
// page's CSRF token.
func (h *Handler) end(w http.ResponseWriter, r *http.Request, v viewer) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		pages.JSONError(w, http.StatusBadRequest, "invalid_request", "the form could not be read")
		return
	}
	if !hmac.Equal([]byte(r.PostForm.Get("csrf_token")), []byte(h.csrf(v))) {
		h.c.Logger.Warn("ending sessions refused", "event", "session_end", "result", "bad_csrf", "user", v.id.User)
		if pages.WantsJSON(r) {
			pages.JSONError(w, http.StatusForbidden, "forbidden", "missing or wrong csrf_token; nothing was ended")
		} else {
			h.c.Pages.Error(w, http.StatusForbidden, "Request refused", "This form expired or did not come from this site. Nothing was ended.", h.c.Prefix+"/sessions")
		}
		return
	}
	ctx := r.Context()
	which := r.PostForm.Get("end")
	switch {
	case which == "all":
		if err := h.c.Sessions.EndAll(ctx, v.id); err != nil {
			h.unavailable(w, r, err)
			return
		}
		h.c.Logger.Info("ended all sessions", "event", "session_end", "user", v.id.User, "which", "all")
	case which != "":
		found, err := h.c.Sessions.Index().End(ctx, v.id, which)
		if err != nil {
			h.unavailable(w, r, err)
			return
		}
		if !found {
			pages.JSONError(w, http.StatusNotFound, "not_found", "no such session or token of yours (it may have ended already)")
			return
		}
		h.c.Logger.Info("ended a session", "event", "session_end", "user", v.id.User, "which", which)
	default:
		pages.JSONError(w, http.StatusBadRequest, "invalid_request", "end must be a session id or all")
		return
	}
	endedCurrent := which == "all" || which == v.current
	if endedCurrent && v.browser != nil {
		h.c.Sessions.ClearCookie(w)
	}
	if pages.WantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		pages.NoStore(w.Header())
		_ = json.NewEncoder(w).Encode(map[string]string{"ended": which})
		return
	}
	if endedCurrent {
		h.c.Pages.SignedOut(w, h.c.Prefix+"/sign_in")
		return
	}
	// Post/redirect/get: a reload does not post again.
	http.Redirect(w, r, h.c.Prefix+"/sessions", http.StatusSeeOther)
}

func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	h.c.Logger.Error("sessions page: session store unavailable", "err", err)
	w.Header().Set("Retry-After", "5")
	if pages.WantsJSON(r) {
		pages.JSONError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the session store is unavailable")
		return
	}
	h.c.Pages.Error(w, http.StatusServiceUnavailable, "Service unavailable", "Sessions cannot be listed right now. Please try again.", "")
}
