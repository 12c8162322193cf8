package account

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
	"github.com/gatehouse/gatehouse/tokens"
)

var alice = identity.Identity{Provider: "corp", Subject: "1", User: "alice", Email: "alice@example.com", EmailVerified: true}

type fixture struct {
	h        *Handler
	sessions *session.Manager
	toks     *tokens.Store
	laptop   *http.Cookie // alice's first browser
	phone    *http.Cookie // alice's second browser
	bob      *http.Cookie
	cli      string // alice's device token
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	store := sessionstore.NewMemory(nil)
	sessions := session.NewManager(session.Config{
		Secret: "0123456789abcdef0123456789abcdef", CookieName: "_gatehouse", CookieSameSite: "lax",
		Lifetime: 100 * time.Hour, IdleTimeout: 100 * time.Hour,
	}, store, nil)
	scopes, statics, ps := tokens.Config{
		Scopes: map[string][]tokens.ScopeRuleConfig{"read": {{Methods: []string{"GET"}, Paths: []string{"^/"}}}},
		Static: []tokens.StaticConfig{{Name: "ci", SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Scopes: []string{"read"}}},
	}.Compile()
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	toks := tokens.NewStore(store, scopes, statics, nil)
	signIn := func(id identity.Identity, ua string) *http.Cookie {
		rec := httptest.NewRecorder()
		if _, err := sessions.Create(ctx, rec, id, nil, session.WithClient("192.0.2.7", ua)); err != nil {
			t.Fatal(err)
		}
		return rec.Result().Cookies()[0]
	}
	f := &fixture{sessions: sessions, toks: toks,
		laptop: signIn(alice, "Firefox on Linux"), phone: signIn(alice, "Safari on iPhone"),
		bob: signIn(identity.Identity{Provider: "corp", Subject: "2", User: "bob"}, "Chrome")}
	raw, err := toks.Issue(ctx, tokens.Token{Identity: alice, Scopes: []string{"read"}, ClientID: "gatehouse-cli",
		IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	handle, record := tokens.Names(raw)
	if err := sessions.Index().Add(ctx, alice, session.Entry{Handle: handle, Kind: session.KindDevice, Provider: "corp",
		Record: record, CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour), ClientID: "gatehouse-cli", Scopes: []string{"read"}}); err != nil {
		t.Fatal(err)
	}
	f.cli = raw
	f.h = New(Config{Sessions: sessions, Tokens: toks, Pages: pages.New(), Secret: "s", Prefix: "/oauth2",
		SignInURL: func(rd string) string { return "/oauth2/sign_in?rd=" + url.QueryEscape(rd) },
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil))})
	return f
}

// do sends a request as the holder of cookie c (or, with bearer set, of
// that token) and returns the answer.
func (f *fixture) do(method, body string, c *http.Cookie, bearer string, json bool) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "/oauth2/sessions", strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if json {
		req.Header.Set("Accept", "application/json")
	}
	if c != nil {
		req.AddCookie(c)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec
}

func (f *fixture) list(t *testing.T, c *http.Cookie, bearer string) List {
	t.Helper()
	rec := f.do(http.MethodGet, "", c, bearer, true)
	if rec.Code != http.StatusOK {
		t.Fatalf("list: %d %s", rec.Code, rec.Body)
	}
	var l List
	if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil {
		t.Fatal(err)
	}
	return l
}

func (f *fixture) alive(t *testing.T, c *http.Cookie) bool {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.AddCookie(c)
	_, err := f.sessions.Load(context.Background(), req)
	if err != nil && !errors.Is(err, session.ErrNoSession) {
		t.Fatal(err)
	}
	return err == nil
}

func TestSessionsListsOnlyTheUsersOwn(t *testing.T) {
	f := newFixture(t)
	l := f.list(t, f.laptop, "")
	kinds := map[string]int{}
	current := 0
	for _, s := range l.Sessions {
		kinds[s.Kind]++
		if s.Current {
			current++
			if s.UserAgent != "Firefox on Linux" || s.ClientIP != "192.0.2.7" || s.LastSeen == nil {
				t.Errorf("current session: %+v", s)
			}
		}
		if strings.Contains(s.ID, "s1:") || strings.HasPrefix(s.ID, "gth_") || s.ID == f.laptop.Value {
			t.Errorf("id %q is a record key, token or ticket", s.ID)
		}
	}
	if kinds["browser"] != 2 || kinds["device"] != 1 || current != 1 || l.CSRFToken == "" {
		t.Fatalf("alice's list: %+v", l)
	}
	// The CLI sees the same list with its token, the token marked current.
	l2 := f.list(t, nil, f.cli)
	if len(l2.Sessions) != 3 {
		t.Fatalf("with the token: %+v", l2)
	}
	for _, s := range l2.Sessions {
		if s.Current != (s.Kind == "device") {
			t.Errorf("with the token, current = %v for a %s", s.Current, s.Kind)
		}
	}
	// The HTML page lists them too, with one form per session.
	page := f.do(http.MethodGet, "", f.laptop, "", false)
	if page.Code != http.StatusOK || strings.Count(page.Body.String(), `name="end"`) != 4 || !strings.Contains(page.Body.String(), "Safari on iPhone") {
		t.Fatalf("page: %d\n%s", page.Code, page.Body)
	}
}

func TestEndingSessions(t *testing.T) {
	f := newFixture(t)
	l := f.list(t, f.laptop, "")
	var phone string
	for _, s := range l.Sessions {
		if s.UserAgent == "Safari on iPhone" {
			phone = s.ID
		}
	}
	// Without the CSRF token (a forged form), nothing ends.
	for _, body := range []string{"end=" + phone, "end=all", "end=all&csrf_token=" + url.QueryEscape(f.list(t, f.bob, "").CSRFToken)} {
		if rec := f.do(http.MethodPost, body, f.laptop, "", false); rec.Code != http.StatusForbidden {
			t.Fatalf("%q: %d, want 403", body, rec.Code)
		}
	}
	if !f.alive(t, f.phone) {
		t.Fatal("a refused request ended a session")
	}
	// Another user's session cannot be named.
	bobID := f.list(t, f.bob, "").Sessions[0].ID
	if rec := f.do(http.MethodPost, "end="+bobID+"&csrf_token="+url.QueryEscape(l.CSRFToken), f.laptop, "", true); rec.Code != http.StatusNotFound || !f.alive(t, f.bob) {
		t.Fatalf("ending bob's session as alice: %d", rec.Code)
	}
	// Ending the phone leaves the laptop and the token working.
	rec := f.do(http.MethodPost, "end="+phone+"&csrf_token="+url.QueryEscape(l.CSRFToken), f.laptop, "", false)
	if rec.Code != http.StatusSeeOther || f.alive(t, f.phone) || !f.alive(t, f.laptop) {
		t.Fatalf("end one: %d, phone alive %v, laptop alive %v", rec.Code, f.alive(t, f.phone), f.alive(t, f.laptop))
	}
	if _, err := f.toks.Lookup(context.Background(), f.cli); err != nil {
		t.Fatalf("the token ended with the phone: %v", err)
	}
	// End all: every session and the token, not bob's.
	rec = f.do(http.MethodPost, "end=all&csrf_token="+url.QueryEscape(l.CSRFToken), f.laptop, "", false)
	if rec.Code != http.StatusOK || f.alive(t, f.laptop) || !f.alive(t, f.bob) {
		t.Fatalf("end all: %d, laptop alive %v, bob alive %v", rec.Code, f.alive(t, f.laptop), f.alive(t, f.bob))
	}
	if _, err := f.toks.Lookup(context.Background(), f.cli); !errors.Is(err, tokens.ErrUnknown) {
		t.Fatalf("the token survived end all: %v", err)
	}
	if c := rec.Result().Cookies(); len(c) != 1 || c[0].MaxAge >= 0 {
		t.Fatalf("the cookie was not cleared: %v", c)
	}
}

func TestSessionsNeedAPerson(t *testing.T) {
	f := newFixture(t)
	if rec := f.do(http.MethodGet, "", nil, "", false); rec.Code != http.StatusFound || !strings.Contains(rec.Header().Get("Location"), "/oauth2/sign_in") {
		t.Fatalf("browser without a session: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	if rec := f.do(http.MethodGet, "", nil, "", true); rec.Code != http.StatusUnauthorized {
		t.Fatalf("API client without a session: %d", rec.Code)
	}
	if rec := f.do(http.MethodGet, "", nil, "gth_not-a-token", true); rec.Code != http.StatusUnauthorized {
		t.Fatalf("unknown token: %d", rec.Code)
	}
	if rec := f.do(http.MethodGet, "", nil, "test", true); rec.Code != http.StatusForbidden { // the static token "test"
		t.Fatalf("static token: %d", rec.Code)
	}
}

// A bearer token may list its person's sessions (`gatehouse sessions`),
// but ending any needs a browser session, whatever the token's scopes and
// even with the csrf_token its own list carries.
func TestTokensMayListButNotEnd(t *testing.T) {
	f := newFixture(t)
	tokenCSRF := f.list(t, nil, f.cli).CSRFToken
	browserCSRF := f.list(t, f.laptop, "").CSRFToken
	var phone string
	for _, s := range f.list(t, f.laptop, "").Sessions {
		if s.UserAgent == "Safari on iPhone" {
			phone = s.ID
		}
	}
	tests := []struct {
		name   string
		body   string
		cookie *http.Cookie
		json   bool
	}{
		{"end all with the token's csrf_token", "end=all&csrf_token=" + url.QueryEscape(tokenCSRF), nil, true},
		{"end one with the token's csrf_token", "end=" + phone + "&csrf_token=" + url.QueryEscape(tokenCSRF), nil, true},
		{"end all, HTML", "end=all&csrf_token=" + url.QueryEscape(tokenCSRF), nil, false},
		{"a browser's csrf_token with the token", "end=all&csrf_token=" + url.QueryEscape(browserCSRF), nil, true},
		{"the token wins over a cookie", "end=all&csrf_token=" + url.QueryEscape(browserCSRF), f.laptop, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := f.do(http.MethodPost, tt.body, tt.cookie, f.cli, tt.json)
			if rec.Code != http.StatusForbidden || !strings.Contains(rec.Header().Get("Content-Type"), "application/json") ||
				!strings.Contains(rec.Body.String(), `"forbidden"`) {
				t.Fatalf("%d %q %s, want 403 JSON", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
			}
			if !f.alive(t, f.laptop) || !f.alive(t, f.phone) {
				t.Fatal("a token ended a session")
			}
			if _, err := f.toks.Lookup(context.Background(), f.cli); err != nil {
				t.Fatalf("the token ended: %v", err)
			}
		})
	}
	// It still lists, and the browser still ends.
	if l := f.list(t, nil, f.cli); len(l.Sessions) != 3 {
		t.Fatalf("listing with the token: %+v", l)
	}
	if rec := f.do(http.MethodPost, "end="+phone+"&csrf_token="+url.QueryEscape(browserCSRF), f.laptop, "", false); rec.Code != http.StatusSeeOther {
		t.Fatalf("the browser ending a session: %d", rec.Code)
	}
}
