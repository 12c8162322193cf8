package oauthserver

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
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/authn"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// scriptedVerifier accepts the tokens it lists.
type scriptedVerifier map[string]authn.LogoutClaims

func (v scriptedVerifier) VerifyLogoutToken(_ context.Context, raw string, now time.Time) (authn.LogoutClaims, error) {
	c, ok := v[raw]
	if !ok {
		return c, errors.New("bad token")
	}
	c.Until = now.Add(2 * time.Minute)
	return c, nil
}

// flakyStore fails every operation while down is set.
type flakyStore struct {
	sessionstore.Store
	down atomic.Bool
}

var errDown = errors.New("store down")

func (s *flakyStore) Get(ctx context.Context, key string) ([]byte, error) {
	if s.down.Load() {
		return nil, errDown
	}
	return s.Store.Get(ctx, key)
}

func (s *flakyStore) Add(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if s.down.Load() && !strings.HasPrefix(key, "bj1:") {
		return errDown
	}
	return s.Store.Add(ctx, key, value, ttl)
}

func TestBackchannelLogout(t *testing.T) {
	ctx := context.Background()
	store := &flakyStore{Store: sessionstore.NewMemory(nil)}
	sessions := session.NewManager(session.Config{
		CookieName: "_gatehouse", CookieSameSite: "lax", Lifetime: 100 * time.Hour, IdleTimeout: 100 * time.Hour,
	}, store, nil)
	alice := identity.Identity{Provider: "corp", Subject: "u-1", User: "alice"}
	signIn := func(sid string) *http.Cookie {
		rec := httptest.NewRecorder()
		if _, err := sessions.Create(ctx, rec, alice, &session.ProviderToken{AccessToken: "at", SID: sid}, session.WithBackchannelLogout()); err != nil {
			t.Fatal(err)
		}
		return rec.Result().Cookies()[0]
	}
	alive := func(c *http.Cookie) bool {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.AddCookie(c)
		_, err := sessions.Load(ctx, req)
		if err != nil && !errors.Is(err, session.ErrNoSession) {
			t.Fatal(err)
		}
		return err == nil
	}
	h := BackchannelLogout(BackchannelConfig{
		Provider: "corp", Sessions: sessions, Store: store, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Verifier: scriptedVerifier{
			"by-sid":       {SID: "idp-1", Subject: "u-1", JTI: "j1"},
			"by-sub":       {Subject: "u-1", JTI: "j2"},
			"by-sid-again": {SID: "idp-1", JTI: "j1"}, // another token, a spent jti
			"retry":        {Subject: "u-1", JTI: "j3"},
		},
	})
	post := func(body string) (*httptest.ResponseRecorder, map[string]string) {
		req := httptest.NewRequest(http.MethodPost, "/oauth2/backchannel_logout/corp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var m map[string]string
		_ = json.Unmarshal(rec.Body.Bytes(), &m)
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("%q: Cache-Control %q", body, rec.Header().Get("Cache-Control"))
		}
		return rec, m
	}
	token := func(raw string) string { return url.Values{"logout_token": {raw}}.Encode() }

	a1, a2, b := signIn("idp-1"), signIn("idp-1"), signIn("idp-2")
	if rec, _ := post(token("by-sid")); rec.Code != http.StatusOK {
		t.Fatalf("by sid: %d %s", rec.Code, rec.Body)
	}
	if alive(a1) || alive(a2) || !alive(b) {
		t.Fatalf("by sid: alive %v %v %v; want only the other provider session's", alive(a1), alive(a2), alive(b))
	}
	for _, body := range []string{token("by-sid"), token("by-sid-again"), token("forged"), "", "logout_token=", token("by-sub") + "&" + token("by-sub")} {
		if rec, m := post(body); rec.Code != http.StatusBadRequest || m["error"] != "invalid_request" {
			t.Fatalf("%q: %d %v, want 400 invalid_request", body, rec.Code, m)
		}
	}
	if !alive(b) {
		t.Fatal("a refused token ended a session")
	}

	// The store fails: 503, and the provider's retry of the same token
	// still works once it is back.
	store.down.Store(true)
	if rec, m := post(token("retry")); rec.Code != http.StatusServiceUnavailable || m["error"] != "temporarily_unavailable" {
		t.Fatalf("store down: %d %v", rec.Code, m)
	}
	store.down.Store(false)
	if !alive(b) {
		t.Fatal("session ended while the store was down?")
	}
	if rec, _ := post(token("retry")); rec.Code != http.StatusOK || alive(b) {
		t.Fatalf("retry: %d, session alive %v", rec.Code, alive(b))
	}
}
