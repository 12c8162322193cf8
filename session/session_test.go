package session

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/sessionstore"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }
func newClock() *fakeClock               { return &fakeClock{t: time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)} }
func testConfig() Config {
	return Config{CookieName: "_gatehouse", CookieSecure: true, CookieSameSite: "lax", Lifetime: 8 * time.Hour, IdleTimeout: time.Hour}
}

// countingStore counts writes of session records, to check the idle clock
// is not written on every request.
type countingStore struct {
	sessionstore.Store
	mu   sync.Mutex
	sets int
	fail error
}

func (c *countingStore) Set(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	c.mu.Lock()
	if strings.HasPrefix(k, storeKeyPrefix) {
		c.sets++
	}
	c.mu.Unlock()
	return c.Store.Set(ctx, k, v, ttl)
}

func (c *countingStore) Replace(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	c.mu.Lock()
	if strings.HasPrefix(k, storeKeyPrefix) {
		c.sets++
	}
	c.mu.Unlock()
	return c.Store.Replace(ctx, k, v, ttl)
}

func (c *countingStore) GetMulti(ctx context.Context, keys []string) (map[string][]byte, error) {
	return getEach(ctx, c.Get, keys)
}

func (c *countingStore) Get(ctx context.Context, k string) ([]byte, error) {
	if c.fail != nil {
		return nil, c.fail
	}
	return c.Store.Get(ctx, k)
}

var alice = identity.Identity{Provider: "corp", Subject: "1", User: "alice", Email: "alice@example.com", EmailVerified: true}

func create(t *testing.T, m *Manager) (*http.Cookie, *Session) {
	t.Helper()
	rec := httptest.NewRecorder()
	s, err := m.Create(context.Background(), rec, alice, &ProviderToken{AccessToken: "provider-access-token"})
	if err != nil {
		t.Fatal(err)
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("Create set %d cookies", len(cookies))
	}
	return cookies[0], s
}

func requestWith(c *http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if c != nil {
		r.AddCookie(c)
	}
	return r
}

func TestCookieCarriesNoIdentity(t *testing.T) {
	m := NewManager(testConfig(), sessionstore.NewMemory(nil), nil)
	c, _ := create(t, m)
	if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Name != "_gatehouse" {
		t.Fatalf("cookie attributes: %+v", c)
	}
	for _, leak := range []string{"alice", "example.com", "corp", "provider-access-token"} {
		if strings.Contains(strings.ToLower(c.Value), leak) {
			t.Fatalf("cookie value contains %q", leak)
		}
	}
	c2, _ := create(t, m)
	if c.Value == c2.Value {
		t.Fatal("two sign-ins got the same ticket")
	}
}

func TestStoreHoldsNoPlaintext(t *testing.T) {
	store := sessionstore.NewMemory(nil)
	m := NewManager(testConfig(), store, nil)
	c, _ := create(t, m)
	tk, err := parseTicket(c.Value)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := store.Get(context.Background(), tk.storeKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"alice", "example.com", "provider-access-token"} {
		if strings.Contains(string(rec), leak) {
			t.Fatalf("store record contains %q in the clear", leak)
		}
	}
	if strings.Contains(tk.storeKey(), c.Value[:10]) {
		t.Fatal("store key reveals the ticket")
	}
}

func TestLoadRoundTripAndLifetimes(t *testing.T) {
	clk := newClock()
	store := &countingStore{Store: sessionstore.NewMemory(clk.now)}
	m := NewManager(testConfig(), store, clk.now)
	c, created := create(t, m)
	got, err := m.Load(context.Background(), requestWith(c))
	if err != nil || got.Identity.Email != "alice@example.com" || got.ID() != created.ID() {
		t.Fatalf("load: %+v %v", got, err)
	}
	// Activity every 10 minutes keeps the session past the idle timeout,
	// without a store write per request.
	writes := store.sets
	for i := 0; i < 30; i++ {
		clk.add(10 * time.Second)
		if _, err := m.Load(context.Background(), requestWith(c)); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if store.sets-writes > 2 {
		t.Fatalf("%d store writes for 30 requests in 5 minutes", store.sets-writes)
	}
	for i := 0; i < 12; i++ { // two more hours of activity
		clk.add(10 * time.Minute)
		if _, err := m.Load(context.Background(), requestWith(c)); err != nil {
			t.Fatalf("active session ended at %s: %v", clk.now(), err)
		}
	}
	// Idle for longer than the idle timeout: gone.
	clk.add(61 * time.Minute)
	if _, err := m.Load(context.Background(), requestWith(c)); !errors.Is(err, ErrNoSession) {
		t.Fatalf("idle session: %v", err)
	}
}

func TestAbsoluteLifetimeEndsActiveSession(t *testing.T) {
	clk := newClock()
	m := NewManager(testConfig(), sessionstore.NewMemory(clk.now), clk.now)
	c, _ := create(t, m)
	for i := 0; i < 48; i++ { // 8 hours of requests every 10 minutes
		clk.add(10 * time.Minute)
		_, err := m.Load(context.Background(), requestWith(c))
		if clk.now().Sub(time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)) >= 8*time.Hour {
			if !errors.Is(err, ErrNoSession) {
				t.Fatalf("session alive past its lifetime: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("session ended early at %s: %v", clk.now(), err)
		}
	}
	t.Fatal("never reached the lifetime")
}

func TestDeleteEndsTicket(t *testing.T) {
	m := NewManager(testConfig(), sessionstore.NewMemory(nil), nil)
	c, s := create(t, m)
	rec := httptest.NewRecorder()
	if err := m.Delete(context.Background(), rec, s); err != nil {
		t.Fatal(err)
	}
	if cleared := rec.Result().Cookies(); len(cleared) != 1 || cleared[0].MaxAge >= 0 {
		t.Fatalf("cookie not cleared: %+v", cleared)
	}
	if _, err := m.Load(context.Background(), requestWith(c)); !errors.Is(err, ErrNoSession) {
		t.Fatalf("deleted session loads: %v", err)
	}
}

func TestBadTicketsAreNoSession(t *testing.T) {
	store := sessionstore.NewMemory(nil)
	m := NewManager(testConfig(), store, nil)
	c, _ := create(t, m)
	other, _ := create(t, m)
	flip := []byte(c.Value)
	if flip[5] == 'A' {
		flip[5] = 'B'
	} else {
		flip[5] = 'A'
	}
	for name, value := range map[string]string{
		"flipped":   string(flip),
		"truncated": c.Value[:40],
		"random":    strings.Repeat("A", len(c.Value)),
		"not b64":   strings.Repeat("*", len(c.Value)),
		"empty":     "",
		"huge":      strings.Repeat("x", 5000),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := m.Load(context.Background(), requestWith(&http.Cookie{Name: "_gatehouse", Value: value}))
			if !errors.Is(err, ErrNoSession) {
				t.Fatalf("err = %v, want ErrNoSession", err)
			}
		})
	}
	t.Run("record swapped under another key", func(t *testing.T) {
		a, _ := parseTicket(c.Value)
		b, _ := parseTicket(other.Value)
		recB, _ := store.Get(context.Background(), b.storeKey())
		_ = store.Set(context.Background(), a.storeKey(), recB, time.Hour)
		if _, err := m.Load(context.Background(), requestWith(c)); !errors.Is(err, ErrNoSession) {
			t.Fatalf("swapped record accepted: %v", err)
		}
	})
	t.Run("no cookie", func(t *testing.T) {
		if _, err := m.Load(context.Background(), requestWith(nil)); !errors.Is(err, ErrNoSession) {
			t.Fatal(err)
		}
	})
}

func TestStoreFailureFailsClosed(t *testing.T) {
	store := &countingStore{Store: sessionstore.NewMemory(nil)}
	m := NewManager(testConfig(), store, nil)
	c, _ := create(t, m)
	store.fail = errors.New("memcache: connection refused")
	_, err := m.Load(context.Background(), requestWith(c))
	if err == nil || errors.Is(err, ErrNoSession) {
		t.Fatalf("err = %v, want a store error distinct from no-session", err)
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte(strings.Repeat("s", 40)+"\n"), 0o600)
	base := func() Config {
		c := testConfig()
		c.Secret = strings.Repeat("x", 32)
		c.RevalidateInterval = time.Hour
		c.Store = sessionstore.Config{Type: "memory"}
		return c
	}
	ok := base()
	if ps := ok.Validate(); len(ps) != 0 {
		t.Fatalf("valid config: %v", ps)
	}
	fromFile := base()
	fromFile.Secret, fromFile.SecretFile = "", secretFile
	if ps := fromFile.Validate(); len(ps) != 0 || fromFile.Secret != strings.Repeat("s", 40) {
		t.Fatalf("secret_file: %v %q", ps, fromFile.Secret)
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		key    string
	}{
		{"short secret", func(c *Config) { c.Secret = "short" }, "secret"},
		{"no secret", func(c *Config) { c.Secret = "" }, "secret"},
		{"both secret and file", func(c *Config) { c.SecretFile = secretFile }, "secret"},
		{"bad samesite", func(c *Config) { c.CookieSameSite = "loose" }, "cookie_samesite"},
		{"none without secure", func(c *Config) { c.CookieSameSite = "none"; c.CookieSecure = false }, "cookie_samesite"},
		{"bad cookie name", func(c *Config) { c.CookieName = "a;b" }, "cookie_name"},
		{"__Host- with a domain", func(c *Config) { c.CookieName = "__Host-gh"; c.CookieDomain = "example.com" }, "cookie_name"},
		{"__Secure- without secure", func(c *Config) { c.CookieName = "__Secure-gh"; c.CookieSecure = false }, "cookie_name"},
		{"zero lifetime", func(c *Config) { c.Lifetime = 0 }, "lifetime"},
		{"bad store", func(c *Config) { c.Store.Type = "redis" }, "store.type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.mutate(&c)
			ps := c.Validate()
			if len(ps) == 0 || ps[0].Key != tt.key {
				t.Fatalf("problems = %v, want one on %s", ps, tt.key)
			}
			if strings.Contains(ps[0].Message, c.Secret) && c.Secret != "" {
				t.Fatalf("problem message reveals the secret: %s", ps[0].Message)
			}
		})
	}
}

// FuzzParseTicket feeds any cookie value to the ticket parser and to
// Load: nothing panics, what parses round-trips, and against a store that
// holds only another session nothing loads.
func FuzzParseTicket(f *testing.F) {
	t0, _ := newTicket(userHash(alice))
	f.Add(t0.String())
	f.Add("")
	f.Add(strings.Repeat("A", 64))
	f.Add("!!!!")
	m := NewManager(testConfig(), sessionstore.NewMemory(nil), nil)
	rec := httptest.NewRecorder()
	if _, err := m.Create(context.Background(), rec, alice, nil); err != nil {
		f.Fatal(err)
	}
	issued := rec.Result().Cookies()[0].Value
	// The long form: a ticket carrying a back-channel logout hint.
	bound := httptest.NewRecorder()
	if _, err := m.Create(context.Background(), bound, alice, &ProviderToken{SID: "s"}, WithBackchannelLogout()); err != nil {
		f.Fatal(err)
	}
	boundValue := bound.Result().Cookies()[0].Value
	f.Add(boundValue)
	f.Fuzz(func(t *testing.T, s string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Cookie", "_gatehouse="+s)
		if _, err := m.Load(context.Background(), r); s != issued && s != boundValue && !errors.Is(err, ErrNoSession) {
			t.Fatalf("cookie %q: err = %v, want ErrNoSession", s, err)
		}
		tk, err := parseTicket(s)
		if err != nil {
			return
		}
		if tk.String() != s {
			t.Fatalf("round trip: %q -> %q", s, tk.String())
		}
		again, err := parseTicket(tk.String())
		if err != nil || !again.same(tk) {
			t.Fatalf("re-parse of %q: %v", s, err)
		}
		if _, err := tk.open([]byte(s)); err == nil {
			t.Fatal("garbage opened as a record")
		}
	})
}

func TestCookieAttributesFollowConfig(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(*Config)
		sameSite http.SameSite
	}{
		{"defaults", func(*Config) {}, http.SameSiteLaxMode},
		{"strict", func(c *Config) { c.CookieSameSite = "strict" }, http.SameSiteStrictMode},
		{"none", func(c *Config) { c.CookieSameSite = "none" }, http.SameSiteNoneMode},
		{"case-insensitive", func(c *Config) { c.CookieSameSite = "Strict" }, http.SameSiteStrictMode},
		{"not secure", func(c *Config) { c.CookieSecure = false }, http.SameSiteLaxMode},
		{"own name and domain", func(c *Config) { c.CookieName = "__Secure-sso"; c.CookieDomain = "example.com" }, http.SameSiteLaxMode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			tt.mutate(&cfg)
			m := NewManager(cfg, sessionstore.NewMemory(nil), nil)
			c, _ := create(t, m)
			if c.Name != cfg.CookieName || !c.HttpOnly || c.Secure != cfg.CookieSecure || c.SameSite != tt.sameSite ||
				c.Path != "/" || c.Domain != cfg.CookieDomain || c.MaxAge != int(cfg.Lifetime/time.Second) {
				t.Fatalf("cookie = %+v for config %+v", c, cfg)
			}
			if got, err := m.Load(context.Background(), requestWith(c)); err != nil || got.Identity.User != "alice" {
				t.Fatalf("load under %q: %v", cfg.CookieName, err)
			}
			// A ticket under another cookie name is not read.
			other := *c
			other.Name = "other"
			if _, err := m.Load(context.Background(), requestWith(&other)); !errors.Is(err, ErrNoSession) {
				t.Fatalf("a ticket under another name loaded: %v", err)
			}
		})
	}
}

func TestCreateIssuesAFreshTicketEachTime(t *testing.T) {
	m := NewManager(testConfig(), sessionstore.NewMemory(nil), nil)
	seen := map[string]bool{}
	var cookies []*http.Cookie
	for i := 0; i < 20; i++ {
		c, s := create(t, m)
		if seen[c.Value] || seen[s.ID()] {
			t.Fatal("a ticket or session id was issued twice")
		}
		seen[c.Value], seen[s.ID()] = true, true
		if strings.Contains(c.Value, s.ID()) {
			t.Fatal("the cookie carries the public session id")
		}
		cookies = append(cookies, c)
	}
	// Signing in again (another browser) does not end the earlier sessions.
	for i, c := range cookies {
		if _, err := m.Load(context.Background(), requestWith(c)); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
	}
}

// A request with more than one session cookie (a sibling domain's, one
// for another path, a planted one) is never authenticated as any of them.
func TestSeveralCookiesOfTheSameNameAreNone(t *testing.T) {
	m := NewManager(testConfig(), sessionstore.NewMemory(nil), nil)
	good, _ := create(t, m)
	other, _ := create(t, m) // say, an attacker's own session
	ended, s := create(t, m)
	if err := m.Delete(context.Background(), nil, s); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		headers []string // Cookie header lines
		wantOK  bool
	}{
		{"one cookie", []string{"_gatehouse=" + good.Value}, true},
		{"one cookie among others", []string{"a=1; _gatehouse=" + good.Value + "; _gatehouse_state_x=2"}, true},
		{"two valid sessions", []string{"_gatehouse=" + other.Value + "; _gatehouse=" + good.Value}, false},
		{"two valid sessions, other order", []string{"_gatehouse=" + good.Value + "; _gatehouse=" + other.Value}, false},
		{"the same ticket twice", []string{"_gatehouse=" + good.Value + "; _gatehouse=" + good.Value}, false},
		{"an ended session first", []string{"_gatehouse=" + ended.Value + "; _gatehouse=" + good.Value}, false},
		{"garbage first", []string{"_gatehouse=garbage; _gatehouse=" + good.Value}, false},
		{"a value Go's parser drops", []string{`_gatehouse="a b"; _gatehouse=` + good.Value}, false},
		{"in two Cookie headers", []string{"_gatehouse=" + good.Value, "_gatehouse=" + other.Value}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, h := range tt.headers {
				r.Header.Add("Cookie", h)
			}
			got, err := m.Load(context.Background(), r)
			if tt.wantOK {
				if err != nil || got.Identity.User != "alice" {
					t.Fatalf("Load = %v, want the session", err)
				}
				return
			}
			if !errors.Is(err, ErrNoSession) {
				t.Fatalf("Load = %+v, %v; want ErrNoSession", got, err)
			}
		})
	}
}

func TestIdleTimeout(t *testing.T) {
	tests := []struct {
		idle    time.Duration
		wantErr bool
	}{
		{59 * time.Minute, false},
		{61 * time.Minute, true},
	}
	for _, tt := range tests {
		t.Run(tt.idle.String(), func(t *testing.T) {
			clk := newClock()
			m := NewManager(testConfig(), sessionstore.NewMemory(clk.now), clk.now) // idle timeout 1h
			c, _ := create(t, m)
			clk.add(tt.idle)
			_, err := m.Load(context.Background(), requestWith(c))
			if tt.wantErr != errors.Is(err, ErrNoSession) || (!tt.wantErr && err != nil) {
				t.Fatalf("after %s idle: err = %v", tt.idle, err)
			}
		})
	}
}

func TestActivityTouchesTheStoreRarely(t *testing.T) {
	clk := newClock()
	store := &countingStore{Store: sessionstore.NewMemory(clk.now)}
	m := NewManager(testConfig(), store, clk.now) // idle 1h: touched at most every 3 minutes
	c, _ := create(t, m)
	before := store.sets
	for i := 0; i < 600; i++ { // a request a second for ten minutes
		clk.add(time.Second)
		if _, err := m.Load(context.Background(), requestWith(c)); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if writes := store.sets - before; writes < 1 || writes > 4 {
		t.Fatalf("%d store writes for 600 requests over 10 minutes, want a few", writes)
	}
	// The touches moved the idle clock: 55 minutes after the last
	// request the session is still there, though 65 minutes after sign-in.
	clk.add(55 * time.Minute)
	if _, err := m.Load(context.Background(), requestWith(c)); err != nil {
		t.Fatalf("active session ended by the idle timeout: %v", err)
	}
}

func TestEndAllEndsEarlierSessionsOnly(t *testing.T) {
	clk := newClock()
	m := NewManager(testConfig(), sessionstore.NewMemory(clk.now), clk.now)
	old1, _ := create(t, m)
	old2, _ := create(t, m)
	bob := alice
	bob.Subject, bob.User = "2", "bob"
	rec := httptest.NewRecorder()
	if _, err := m.Create(context.Background(), rec, bob, nil); err != nil {
		t.Fatal(err)
	}
	bobCookie := rec.Result().Cookies()[0]
	clk.add(time.Second)
	if err := m.EndAll(context.Background(), alice); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Second)
	fresh, _ := create(t, m)
	for name, c := range map[string]*http.Cookie{"first": old1, "second": old2} {
		if _, err := m.Load(context.Background(), requestWith(c)); !errors.Is(err, ErrNoSession) {
			t.Errorf("%s session from before sign-out everywhere: %v", name, err)
		}
	}
	if _, err := m.Load(context.Background(), requestWith(fresh)); err != nil {
		t.Errorf("session after sign-out everywhere: %v", err)
	}
	if _, err := m.Load(context.Background(), requestWith(bobCookie)); err != nil {
		t.Errorf("another user's session ended: %v", err)
	}
}

func TestStoreFailureOnTouchFailsClosed(t *testing.T) {
	clk := newClock()
	store := &failingSetStore{Store: sessionstore.NewMemory(clk.now)}
	m := NewManager(testConfig(), store, clk.now)
	c, _ := create(t, m)
	store.fail = true
	clk.add(10 * time.Minute) // due for a touch
	if _, err := m.Load(context.Background(), requestWith(c)); err == nil || errors.Is(err, ErrNoSession) {
		t.Fatalf("err = %v, want a store error", err)
	}
}

type failingSetStore struct {
	sessionstore.Store
	fail bool
}

func (s *failingSetStore) Set(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	if s.fail {
		return errors.New("memcache: i/o timeout")
	}
	return s.Store.Set(ctx, k, v, ttl)
}

func (s *failingSetStore) Replace(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	if s.fail {
		return errors.New("memcache: i/o timeout")
	}
	return s.Store.Replace(ctx, k, v, ttl)
}

func TestConfigSecretFileProblems(t *testing.T) {
	c := testConfig()
	c.RevalidateInterval = time.Hour
	c.Store = sessionstore.Config{Type: "memory"}
	c.SecretFile = filepath.Join(t.TempDir(), "missing")
	ps := c.Validate()
	if len(ps) == 0 || ps[0].Key != "secret_file" {
		t.Fatalf("problems = %v, want one on secret_file", ps)
	}
	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, []byte("tooshort\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.SecretFile = short
	ps = c.Validate()
	if len(ps) != 1 || ps[0].Key != "secret" || !strings.Contains(ps[0].Message, "got 8") {
		t.Fatalf("problems = %v, want the short secret (8 bytes once trimmed)", ps)
	}
	if strings.Contains(ps[0].Message, "tooshort") {
		t.Fatalf("problem reveals the secret: %s", ps[0].Message)
	}
}

// same reports whether two tickets are the same (derived names aside).
func (t ticket) same(o ticket) bool { return t.id == o.id && t.key == o.key && t.user == o.user }
