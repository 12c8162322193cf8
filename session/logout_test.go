package session

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// signInBound creates a session of id bound for back-channel logout to
// provider session sid ("" = none).
func signInBound(t *testing.T, m *Manager, id identity.Identity, sid string) *http.Cookie {
	t.Helper()
	rec := httptest.NewRecorder()
	if _, err := m.Create(context.Background(), rec, id, &ProviderToken{AccessToken: "at", SID: sid}, WithBackchannelLogout()); err != nil {
		t.Fatal(err)
	}
	return rec.Result().Cookies()[0]
}

func TestBackchannelLogoutEndsWhatItNames(t *testing.T) {
	ctx := context.Background()
	bob := identity.Identity{Provider: "corp", Subject: "2", User: "bob"}
	tests := []struct {
		name     string
		sid, sub string
		want     map[string]bool // which sessions are still alive
	}{
		{"sid", "s1", "", map[string]bool{"aliceS2": true, "aliceNoSID": true, "aliceUnbound": true, "bob": true}},
		// With the subject too, sessions begun without a provider session
		// id (the token cannot name them otherwise) end as well.
		{"sid and sub", "s1", "1", map[string]bool{"aliceS2": true, "aliceUnbound": true, "bob": true}},
		// A subject alone ends everything of the user, as sign out
		// everywhere does, whatever provider session it came from.
		{"sub", "", "1", map[string]bool{"bob": true}},
		{"an unknown sid", "s9", "", map[string]bool{"aliceS1": true, "aliceS1b": true, "aliceS2": true, "aliceNoSID": true, "aliceUnbound": true, "bob": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := sessionstore.NewMemory(nil)
			m := NewManager(testConfig(), store, nil)
			rec := httptest.NewRecorder()
			if _, err := m.Create(ctx, rec, alice, &ProviderToken{AccessToken: "at", SID: "s1"}); err != nil {
				t.Fatal(err)
			}
			c := map[string]*http.Cookie{
				"aliceS1": signInBound(t, m, alice, "s1"), "aliceS1b": signInBound(t, m, alice, "s1"),
				"aliceS2": signInBound(t, m, alice, "s2"), "aliceNoSID": signInBound(t, m, alice, ""),
				"aliceUnbound": rec.Result().Cookies()[0], "bob": signInBound(t, m, bob, "s1b"),
			}
			if err := m.EndProviderSessions(ctx, "corp", tt.sid, tt.sub); err != nil {
				t.Fatal(err)
			}
			for name, ck := range c {
				_, err := m.Load(ctx, requestWith(ck))
				if err != nil && !errors.Is(err, ErrNoSession) {
					t.Fatal(err)
				}
				if alive := err == nil; alive != tt.want[name] {
					t.Errorf("%s: alive %v, want %v", name, alive, tt.want[name])
				}
			}
		})
	}
}

// Logout records fail closed: a record lost from the store ends its
// sessions, and a cookie cannot shed its logout hint to escape one.
func TestBackchannelBindingFailsClosed(t *testing.T) {
	ctx := context.Background()
	store := sessionstore.NewMemory(nil)
	m := NewManager(testConfig(), store, nil)
	ck := signInBound(t, m, alice, "s1")
	if _, err := m.Load(ctx, requestWith(ck)); err != nil {
		t.Fatal(err)
	}
	// The same ticket without its hint (the short form) opens nothing.
	raw, _ := base64.RawURLEncoding.DecodeString(ck.Value)
	short := &http.Cookie{Name: ck.Name, Value: base64.RawURLEncoding.EncodeToString(raw[:ticketLen])}
	if _, err := m.Load(ctx, requestWith(short)); !errors.Is(err, ErrNoSession) {
		t.Fatalf("ticket without its logout hint: %v, want ErrNoSession", err)
	}
	// Nor with another session's hint.
	other := signInBound(t, m, alice, "s2")
	otherRaw, _ := base64.RawURLEncoding.DecodeString(other.Value)
	swapped := &http.Cookie{Name: ck.Name, Value: base64.RawURLEncoding.EncodeToString(append(raw[:ticketLen:ticketLen], otherRaw[ticketLen:]...))}
	if _, err := m.Load(ctx, requestWith(swapped)); !errors.Is(err, ErrNoSession) {
		t.Fatalf("ticket with another session's logout hint: %v, want ErrNoSession", err)
	}
	// The record is evicted: the session is over.
	for _, k := range store.Keys() {
		if strings.HasPrefix(k, "bl2:") {
			_ = store.Delete(ctx, k)
		}
	}
	if _, err := m.Load(ctx, requestWith(ck)); !errors.Is(err, ErrNoSession) {
		t.Fatalf("session whose logout record is gone: %v, want ErrNoSession", err)
	}
}

// With account linking, a logout by subject ends the linked account's
// sessions, whichever provider they came from.
func TestBackchannelLogoutBySubjectEndsTheLinkedAccount(t *testing.T) {
	ctx := context.Background()
	store := sessionstore.NewMemory(nil)
	m := NewManager(testConfig(), store, nil)
	corp := identity.LinkByEmail(alice)
	gh := identity.LinkByEmail(identity.Identity{Provider: "github", Subject: "77", Login: "alice-gh", Email: "alice@example.com", EmailVerified: true})
	corpCookie := signInBound(t, m, corp, "s1")
	rec := httptest.NewRecorder()
	if _, err := m.Create(ctx, rec, gh, nil); err != nil {
		t.Fatal(err)
	}
	if err := m.EndProviderSessions(ctx, "corp", "", "1"); err != nil {
		t.Fatal(err)
	}
	for name, ck := range map[string]*http.Cookie{"corp": corpCookie, "github": rec.Result().Cookies()[0]} {
		if _, err := m.Load(ctx, requestWith(ck)); !errors.Is(err, ErrNoSession) {
			t.Errorf("%s session of the linked account: %v, want ErrNoSession", name, err)
		}
	}
}
