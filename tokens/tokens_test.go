package tokens

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

func hashOf(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

func fixture(t *testing.T) (*Store, *sessionstore.Memory, *clock) {
	t.Helper()
	clk := &clock{t: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)}
	scopes, statics, ps := Config{
		Scopes: map[string][]ScopeRuleConfig{
			"read":   {{Methods: []string{"get", "HEAD"}, Paths: []string{"^/"}}},
			"deploy": {{Methods: []string{"POST"}, Paths: []string{"^/deploy$"}}},
		},
		Static: []StaticConfig{
			{Name: "ci", SHA256: hashOf("static-ci-token"), Scopes: []string{"deploy"}},
			{Name: "old", SHA256: strings.ToUpper(hashOf("old-token")), Scopes: []string{"read"}, ExpiresAt: "2026-01-31T00:00:00Z"},
		},
	}.Compile()
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	store := sessionstore.NewMemory(clk.now)
	return NewStore(store, scopes, statics, clk.now), store, clk
}

var alice = identity.Identity{Provider: "corp", Subject: "1", User: "alice", Email: "alice@example.com"}

func TestIssueLookupRevoke(t *testing.T) {
	s, store, clk := fixture(t)
	ctx := context.Background()
	raw, err := s.Issue(ctx, Token{Identity: alice, Scopes: []string{"read"}, IssuedAt: clk.now(), ExpiresAt: clk.now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(raw, Prefix) || len(raw) != rawLen {
		t.Fatalf("token %q", raw)
	}
	tok, err := s.Lookup(ctx, raw)
	if err != nil || tok.Identity.Email != "alice@example.com" || tok.ID == "" || strings.Contains(tok.ID, raw[4:12]) {
		t.Fatalf("lookup: %+v %v", tok, err)
	}
	// The store holds neither the token nor the identity in the clear.
	key, _ := derive(raw)
	rec, _ := store.Get(ctx, key)
	if strings.Contains(string(rec), "alice") || strings.Contains(key, raw[4:]) {
		t.Fatal("token record readable in the store")
	}
	// A token differing in one character is unknown.
	last := "A"
	if strings.HasSuffix(raw, "A") {
		last = "B"
	}
	flipped := raw[:len(raw)-1] + last
	if _, err := s.Lookup(ctx, flipped); !errors.Is(err, ErrUnknown) {
		t.Fatalf("altered token: %v", err)
	}
	if err := s.Revoke(ctx, raw); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(ctx, raw); !errors.Is(err, ErrUnknown) {
		t.Fatalf("revoked token: %v", err)
	}
	if err := s.Revoke(ctx, "whatever"); err != nil {
		t.Fatalf("revoking an unknown token: %v", err)
	}
}

func TestExpiryAndSignOutEverywhere(t *testing.T) {
	s, store, clk := fixture(t)
	ctx := context.Background()
	raw, _ := s.Issue(ctx, Token{Identity: alice, Scopes: []string{"read"}, IssuedAt: clk.now(), ExpiresAt: clk.now().Add(time.Hour)})
	clk.add(time.Minute)
	mgr := session.NewManager(session.Config{Lifetime: time.Hour, IdleTimeout: time.Hour}, store, clk.now)
	if err := mgr.EndAll(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(ctx, raw); !errors.Is(err, ErrUnknown) {
		t.Fatalf("token survived sign-out everywhere: %v", err)
	}
	clk.add(time.Minute)
	later, _ := s.Issue(ctx, Token{Identity: alice, Scopes: []string{"read"}, IssuedAt: clk.now(), ExpiresAt: clk.now().Add(time.Hour)})
	if _, err := s.Lookup(ctx, later); err != nil {
		t.Fatalf("a token issued after the sign-out: %v", err)
	}
	clk.add(2 * time.Hour)
	if _, err := s.Lookup(ctx, later); !errors.Is(err, ErrUnknown) {
		t.Fatalf("expired token: %v", err)
	}
}

func TestStaticTokens(t *testing.T) {
	s, _, _ := fixture(t)
	ctx := context.Background()
	tok, err := s.Lookup(ctx, "static-ci-token")
	if err != nil || tok.Identity.User != "ci" || tok.Identity.Provider != "static" || !tok.Static {
		t.Fatalf("static: %+v %v", tok, err)
	}
	if !s.Scopes().Allows(tok.Scopes, "POST", "/deploy") || s.Scopes().Allows(tok.Scopes, "GET", "/deploy") {
		t.Fatal("static token scopes not enforced")
	}
	if _, err := s.Lookup(ctx, "old-token"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("expired static token: %v", err)
	}
}

func TestScopes(t *testing.T) {
	s, _, _ := fixture(t)
	sc := s.Scopes()
	for _, tt := range []struct {
		scopes       []string
		method, path string
		want         bool
	}{
		{[]string{"read"}, "GET", "/x", true},
		{[]string{"read"}, "HEAD", "/x", true},
		{[]string{"read"}, "POST", "/x", false},
		{[]string{"deploy"}, "POST", "/deploy", true},
		{[]string{"deploy"}, "POST", "/deploy/x", false},
		{[]string{"read", "deploy"}, "POST", "/deploy", true},
		{[]string{"nonexistent"}, "GET", "/", false},
		{nil, "GET", "/", false},
	} {
		if got := sc.Allows(tt.scopes, tt.method, tt.path); got != tt.want {
			t.Errorf("%v %s %s = %v, want %v", tt.scopes, tt.method, tt.path, got, tt.want)
		}
	}
	if strings.Join(sc.Names(), ",") != "deploy,read" {
		t.Errorf("names = %v", sc.Names())
	}
}

func TestCompileProblems(t *testing.T) {
	_, _, ps := Config{
		Scopes: map[string][]ScopeRuleConfig{
			"Bad Name": {{Paths: []string{"^/"}}},
			"x":        {{Methods: []string{"FETCH"}, Paths: []string{"("}}, {}},
		},
		Static: []StaticConfig{
			{SHA256: "nothex", Scopes: []string{"nope"}, ExpiresAt: "tomorrow"},
			{Name: "dup", SHA256: hashOf("a"), Scopes: []string{"x"}},
			{Name: "dup2", SHA256: hashOf("a"), Scopes: []string{"x"}},
		},
	}.Compile()
	want := []string{
		"scopes.Bad Name", "scopes.x[0].methods", "scopes.x[0].paths", "scopes.x[1].paths",
		"static[0].name", "static[0].sha256", "static[0].scopes", "static[0].expires_at", "static[2].sha256",
	}
	got := map[string]bool{}
	for _, p := range ps {
		got[p.Key] = true
	}
	for _, k := range want {
		if !got[k] {
			t.Errorf("no problem for %s; got %v", k, ps)
		}
	}
}
