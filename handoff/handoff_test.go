package handoff

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/authn"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// recordingStore keeps every value written, to show what the store sees.
type recordingStore struct {
	sessionstore.Store
	mu      sync.Mutex
	written [][]byte
	keys    []string
}

func (s *recordingStore) Add(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	s.mu.Lock()
	s.written, s.keys = append(s.written, value), append(s.keys, key)
	s.mu.Unlock()
	return s.Store.Add(ctx, key, value, ttl)
}

type fixture struct {
	ho       *Handoff
	sessions *session.Manager
	store    *recordingStore
	clk      *clock
	auth     *session.Session // the auth host's session
}

var alice = identity.Identity{Provider: "corp", Subject: "1", User: "alice", Email: "alice@example.com", EmailVerified: true}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	clk := &clock{t: time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)}
	store := &recordingStore{Store: sessionstore.NewMemory(clk.now)}
	sessions := session.NewManager(session.Config{CookieName: "_gatehouse", CookieSameSite: "lax", Lifetime: 10 * time.Hour,
		IdleTimeout: 10 * time.Hour, RevalidateInterval: time.Hour}, store, clk.now)
	public, _ := url.Parse("https://auth.example.com")
	ho := New(Config{
		Store: store, Sessions: sessions, Pages: pages.New(), PublicURL: public, Prefix: "/oauth2", Cookie: "_gatehouse", Secure: true,
		RouteHost: func(h string) bool {
			h = strings.TrimSuffix(strings.Split(strings.ToLower(h), ":")[0], ".")
			// (strings.ToLower, as a careless table might: U+212A, the
			// Kelvin sign, becomes "k".)
			return h == "grafana.example.com" || h == "prometheus.example.com" || h == "auth.example.com" || h == "kibana.example.com"
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clk.now,
	})
	auth, err := sessions.Create(context.Background(), httptest.NewRecorder(), alice,
		&session.ProviderToken{AccessToken: "provider-access-token", RefreshToken: "provider-refresh-token"})
	if err != nil {
		t.Fatal(err)
	}
	// Its membership was last checked 40 minutes before the hand-off.
	clk.add(40 * time.Minute)
	return &fixture{ho: ho, sessions: sessions, store: store, clk: clk, auth: auth}
}

// bind is the route host's bounce: the binding cookie and its hash.
func (f *fixture) bind(t *testing.T) (*http.Cookie, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	b, err := f.ho.Bind(rec)
	if err != nil {
		t.Fatal(err)
	}
	c := rec.Result().Cookies()[0]
	// "__Host-": host-only, Secure, Path=/, so no sibling subdomain can
	// set one for this host.
	if c.Name != "__Host-_gatehouse_state_handoff" || c.Path != "/" || !c.HttpOnly || !c.Secure || c.Domain != "" {
		t.Fatalf("binding cookie %+v", c)
	}
	return c, b
}

func (f *fixture) issue(t *testing.T, rd string) (code string, binding *http.Cookie) {
	t.Helper()
	binding, b := f.bind(t)
	loc, err := f.ho.Issue(context.Background(), f.auth, rd, b)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(loc)
	want, _ := url.Parse(rd)
	if u.Scheme != "https" || u.Host != strings.ToLower(want.Hostname()) || u.Path != "/oauth2/handoff" {
		t.Fatalf("hand-off URL %s is not on %s's route origin", loc, rd)
	}
	return u.Query().Get("code"), binding
}

func (f *fixture) exchange(host, code string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "https://"+host+"/oauth2/handoff?code="+url.QueryEscape(code), nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	f.ho.ServeHTTP(rec, r)
	return rec
}

func sessionCookie(rec *httptest.ResponseRecorder) *http.Cookie {
	for _, c := range rec.Result().Cookies() {
		if c.Name == "_gatehouse" && c.MaxAge > 0 {
			return c
		}
	}
	return nil
}

func TestHandoffGivesTheRouteHostItsOwnSession(t *testing.T) {
	f := newFixture(t)
	code, binding := f.issue(t, "https://grafana.example.com/d/abc?orgId=1")
	rec := f.exchange("GRAFANA.example.com.:443", code, binding)
	if rec.Code != http.StatusFound || rec.Header().Get("Location") != "/d/abc?orgId=1" {
		t.Fatalf("%d to %q: %s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	c := sessionCookie(rec)
	if c == nil || c.Domain != "" {
		t.Fatalf("want a host-only session cookie, got %v", rec.Result().Cookies())
	}
	if !strings.Contains(strings.Join(rec.Header().Values("Set-Cookie"), "\n"), "__Host-_gatehouse_state_handoff=; Path=/;") {
		t.Errorf("binding cookie not cleared: %v", rec.Header().Values("Set-Cookie"))
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(c)
	s, err := f.sessions.Load(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID() == f.auth.ID() || s.Identity.Email != alice.Email || s.Token.AccessToken != "provider-access-token" || s.Generation != f.auth.Generation {
		t.Fatalf("route session %+v", s)
	}
	if !s.ValidatedAt.Equal(f.auth.ValidatedAt) {
		t.Errorf("ValidatedAt = %s, want the auth session's %s (no fresher than it)", s.ValidatedAt, f.auth.ValidatedAt)
	}
	if c.Value == "" || strings.Contains(code, c.Value) {
		t.Fatal("the code carries the ticket")
	}
}

func TestHandoffCodeRefused(t *testing.T) {
	tests := []struct {
		name string
		use  func(t *testing.T, f *fixture, code string, binding *http.Cookie) *httptest.ResponseRecorder
		want string // in the page
	}{
		{"replayed", func(t *testing.T, f *fixture, code string, b *http.Cookie) *httptest.ResponseRecorder {
			if rec := f.exchange("grafana.example.com", code, b); rec.Code != http.StatusFound {
				t.Fatalf("first use: %d", rec.Code)
			}
			return f.exchange("grafana.example.com", code, b)
		}, "already been used or has expired"},
		{"on another host", func(t *testing.T, f *fixture, code string, b *http.Cookie) *httptest.ResponseRecorder {
			return f.exchange("prometheus.example.com", code, b)
		}, "for another address"},
		{"on the auth host", func(t *testing.T, f *fixture, code string, b *http.Cookie) *httptest.ResponseRecorder {
			return f.exchange("auth.example.com", code, b)
		}, "for another address"},
		{"after 60 s", func(t *testing.T, f *fixture, code string, b *http.Cookie) *httptest.ResponseRecorder {
			f.clk.add(Lifetime)
			return f.exchange("grafana.example.com", code, b)
		}, "already been used or has expired"},
		{"without the binding cookie", func(t *testing.T, f *fixture, code string, b *http.Cookie) *httptest.ResponseRecorder {
			return f.exchange("grafana.example.com", code)
		}, "not started in this browser"},
		{"with another browser's binding", func(t *testing.T, f *fixture, code string, b *http.Cookie) *httptest.ResponseRecorder {
			other, _ := f.bind(t)
			return f.exchange("grafana.example.com", code, other)
		}, "not started in this browser"},
		{"altered", func(t *testing.T, f *fixture, code string, b *http.Cookie) *httptest.ResponseRecorder {
			last := "A" // a different code, even when it ended in "A"
			if strings.HasSuffix(code, "A") {
				last = "Q"
			}
			return f.exchange("grafana.example.com", code[:len(code)-1]+last, b)
		}, "already been used or has expired"},
		{"garbage", func(t *testing.T, f *fixture, code string, b *http.Cookie) *httptest.ResponseRecorder {
			return f.exchange("grafana.example.com", "../../x", b)
		}, "already been used or has expired"},
		{"after sign out everywhere", func(t *testing.T, f *fixture, code string, b *http.Cookie) *httptest.ResponseRecorder {
			if err := f.sessions.EndAll(context.Background(), alice); err != nil {
				t.Fatal(err)
			}
			return f.exchange("grafana.example.com", code, b)
		}, "Your session ended"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			code, binding := f.issue(t, "https://grafana.example.com/x")
			rec := tt.use(t, f, code, binding)
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), tt.want) {
				t.Fatalf("%d, want 400 saying %q:\n%s", rec.Code, tt.want, rec.Body)
			}
			if c := sessionCookie(rec); c != nil {
				t.Fatalf("a refused code set a session cookie")
			}
			if rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("Referrer-Policy") != "no-referrer" {
				t.Errorf("refusal may be cached or leak its URL: %v", rec.Header())
			}
			// Whatever the refusal, the code used is burned (an altered
			// code is another code: the real one stays good).
			if tt.name == "altered" || tt.name == "garbage" {
				return
			}
			if rec := f.exchange("grafana.example.com", code, binding); rec.Code != http.StatusBadRequest {
				t.Fatalf("the code worked after being refused: %d", rec.Code)
			}
		})
	}
}

func TestHandoffCodeIsSingleUseUnderRace(t *testing.T) {
	f := newFixture(t)
	code, binding := f.issue(t, "https://grafana.example.com/")
	var ok atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if f.exchange("grafana.example.com", code, binding).Code == http.StatusFound {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Fatalf("%d exchanges succeeded, want exactly 1", ok.Load())
	}
}

func TestHandoffRecordIsSealed(t *testing.T) {
	f := newFixture(t)
	code, _ := f.issue(t, "https://grafana.example.com/secret-page")
	f.store.mu.Lock()
	defer f.store.mu.Unlock()
	for i, v := range f.store.written {
		for _, plain := range []string{"alice@example.com", "provider-access-token", "provider-refresh-token", "secret-page", code} {
			if bytes.Contains(v, []byte(plain)) || strings.Contains(f.store.keys[i], plain) {
				t.Fatalf("the store sees %q", plain)
			}
		}
	}
}

func TestIssueOnlyForRouteHosts(t *testing.T) {
	f := newFixture(t)
	_, b := f.bind(t)
	for _, rd := range []string{"https://evil.example.net/", "https://auth.example.com/", "/relative", "https://user@grafana.example.com/",
		"https://\u212Aibana.example.com/"} {
		if f.ho.Covers(rd) {
			t.Errorf("Covers(%q)", rd)
		}
		if _, err := f.ho.Issue(context.Background(), f.auth, rd, b); err == nil {
			t.Errorf("Issue(%q) made a code", rd)
		}
	}
	if _, err := f.ho.Issue(context.Background(), f.auth, "https://grafana.example.com/", "not-a-binding"); !errors.Is(err, authn.ErrBadBinding) {
		t.Errorf("Issue with a malformed binding: %v", err)
	}
}

func TestLocalRedirectStaysOnTheHost(t *testing.T) {
	for in, want := range map[string]string{
		"https://grafana.example.com/d/x?y=1#f": "/d/x?y=1",
		"https://grafana.example.com":           "/",
		"https://grafana.example.com//evil.net": "/",
		"https://grafana.example.com/%2F%2Fx":   "/%2F%2Fx",
		"::":                                    "/",
	} {
		if got := localRedirect(in); got != want {
			t.Errorf("localRedirect(%q) = %q, want %q", in, got, want)
		}
	}
}

// The hand-off URL is the route's origin as Gatehouse serves it: the
// canonical host with public_url's scheme and port, whatever port or
// spelling rd came with (another port may be another service, which would
// read the code and redeem it with a binding of its own), and the code is
// good on that origin only.
func TestHandoffURLIsTheRouteOrigin(t *testing.T) {
	tests := []struct {
		name, public, rd string
		want             string // the hand-off URL before "?code="
		back             string // where the exchange sends the browser
		refusedAt        string // a Host the code must not work on
	}{
		{"rd on another port", "https://auth.example.com", "https://grafana.example.com:8081/x?y=1",
			"https://grafana.example.com/oauth2/handoff", "/x?y=1", "grafana.example.com:8081"},
		{"rd on the default port, spelled", "https://auth.example.com", "https://grafana.example.com:443/",
			"https://grafana.example.com/oauth2/handoff", "/", "grafana.example.com:8443"},
		{"rd in another case, with a trailing dot", "https://auth.example.com", "https://GRAFANA.Example.com.:9000/d",
			"https://grafana.example.com/oauth2/handoff", "/d", "grafana.example.com:9000"},
		{"public_url with a port", "http://auth.example.com:4180", "http://grafana.example.com:1/d",
			"http://grafana.example.com:4180/oauth2/handoff", "/d", "grafana.example.com:1"},
		{"public_url with a port, rd without", "http://auth.example.com:4180", "http://grafana.example.com/d",
			"http://grafana.example.com:4180/oauth2/handoff", "/d", "grafana.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			public, _ := url.Parse(tt.public)
			f.ho = New(Config{Store: f.store, Sessions: f.sessions, Pages: pages.New(), PublicURL: public, Prefix: "/oauth2",
				Cookie: "_gatehouse", Secure: public.Scheme == "https", RouteHost: f.ho.c.RouteHost,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: f.clk.now})
			issue := func() (string, *http.Cookie) {
				rec := httptest.NewRecorder()
				b, err := f.ho.Bind(rec)
				if err != nil {
					t.Fatal(err)
				}
				loc, err := f.ho.Issue(context.Background(), f.auth, tt.rd, b)
				if err != nil {
					t.Fatal(err)
				}
				base, code, _ := strings.Cut(loc, "?code=")
				if base != tt.want {
					t.Fatalf("hand-off URL %s, want %s", loc, tt.want+"?code=…")
				}
				return code, rec.Result().Cookies()[0]
			}
			code, binding := issue()
			if rec := f.exchange(tt.refusedAt, code, binding); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "another address") {
				t.Fatalf("exchanged on %s: %d, want 400", tt.refusedAt, rec.Code)
			}
			code, binding = issue()
			u, _ := url.Parse(tt.want)
			rec := f.exchange(u.Host, code, binding)
			if rec.Code != http.StatusFound || rec.Header().Get("Location") != tt.back {
				t.Fatalf("exchange on %s: %d to %q, want %q: %s", u.Host, rec.Code, rec.Header().Get("Location"), tt.back, rec.Body)
			}
		})
	}
}

// A binding cookie planted by a sibling subdomain (Domain=.example.com),
// or one on another path, is a second cookie of the name: the exchange
// cannot tell which is this browser's, and refuses. Otherwise a planted
// nonce could bind the browser to the planter's own code (login CSRF).
func TestHandoffBindingCookie(t *testing.T) {
	tests := []struct {
		name    string
		cookies func(name, mine, planted string) []string // Cookie header lines
		want    int
	}{
		{"only this browser's", func(n, mine, _ string) []string { return []string{n + "=" + mine} }, http.StatusFound},
		{"planted one first", func(n, mine, planted string) []string { return []string{n + "=" + planted + "; " + n + "=" + mine} }, http.StatusBadRequest},
		{"planted one last", func(n, mine, planted string) []string { return []string{n + "=" + mine + "; " + n + "=" + planted} }, http.StatusBadRequest},
		{"planted one on another Cookie line", func(n, mine, planted string) []string { return []string{n + "=" + planted, "a=1; " + n + "=" + mine} }, http.StatusBadRequest},
		{"the same value twice", func(n, mine, _ string) []string { return []string{n + "=" + mine + "; " + n + "=" + mine} }, http.StatusBadRequest},
		{"none", func(string, string, string) []string { return []string{"a=1"} }, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			// The planter's code, bound to the planter's own nonce.
			planted, b := f.bind(t)
			loc, err := f.ho.Issue(context.Background(), f.auth, "https://grafana.example.com/", b)
			if err != nil {
				t.Fatal(err)
			}
			_, code, _ := strings.Cut(loc, "?code=")
			mine, _ := f.bind(t)
			if tt.name == "only this browser's" {
				mine = planted // the code is this browser's own
			}
			r := httptest.NewRequest(http.MethodGet, "https://grafana.example.com/oauth2/handoff?code="+url.QueryEscape(code), nil)
			r.Header["Cookie"] = tt.cookies(planted.Name, mine.Value, planted.Value)
			rec := httptest.NewRecorder()
			f.ho.ServeHTTP(rec, r)
			if rec.Code != tt.want {
				t.Fatalf("%d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
			if tt.want != http.StatusFound && sessionCookie(rec) != nil {
				t.Fatal("a refused exchange set a session cookie")
			}
		})
	}
}

func TestBindingCookieName(t *testing.T) {
	for _, tt := range []struct {
		cookie string
		secure bool
		want   string
	}{
		{"_gatehouse", true, "__Host-_gatehouse_state_handoff"},
		{"_gatehouse", false, "_gatehouse_state_handoff"}, // http (loopback): no prefix possible
		{"__Host-gh", true, "__Host-gh_state_handoff"},
		{"__Secure-gh", true, "__Host-gh_state_handoff"},
	} {
		if got := BindingCookieName(tt.cookie, tt.secure); got != tt.want {
			t.Errorf("BindingCookieName(%q, %v) = %q, want %q", tt.cookie, tt.secure, got, tt.want)
		}
	}
	// Plain http: the cookie still works, without the prefix.
	f := newFixture(t)
	public, _ := url.Parse("http://auth.example.com:4180")
	ho := New(Config{Store: f.store, Sessions: f.sessions, Pages: pages.New(), PublicURL: public, Prefix: "/oauth2", Cookie: "_gatehouse",
		RouteHost: f.ho.c.RouteHost, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: f.clk.now})
	rec := httptest.NewRecorder()
	if _, err := ho.Bind(rec); err != nil {
		t.Fatal(err)
	}
	if c := rec.Result().Cookies()[0]; c.Name != "_gatehouse_state_handoff" || c.Secure || c.Path != "/" || !c.HttpOnly {
		t.Fatalf("plain binding cookie %+v", c)
	}
}
