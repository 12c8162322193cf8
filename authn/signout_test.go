package authn

import (
	"context"
	"errors"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
	"github.com/gatehouse/gatehouse/tokens"
)

type signOutFixture struct {
	login    *Login
	sessions *session.Manager
	toks     *tokens.Store
	mux      *http.ServeMux
	this     *http.Cookie // the browser signing out
	other    *http.Cookie // the same user in another browser
	token    string       // the same user's device token
	bob      *http.Cookie // someone else
}

func newSignOutFixture(t *testing.T) *signOutFixture {
	t.Helper()
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)}
	store := sessionstore.NewMemory(clk.now)
	sessions := session.NewManager(session.Config{
		CookieName: "_gatehouse", CookieSameSite: "lax", Lifetime: 100 * time.Hour, IdleTimeout: 100 * time.Hour,
		RevalidateInterval: time.Hour,
	}, store, clk.now)
	public, _ := url.Parse("https://dash.example.com")
	login := NewLogin(LoginConfig{
		Providers: []Provider{&scriptedProvider{}}, Sessions: sessions, Pages: pages.New(), PublicURL: public, Prefix: "/oauth2",
		Secret: "0123456789abcdef0123456789abcdef", Cookie: "_gatehouse", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clk.now,
	})
	scopes, statics, _ := tokens.Config{Scopes: map[string][]tokens.ScopeRuleConfig{"read": {{Paths: []string{"^/"}}}}}.Compile()
	toks := tokens.NewStore(store, scopes, statics, clk.now)
	alice := identity.Identity{Provider: "test", Subject: "1", User: "alice"}
	signIn := func(id identity.Identity) *http.Cookie {
		rec := httptest.NewRecorder()
		if _, err := sessions.Create(ctx, rec, id, nil); err != nil {
			t.Fatal(err)
		}
		return rec.Result().Cookies()[0]
	}
	f := &signOutFixture{login: login, sessions: sessions, toks: toks, mux: http.NewServeMux(),
		this: signIn(alice), other: signIn(alice), bob: signIn(identity.Identity{Provider: "test", Subject: "2", User: "bob"})}
	raw, err := toks.Issue(ctx, tokens.Token{Identity: alice, Scopes: []string{"read"}, IssuedAt: clk.now(), ExpiresAt: clk.now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	f.token = raw
	f.mux.HandleFunc("GET /oauth2/sign_out", login.SignOut)
	f.mux.HandleFunc("POST /oauth2/sign_out", login.SignOut)
	return f
}

// csrfFor is the token a genuine form of the session behind c carries.
func (f *signOutFixture) csrfFor(t *testing.T, c *http.Cookie) string {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(c)
	s, err := f.sessions.Load(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return f.login.csrfToken(s)
}

func (f *signOutFixture) alive(c *http.Cookie) bool {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(c)
	_, err := f.sessions.Load(context.Background(), r)
	return err == nil
}

// sign_out?all=true ends every session and token of the user, so it is
// POST-only with a CSRF token: a link (GET) or a forged form ends nothing.
// A plain sign-out stays a GET.
func TestSignOutEverywhereNeedsPOSTAndCSRF(t *testing.T) {
	type want struct {
		status              int
		thisEnded, allEnded bool
		cookieCleared       bool
	}
	tests := []struct {
		name string
		req  func(t *testing.T, f *signOutFixture) *http.Request
		want want
	}{
		{"plain sign-out by GET", func(t *testing.T, f *signOutFixture) *http.Request {
			return httptest.NewRequest(http.MethodGet, "/oauth2/sign_out", nil)
		}, want{http.StatusOK, true, false, true}},
		{"all=true by GET (a link): a page asks first", func(t *testing.T, f *signOutFixture) *http.Request {
			return httptest.NewRequest(http.MethodGet, "/oauth2/sign_out?all=true", nil)
		}, want{http.StatusOK, false, false, false}},
		{"all=1 by GET", func(t *testing.T, f *signOutFixture) *http.Request {
			return httptest.NewRequest(http.MethodGet, "/oauth2/sign_out?all=1&rd=/", nil)
		}, want{http.StatusOK, false, false, false}},
		{"all=true by GET from an API client", func(t *testing.T, f *signOutFixture) *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/oauth2/sign_out?all=true", nil)
			r.Header.Set("Accept", "application/json")
			return r
		}, want{http.StatusMethodNotAllowed, false, false, false}},
		{"all=true by POST without a token", func(t *testing.T, f *signOutFixture) *http.Request {
			return form("/oauth2/sign_out?all=true", url.Values{})
		}, want{http.StatusForbidden, false, false, false}},
		{"all=true by POST with a wrong token", func(t *testing.T, f *signOutFixture) *http.Request {
			return form("/oauth2/sign_out?all=true", url.Values{"csrf_token": {"forged"}})
		}, want{http.StatusForbidden, false, false, false}},
		{"all=true by POST with another session's token", func(t *testing.T, f *signOutFixture) *http.Request {
			return form("/oauth2/sign_out?all=true", url.Values{"csrf_token": {f.csrfFor(t, f.other)}})
		}, want{http.StatusForbidden, false, false, false}},
		{"all in the form body without a token", func(t *testing.T, f *signOutFixture) *http.Request {
			return form("/oauth2/sign_out", url.Values{"all": {"true"}})
		}, want{http.StatusForbidden, false, false, false}},
		{"all=true by POST with the session's token", func(t *testing.T, f *signOutFixture) *http.Request {
			return form("/oauth2/sign_out?all=true", url.Values{"csrf_token": {f.csrfFor(t, f.this)}})
		}, want{http.StatusOK, true, true, true}},
		{"all in the form body with the token", func(t *testing.T, f *signOutFixture) *http.Request {
			return form("/oauth2/sign_out", url.Values{"all": {"true"}, "csrf_token": {f.csrfFor(t, f.this)}})
		}, want{http.StatusOK, true, true, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newSignOutFixture(t)
			req := tt.req(t, f)
			req.AddCookie(f.this)
			rec := httptest.NewRecorder()
			f.mux.ServeHTTP(rec, req)
			if rec.Code != tt.want.status {
				t.Fatalf("status %d, want %d\n%s", rec.Code, tt.want.status, rec.Body)
			}
			if got := !f.alive(f.this); got != tt.want.thisEnded {
				t.Errorf("this session ended = %v, want %v", got, tt.want.thisEnded)
			}
			if got := !f.alive(f.other); got != tt.want.allEnded {
				t.Errorf("the other browser's session ended = %v, want %v", got, tt.want.allEnded)
			}
			_, err := f.toks.Lookup(context.Background(), f.token)
			if got := errors.Is(err, tokens.ErrUnknown); got != tt.want.allEnded {
				t.Errorf("the device token ended = %v (%v), want %v", got, err, tt.want.allEnded)
			}
			if !f.alive(f.bob) {
				t.Error("another user's session ended")
			}
			cleared := false
			for _, c := range rec.Result().Cookies() {
				if c.Name == "_gatehouse" && c.MaxAge < 0 {
					cleared = true
				}
			}
			if cleared != tt.want.cookieCleared {
				t.Errorf("cookie cleared = %v, want %v", cleared, tt.want.cookieCleared)
			}
			if req.Method == http.MethodGet && isTrue(req.URL.Query().Get("all")) && rec.Header().Get("Allow") != http.MethodPost {
				t.Errorf("Allow = %q, want POST", rec.Header().Get("Allow"))
			}
		})
	}
}

var (
	signOutForm  = regexp.MustCompile(`<form method="post" action="([^"]+)">`)
	signOutToken = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)
)

// Following a "sign out everywhere" link shows a page; its button signs
// out everywhere.
func TestSignOutEverywhereConfirmationPage(t *testing.T) {
	f := newSignOutFixture(t)
	req := httptest.NewRequest(http.MethodGet, "/oauth2/sign_out?all=true&rd=/after", nil)
	req.AddCookie(f.this)
	rec := httptest.NewRecorder()
	f.mux.ServeHTTP(rec, req)
	page := rec.Body.String()
	action, token := signOutForm.FindStringSubmatch(page), signOutToken.FindStringSubmatch(page)
	if rec.Code != http.StatusOK || action == nil || token == nil {
		t.Fatalf("confirmation page: %d\n%s", rec.Code, page)
	}
	if rec.Header().Get("X-Frame-Options") != "DENY" || !strings.Contains(rec.Header().Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Fatal("the confirmation page can be framed (clickjacking)")
	}
	if !f.alive(f.this) || !f.alive(f.other) {
		t.Fatal("showing the page ended sessions")
	}
	post := form(html.UnescapeString(action[1]), url.Values{"csrf_token": {token[1]}})
	post.AddCookie(f.this)
	rec = httptest.NewRecorder()
	f.mux.ServeHTTP(rec, post)
	if rec.Code != http.StatusFound || rec.Header().Get("Location") != "/after" {
		t.Fatalf("confirm: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	if f.alive(f.this) || f.alive(f.other) {
		t.Fatal("sessions survived the confirmed sign-out everywhere")
	}
	if _, err := f.toks.Lookup(context.Background(), f.token); !errors.Is(err, tokens.ErrUnknown) {
		t.Fatalf("device token survived: %v", err)
	}
}

func form(target string, v url.Values) *http.Request {
	r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(v.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}
