package handoff

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse/gatehouse/authn"
	"github.com/gatehouse/gatehouse/internal/hostname"
	"github.com/gatehouse/gatehouse/internal/sealed"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// errGone is a code that is unknown, used already or expired: the three
// read the same from outside.
var errGone = errors.New("handoff: code unknown, used or expired")

// ServeHTTP serves GET <prefix>/handoff?code= on a route host.
func (h *Handoff) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	pages.NoStore(w.Header())
	ctx := r.Context()
	host := hostname.Canonical(r.Host)
	rec, err := h.redeem(ctx, r.URL.Query().Get("code"))
	switch {
	case errors.Is(err, errGone):
		h.c.Logger.Info("hand-off refused", "event", "handoff", "result", "gone", "host", host)
		h.refuse(w, "This sign-in link has already been used or has expired. Links like it work once, for a minute.", "/")
		return
	case err != nil:
		h.c.Logger.Error("hand-off: session store unavailable", "event", "handoff", "err", err)
		h.unavailable(w)
		return
	}
	// From here on the code is burned, whatever happens next.
	if host != rec.Host || requestPort(r.Host, h.c.PublicURL.Scheme) != rec.Port {
		h.c.Logger.Warn("hand-off refused", "event", "handoff", "result", "wrong_host", "host", r.Host, "for", rec.Host, "user", rec.Identity.User)
		h.refuse(w, "This sign-in link was made for another address, so it cannot be used here.", "/")
		return
	}
	back := localRedirect(rec.Redirect)
	if nonce, n := session.CookieValue(r, h.binding); n != 1 || !wellFormed(nonce) ||
		subtle.ConstantTimeCompare([]byte(bindingHash(nonce)), []byte(rec.Binding)) != 1 {
		// Someone else's code (sent in a link to make this browser use
		// their account), or a second tab overwrote the binding: nothing
		// is signed in; going back starts over, bound to this browser.
		// Two binding cookies (a sibling subdomain planted one for a
		// parent domain, or another path) count as none: which one is
		// ours cannot be told.
		h.c.Logger.Warn("hand-off refused", "event", "handoff", "result", "wrong_browser", "host", host, "user", rec.Identity.User)
		h.refuse(w, "This sign-in link was not started in this browser, so it cannot be used here.", back)
		return
	}
	http.SetCookie(w, h.bindingCookie("", -1))
	s, ok := h.start(w, r, rec)
	if !ok {
		return
	}
	h.c.Logger.Info("handed off", "event", "handoff", "result", "success", "host", host, "user", rec.Identity.User, "sid", s.ID())
	http.Redirect(w, r, back, http.StatusFound)
}

// requestPort is the port of a Host header, "" when it names none or the
// scheme's default (a proxy in front may or may not spell ":443").
func requestPort(hostport, scheme string) string {
	_, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return ""
	}
	return effectivePort(port, scheme)
}

// redeem takes the code's record out of the store: exactly once, however
// many exchanges race. Unknown and malformed codes cost no store write.
func (h *Handoff) redeem(ctx context.Context, code string) (*record, error) {
	if !wellFormed(code) {
		return nil, errGone
	}
	k := keysOf(code)
	b, err := h.c.Store.Get(ctx, k.record)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return nil, errGone
	}
	if err != nil {
		return nil, err
	}
	// The first exchange to add the spent mark wins; the record goes
	// either way, so a code is burned by any use, even a refused one.
	err = h.c.Store.Add(ctx, k.spent, []byte{1}, Lifetime)
	_ = h.c.Store.Delete(context.WithoutCancel(ctx), k.record)
	switch {
	case errors.Is(err, sessionstore.ErrExists):
		return nil, errGone
	case err != nil:
		return nil, err
	}
	plain, err := sealed.Open(&k.seal, []byte(k.record), b)
	if err != nil {
		return nil, errGone
	}
	var rec record
	if err := json.Unmarshal(plain, &rec); err != nil || !h.c.Now().Before(rec.Expires) {
		return nil, errGone
	}
	return &rec, nil
}

// start begins the route host's own session for rec's identity. It ends a
// session the browser may still have on this host (as a sign-in does), and
// refuses when the auth host's session ended since the code was issued
// (sign out everywhere, a back-channel logout): the new session must be
// of the same generation and provider session.
func (h *Handoff) start(w http.ResponseWriter, r *http.Request, rec *record) (*session.Session, bool) {
	ctx := context.WithoutCancel(r.Context())
	if old, err := h.c.Sessions.Load(ctx, r); err == nil {
		_ = h.c.Sessions.Delete(ctx, nil, old)
	}
	opts := []session.CreateOption{session.WithClient(h.clientIP(r), r.UserAgent())}
	if rec.Logout != "" {
		opts = append(opts, session.WithBackchannelLogout())
	}
	// The cookie is set only once the session is known to stand.
	pending := headerOnly{}
	s, err := h.c.Sessions.Create(ctx, pending, rec.Identity, rec.Token, opts...)
	if err != nil {
		h.c.Logger.Error("hand-off: creating session", "event", "handoff", "err", err)
		h.unavailable(w)
		return nil, false
	}
	if s.Generation != rec.Generation || s.Logout != rec.Logout {
		_ = h.c.Sessions.Delete(ctx, nil, s)
		h.c.Logger.Info("hand-off refused", "event", "handoff", "result", "ended", "user", rec.Identity.User)
		h.refuse(w, "Your session ended after this sign-in link was made. Please sign in again.", localRedirect(rec.Redirect))
		return nil, false
	}
	// Membership is as fresh as the auth host's session, not fresher: the
	// route host re-checks with the provider when that one would have.
	if rec.ValidatedAt.Before(s.ValidatedAt) {
		s.ValidatedAt = rec.ValidatedAt
		if err := h.c.Sessions.Save(ctx, s); err != nil {
			_ = h.c.Sessions.Delete(ctx, nil, s)
			h.c.Logger.Error("hand-off: saving session", "event", "handoff", "err", err)
			h.unavailable(w)
			return nil, false
		}
	}
	for _, c := range pending.Header()["Set-Cookie"] {
		w.Header().Add("Set-Cookie", c)
	}
	return s, true
}

func (h *Handoff) clientIP(r *http.Request) string {
	if h.c.ClientIP != nil {
		return h.c.ClientIP(r)
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// localRedirect is the path (and query) of the original URL: a redirect
// that cannot leave the host the code was exchanged on. A path the
// browser would read as another host becomes "/".
func localRedirect(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "/"
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	if !strings.HasPrefix(p, "/") {
		return "/"
	}
	return authn.SafeRedirect(p, nil)
}

func (h *Handoff) refuse(w http.ResponseWriter, message, retry string) {
	h.c.Pages.Error(w, http.StatusBadRequest, "Sign-in link refused", message, retry)
}

func (h *Handoff) unavailable(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "5")
	h.c.Pages.Error(w, http.StatusServiceUnavailable, "Service unavailable",
		"Your sign-in could not be passed on to this site right now. Please try again in a moment.", "")
}

// headerOnly is a ResponseWriter that keeps headers only: Create's cookie
// waits there until the new session is known to stand.
type headerOnly http.Header

func (h headerOnly) Header() http.Header       { return http.Header(h) }
func (headerOnly) Write(b []byte) (int, error) { return len(b), nil }
func (headerOnly) WriteHeader(int)             {}
