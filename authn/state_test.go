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
	tampered.Value = strings.ToUpper(cookie.Value[:10]) + cookie.Value[10:]
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
