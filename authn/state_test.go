package authn

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func newTestStateCookies(now func() time.Time) *stateCookies {
	return newStateCookies(strings.Repeat("k", 32), "_gatehouse", "/oauth2/callback/", true, now)
}

func TestStateCookiesTwoSignInsInFlight(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sc := newTestStateCookies(func() time.Time { return now })
	a, b := newLoginState("corp", "/a", now), newLoginState("corp", "/b", now)
	rec := httptest.NewRecorder()
	sc.set(rec, a)
	sc.set(rec, b)
	cookies := rec.Result().Cookies()
	if len(cookies) != 2 || cookies[0].Name == cookies[1].Name {
		t.Fatalf("want two distinct state cookies, got %v", cookies)
	}
	for _, c := range cookies {
		if !c.HttpOnly || !c.Secure || c.Path != "/oauth2/callback/" || c.MaxAge != 600 || c.SameSite != http.SameSiteLaxMode {
			t.Fatalf("state cookie attributes: %+v", c)
		}
		if strings.Contains(c.Value, a.Nonce) || strings.Contains(c.Value, a.Verifier) {
			t.Fatal("state cookie holds the nonce or verifier in the clear")
		}
	}
	req := httptest.NewRequest(http.MethodGet, "/oauth2/callback/corp", nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	for _, want := range []*loginState{b, a} {
		got, err := sc.take(httptest.NewRecorder(), req, want.State)
		if err != nil || got.Redirect != want.Redirect || got.Verifier != want.Verifier {
			t.Fatalf("take(%s) = %+v, %v", want.Redirect, got, err)
		}
	}
}

func TestStateCookiesRejectForgeriesAndExpiry(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sc := newTestStateCookies(func() time.Time { return now })
	st := newLoginState("corp", "/", now)
	rec := httptest.NewRecorder()
	sc.set(rec, st)
	cookie := rec.Result().Cookies()[0]
	with := func(c *http.Cookie) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/oauth2/callback/corp", nil)
		r.AddCookie(c)
		return r
	}
	tampered := *cookie
	tampered.Value = flipChar(cookie.Value, len(cookie.Value)/2)
	other := newTestStateCookies(func() time.Time { return now })
	other.key[0] ^= 1 // another deployment's secret
	for name, try := range map[string]func() error{
		"wrong state": func() error {
			_, err := sc.take(httptest.NewRecorder(), with(cookie), st.State[:12]+strings.Repeat("x", 31))
			return err
		},
		"short state":  func() error { _, err := sc.take(httptest.NewRecorder(), with(cookie), "abc"); return err },
		"tampered":     func() error { _, err := sc.take(httptest.NewRecorder(), with(&tampered), st.State); return err },
		"other secret": func() error { _, err := other.take(httptest.NewRecorder(), with(cookie), st.State); return err },
		"no cookie": func() error {
			_, err := sc.take(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), st.State)
			return err
		},
	} {
		if err := try(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	now = now.Add(stateLifetime + time.Second)
	if _, err := sc.take(httptest.NewRecorder(), with(cookie), st.State); err == nil {
		t.Error("expired state accepted")
	}
}

func TestStateCookiesArePrunedWhenTooMany(t *testing.T) {
	now := time.Now()
	sc := newTestStateCookies(func() time.Time { return now })
	req := httptest.NewRequest(http.MethodGet, "/oauth2/start", nil)
	for i := 0; i < maxInFlight; i++ {
		rec := httptest.NewRecorder()
		sc.set(rec, newLoginState("corp", "/", now))
		req.AddCookie(rec.Result().Cookies()[0])
	}
	rec := httptest.NewRecorder()
	sc.prune(rec, req)
	if n := len(rec.Result().Cookies()); n != maxInFlight {
		t.Fatalf("pruned %d cookies, want all %d", n, maxInFlight)
	}
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge >= 0 {
			t.Fatalf("cookie %s not expired", c.Name)
		}
	}
}

// flipChar changes the base64 character at i to another one, so the
// decoded bytes differ.
func flipChar(s string, i int) string {
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

func TestStateCookieIsBoundToItsOwnState(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sc := newTestStateCookies(func() time.Time { return now })
	a, b := newLoginState("corp", "/a", now), newLoginState("corp", "/b", now)
	recA, recB := httptest.NewRecorder(), httptest.NewRecorder()
	sc.set(recA, a)
	sc.set(recB, b)
	cookieA, cookieB := recA.Result().Cookies()[0], recB.Result().Cookies()[0]

	// An attacker's own cookie (for sign-in A), planted under the name
	// the victim's sign-in B looks for, must not finish B.
	planted := *cookieA
	planted.Name = cookieB.Name
	r := httptest.NewRequest(http.MethodGet, "/oauth2/callback/corp", nil)
	r.AddCookie(&planted)
	if _, err := sc.take(httptest.NewRecorder(), r, b.State); err == nil {
		t.Fatal("sign-in A's cookie finished sign-in B")
	}
	// B's own cookie still works, once.
	r = httptest.NewRequest(http.MethodGet, "/oauth2/callback/corp", nil)
	r.AddCookie(cookieB)
	rec := httptest.NewRecorder()
	got, err := sc.take(rec, r, b.State)
	if err != nil || got.Redirect != "/b" || got.Provider != "corp" || got.Nonce != b.Nonce {
		t.Fatalf("take = %+v, %v", got, err)
	}
	cleared := rec.Result().Cookies()
	if len(cleared) != 1 || cleared[0].Name != cookieB.Name || cleared[0].MaxAge >= 0 || cleared[0].Path != cookieB.Path {
		t.Fatalf("take did not expire the used cookie: %+v", cleared)
	}
}

func TestStateCookieLifetime(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		after time.Duration
		ok    bool
	}{
		{0, true},
		{stateLifetime - time.Second, true},
		{stateLifetime, false},
		{24 * time.Hour, false},
	} {
		t.Run(tt.after.String(), func(t *testing.T) {
			now := start
			sc := newTestStateCookies(func() time.Time { return now })
			st := newLoginState("corp", "/", start)
			rec := httptest.NewRecorder()
			sc.set(rec, st)
			c := rec.Result().Cookies()[0]
			if c.MaxAge != 600 {
				t.Fatalf("Max-Age = %d, want 600", c.MaxAge)
			}
			now = start.Add(tt.after)
			r := httptest.NewRequest(http.MethodGet, "/oauth2/callback/corp", nil)
			r.AddCookie(c)
			if _, err := sc.take(httptest.NewRecorder(), r, st.State); (err == nil) != tt.ok {
				t.Fatalf("take %s after start: err = %v", tt.after, err)
			}
		})
	}
}

func TestStateCookieAttributesFollowSessionCookie(t *testing.T) {
	for _, tt := range []struct {
		cookie     string
		secure     bool
		wantPrefix string
	}{
		{"_gatehouse", true, "_gatehouse_state_"},
		{"_gatehouse", false, "_gatehouse_state_"},
		{"sso", true, "sso_state_"},
		// A __Host- cookie must have Path=/; state cookies are scoped to
		// the callback path, so they become __Secure-.
		{"__Host-gh", true, "__Secure-gh_state_"},
		{"__Secure-gh", true, "__Secure-gh_state_"},
	} {
		t.Run(tt.cookie, func(t *testing.T) {
			if got := StateCookiePrefix(tt.cookie); got != tt.wantPrefix {
				t.Fatalf("StateCookiePrefix = %q, want %q", got, tt.wantPrefix)
			}
			sc := newStateCookies(strings.Repeat("k", 32), tt.cookie, "/sso/callback/", tt.secure, time.Now)
			rec := httptest.NewRecorder()
			sc.set(rec, newLoginState("corp", "/", time.Now()))
			c := rec.Result().Cookies()[0]
			if !strings.HasPrefix(c.Name, tt.wantPrefix) || c.Secure != tt.secure || !c.HttpOnly ||
				c.Path != "/sso/callback/" || c.SameSite != http.SameSiteLaxMode {
				t.Fatalf("state cookie = %+v", c)
			}
		})
	}
}
