package tokens

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// Tokens belong to their user's generation: sign out everywhere ends them,
// and a lost generation record ends them too, never brings them back.
// Static tokens have no generation and are not affected.
func TestTokensNeedTheirGeneration(t *testing.T) {
	ctx := context.Background()
	genKeyOf := func(store *sessionstore.Memory) string {
		// The one u2: record is alice's generation.
		for _, k := range store.Keys() {
			if strings.HasPrefix(k, "u2:") {
				return k
			}
		}
		t.Fatal("no generation record")
		return ""
	}
	tests := []struct {
		name   string
		mutate func(t *testing.T, s *Store, store *sessionstore.Memory, mgr *session.Manager)
		want   error
	}{
		{"untouched", func(*testing.T, *Store, *sessionstore.Memory, *session.Manager) {}, nil},
		{"sign out everywhere", func(t *testing.T, _ *Store, _ *sessionstore.Memory, mgr *session.Manager) {
			if err := mgr.EndAll(ctx, alice); err != nil {
				t.Fatal(err)
			}
		}, ErrUnknown},
		{"sign out everywhere, then its record is evicted", func(t *testing.T, _ *Store, store *sessionstore.Memory, mgr *session.Manager) {
			k := genKeyOf(store)
			if err := mgr.EndAll(ctx, alice); err != nil {
				t.Fatal(err)
			}
			_ = store.Delete(ctx, k)
		}, ErrUnknown},
		{"sign out everywhere, evicted, and a new token issued", func(t *testing.T, s *Store, store *sessionstore.Memory, mgr *session.Manager) {
			k := genKeyOf(store)
			_ = mgr.EndAll(ctx, alice)
			_ = store.Delete(ctx, k)
			if _, err := s.Issue(ctx, Token{Identity: alice, Scopes: []string{"read"}, ExpiresAt: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}); err != nil {
				t.Fatal(err)
			}
		}, ErrUnknown},
		{"generation evicted", func(t *testing.T, _ *Store, store *sessionstore.Memory, _ *session.Manager) {
			_ = store.Delete(ctx, genKeyOf(store))
		}, ErrUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, store, clk := fixture(t)
			mgr := session.NewManager(session.Config{Lifetime: time.Hour, IdleTimeout: time.Hour}, store, clk.now)
			raw, err := s.Issue(ctx, Token{Identity: alice, Scopes: []string{"read"}, IssuedAt: clk.now(), ExpiresAt: clk.now().Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			clk.add(time.Minute)
			tt.mutate(t, s, store, mgr)
			clk.add(time.Minute)
			_, err = s.Lookup(ctx, raw)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Lookup = %v, want %v", err, tt.want)
			}
			if tok, err := s.Lookup(ctx, "static-ci-token"); err != nil || !tok.Static {
				t.Fatalf("static token: %v", err)
			}
		})
	}
}

// A store that cannot answer for the generation fails closed with an
// error (503), not as an unknown token (401) and never as a valid one.
func TestTokenGenerationStoreErrorFailsClosed(t *testing.T) {
	ctx := context.Background()
	s, store, clk := fixture(t)
	raw, err := s.Issue(ctx, Token{Identity: alice, Scopes: []string{"read"}, IssuedAt: clk.now(), ExpiresAt: clk.now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	failing := NewStore(&failGenStore{Store: store}, s.scopes, s.statics, clk.now)
	if tok, err := failing.Lookup(ctx, raw); err == nil || errors.Is(err, ErrUnknown) {
		t.Fatalf("Lookup with the generation unreadable = %+v, %v; want a store error", tok, err)
	}
	if _, err := failing.Lookup(ctx, "static-ci-token"); err != nil {
		t.Fatalf("static token needs no store: %v", err)
	}
}

type failGenStore struct{ sessionstore.Store }

func (f *failGenStore) Get(ctx context.Context, k string) ([]byte, error) {
	if strings.HasPrefix(k, "u2:") {
		return nil, errors.New("memcache: i/o timeout")
	}
	return f.Store.Get(ctx, k)
}

// A token issued for an earlier grant (a device approval) is refused when
// sign out everywhere came in between.
func TestIssueUnderAnEndedGeneration(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		mutate func(store *sessionstore.Memory, mgr *session.Manager)
		want   error
	}{
		{"still current", func(*sessionstore.Memory, *session.Manager) {}, nil},
		{"sign out everywhere since", func(_ *sessionstore.Memory, mgr *session.Manager) { _ = mgr.EndAll(ctx, alice) }, ErrEnded},
		{"generation evicted since", func(store *sessionstore.Memory, _ *session.Manager) {
			for _, k := range store.Keys() {
				if strings.HasPrefix(k, "u2:") {
					_ = store.Delete(ctx, k)
				}
			}
		}, ErrEnded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, store, clk := fixture(t)
			mgr := session.NewManager(session.Config{Lifetime: time.Hour, IdleTimeout: time.Hour}, store, clk.now)
			gen, err := session.EnsureGeneration(ctx, store, alice) // the approving session's
			if err != nil {
				t.Fatal(err)
			}
			tt.mutate(store, mgr)
			raw, err := s.Issue(ctx, Token{Identity: alice, Scopes: []string{"read"}, IssuedAt: clk.now(), ExpiresAt: clk.now().Add(time.Hour), Generation: gen})
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Issue = %v, want %v", err, tt.want)
			}
			if tt.want == nil {
				if _, err := s.Lookup(ctx, raw); err != nil {
					t.Fatalf("Lookup: %v", err)
				}
			}
		})
	}
}
