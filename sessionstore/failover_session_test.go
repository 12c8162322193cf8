package sessionstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// Sign-outs made while a memcached node was cut off went to the next node;
// when the node answers again, what it still holds (the sessions, the
// users' old generations) must not bring those sessions back.
func TestSignOutWhileANodeIsDownStaysSignedOut(t *testing.T) {
	ctx := context.Background()
	type signedIn struct {
		id     identity.Identity
		cookie *http.Cookie
		s      *session.Session
	}
	tests := []struct {
		name string
		end  func(m *session.Manager, u signedIn) error
	}{
		{"sign out", func(m *session.Manager, u signedIn) error { return m.Delete(ctx, nil, u.s) }},
		{"sign out everywhere", func(m *session.Manager, u signedIn) error { return m.EndAll(ctx, u.id) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := sessionstore.StartMemcached(t), sessionstore.StartMemcached(t)
			store := sessionstore.NewTestMemcache(t, a.Addr(), b.Addr())
			m := session.NewManager(session.Config{CookieName: "_gatehouse", Lifetime: time.Hour, IdleTimeout: time.Hour}, store, nil)
			// Twenty users: their sessions and generations spread over
			// both nodes, so some live on A.
			var users []signedIn
			for i := 0; i < 20; i++ {
				id := identity.Identity{Provider: "corp", Subject: fmt.Sprint(i), User: fmt.Sprintf("user%d", i)}
				rec := httptest.NewRecorder()
				s, err := m.Create(ctx, rec, id, nil)
				if err != nil {
					t.Fatal(err)
				}
				users = append(users, signedIn{id: id, cookie: rec.Result().Cookies()[0], s: s})
			}
			a.Pause()
			for _, u := range users {
				_, _ = m.Load(ctx, request(u.cookie)) // the first to reach A sets it aside
			}
			if n := sessionstore.UpCount(store); n != 1 {
				t.Fatalf("%d nodes in use with A cut off, want 1", n)
			}
			for _, u := range users {
				if err := tt.end(m, u); err != nil {
					t.Fatalf("%s while A is down: %v", tt.name, err)
				}
			}
			a.Resume()
			sessionstore.WaitUntil(t, 10*time.Second, "A to be used again", func() bool { return sessionstore.UpCount(store) == 2 })
			for _, u := range users {
				if _, err := m.Load(ctx, request(u.cookie)); !errors.Is(err, session.ErrNoSession) {
					t.Errorf("%s's session after %s while A was down: %v, want ErrNoSession", u.id.User, tt.name, err)
				}
			}
		})
	}
}

func request(c *http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(c)
	return r
}

// With one memcached, a request while it is down fails closed (an error,
// which the proxy answers with 503, not "no session"); once it is back the
// next request is served at once, without waiting for a probe.
func TestOneMemcachedRequestsWorkAsSoonAsItIsBack(t *testing.T) {
	ctx := context.Background()
	mc := sessionstore.StartMemcached(t)
	store := sessionstore.NewTestMemcacheNoProbe(t, mc.Addr())
	m := session.NewManager(session.Config{CookieName: "_gatehouse", Lifetime: time.Hour, IdleTimeout: time.Hour}, store, nil)
	alice := identity.Identity{Provider: "corp", Subject: "1", User: "alice"}
	rec := httptest.NewRecorder()
	if _, err := m.Create(ctx, rec, alice, nil); err != nil {
		t.Fatal(err)
	}
	cookie := rec.Result().Cookies()[0]
	mc.Stop()
	for i := 0; i < 3; i++ {
		if _, err := m.Load(ctx, request(cookie)); err == nil || errors.Is(err, session.ErrNoSession) {
			t.Fatalf("request %d with memcached down: %v, want a store error", i, err)
		}
	}
	mc.Start() // same port; a restarted memcached is empty
	if _, err := m.Load(ctx, request(cookie)); !errors.Is(err, session.ErrNoSession) {
		t.Fatalf("first request once memcached is back: %v, want an answer (no session), not an error", err)
	}
	rec = httptest.NewRecorder()
	if _, err := m.Create(ctx, rec, alice, nil); err != nil {
		t.Fatalf("signing in again: %v", err)
	}
	if _, err := m.Load(ctx, request(rec.Result().Cookies()[0])); err != nil {
		t.Fatalf("the new session: %v", err)
	}
}

// With three memcached and two replicas, killing any one node signs out
// nobody and refuses no request, and neither does its return (empty);
// sessions signed out while it was down stay signed out.
func TestOneOfThreeNodesDownSignsOutNobody(t *testing.T) {
	ctx := context.Background()
	for victim := 0; victim < 3; victim++ {
		t.Run(fmt.Sprint("node ", victim), func(t *testing.T) {
			nodes := []interface {
				Addr() string
				Stop()
				Start()
			}{sessionstore.StartMemcached(t), sessionstore.StartMemcached(t), sessionstore.StartMemcached(t)}
			store := sessionstore.NewTestMemcache(t, nodes[0].Addr(), nodes[1].Addr(), nodes[2].Addr())
			m := session.NewManager(session.Config{CookieName: "_gatehouse", Lifetime: time.Hour, IdleTimeout: time.Hour}, store, nil)
			type signedIn struct {
				id     identity.Identity
				cookie *http.Cookie
				s      *session.Session
			}
			var users []signedIn
			for i := 0; i < 40; i++ {
				id := identity.Identity{Provider: "corp", Subject: fmt.Sprint(i), User: fmt.Sprintf("user%d", i)}
				rec := httptest.NewRecorder()
				s, err := m.Create(ctx, rec, id, nil)
				if err != nil {
					t.Fatal(err)
				}
				users = append(users, signedIn{id: id, cookie: rec.Result().Cookies()[0], s: s})
			}
			loadAll := func(when string, signedOut func(i int) bool) {
				t.Helper()
				for i, u := range users {
					_, err := m.Load(ctx, request(u.cookie))
					switch {
					case signedOut(i) && !errors.Is(err, session.ErrNoSession):
						t.Fatalf("%s, %s signed out: %v, want ErrNoSession", when, u.id.User, err)
					case !signedOut(i) && err != nil:
						t.Fatalf("%s, %s: %v, want the session", when, u.id.User, err)
					}
				}
			}
			nodes[victim].Stop()
			loadAll("with a node down", func(int) bool { return false })
			for i, u := range users {
				var err error
				switch i % 4 {
				case 0:
					err = m.Delete(ctx, nil, u.s)
				case 1:
					err = m.EndAll(ctx, u.id)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			ended := func(i int) bool { return i%4 < 2 }
			loadAll("with a node down", ended)
			nodes[victim].Start() // empty
			sessionstore.WaitUntil(t, 10*time.Second, "the node to be used again", func() bool { return sessionstore.UpCount(store) == 3 })
			loadAll("once the node is back", ended)
		})
	}
}
