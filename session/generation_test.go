package session

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/sessionstore"
)

// What sign out everywhere leaves behind must never be undone by the
// store: a revocation record that is lost (evicted, or its key moved to
// another memcached node) signs people out, never back in.
func TestSignOutEverywhereSurvivesALostRecord(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		after func(t *testing.T, m *Manager, store *sessionstore.Memory) // what happens to the store after EndAll
	}{
		{"nothing", func(*testing.T, *Manager, *sessionstore.Memory) {}},
		{"the user's record is evicted", func(t *testing.T, _ *Manager, store *sessionstore.Memory) {
			if err := store.Delete(ctx, generationKey(alice)); err != nil {
				t.Fatal(err)
			}
		}},
		{"the record is evicted and the user signs in again", func(t *testing.T, m *Manager, store *sessionstore.Memory) {
			_ = store.Delete(ctx, generationKey(alice))
			create(t, m)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			store := sessionstore.NewMemory(clk.now)
			m := NewManager(testConfig(), store, clk.now)
			old, _ := create(t, m)
			clk.add(time.Second)
			if err := m.EndAll(ctx, alice); err != nil {
				t.Fatal(err)
			}
			tt.after(t, m, store)
			clk.add(time.Second)
			if _, err := m.Load(ctx, requestWith(old)); !errors.Is(err, ErrNoSession) {
				t.Fatalf("session from before sign out everywhere: %v, want ErrNoSession", err)
			}
			fresh, _ := create(t, m)
			if _, err := m.Load(ctx, requestWith(fresh)); err != nil {
				t.Fatalf("a session begun afterwards: %v", err)
			}
		})
	}
}

// Every session needs its user's generation: when the record cannot be
// found the session is over (signed out, not an error); when the store
// cannot answer, the request fails closed with an error.
func TestSessionNeedsItsGeneration(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		mutate  func(t *testing.T, m *Manager, store *genStore, s *Session)
		wantErr func(error) bool
	}{
		{"evicted", func(t *testing.T, _ *Manager, store *genStore, _ *Session) {
			_ = store.Delete(ctx, generationKey(alice))
		}, isNoSession},
		{"replaced by another sign-in's (the key moved to a node without it)", func(t *testing.T, _ *Manager, store *genStore, _ *Session) {
			_ = store.Set(ctx, generationKey(alice), []byte("another"), time.Hour)
		}, isNoSession},
		{"session from before generations existed", func(t *testing.T, m *Manager, _ *genStore, s *Session) {
			s.Generation = ""
			if err := m.Save(ctx, s); err != nil {
				t.Fatal(err)
			}
		}, isNoSession},
		{"store cannot answer", func(t *testing.T, _ *Manager, store *genStore, _ *Session) {
			store.failGen = true
		}, isStoreError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &genStore{Store: sessionstore.NewMemory(nil)}
			m := NewManager(testConfig(), store, nil)
			c, s := create(t, m)
			if _, err := m.Load(ctx, requestWith(c)); err != nil {
				t.Fatal(err)
			}
			tt.mutate(t, m, store, s)
			if _, err := m.Load(ctx, requestWith(c)); !tt.wantErr(err) {
				t.Fatalf("Load = %v", err)
			}
			store.failGen = false
			if tt.wantErr(ErrNoSession) {
				// Over for good: the user signs in again.
				create(t, m)
				if _, err := m.Load(ctx, requestWith(c)); !errors.Is(err, ErrNoSession) {
					t.Fatalf("ended session back after a new sign-in: %v", err)
				}
			}
		})
	}
}

func isNoSession(err error) bool  { return errors.Is(err, ErrNoSession) }
func isStoreError(err error) bool { return err != nil && !errors.Is(err, ErrNoSession) }

// genStore fails reads of generation records on demand.
type genStore struct {
	sessionstore.Store
	failGen bool
}

func (g *genStore) Get(ctx context.Context, k string) ([]byte, error) {
	if g.failGen && strings.HasPrefix(k, "u2:") {
		return nil, errors.New("memcache: i/o timeout")
	}
	return g.Store.Get(ctx, k)
}

func (g *genStore) GetMulti(ctx context.Context, keys []string) (map[string][]byte, error) {
	return getEach(ctx, g.Get, keys)
}

// getEach is GetMulti over a test store's own Get, so that what it does to
// single reads (fail, race) applies to multi-gets too.
func getEach(ctx context.Context, get func(context.Context, string) ([]byte, error), keys []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, k := range keys {
		v, err := get(ctx, k)
		switch {
		case errors.Is(err, sessionstore.ErrNotFound):
		case err != nil:
			return nil, err
		default:
			out[k] = v
		}
	}
	return out, nil
}

// Sign-in keeps the generation alive with Touch, never by writing back a
// value it read: a sign out everywhere in between must win.
func TestSignInRacingSignOutEverywhere(t *testing.T) {
	ctx := context.Background()
	store := &raceStore{Store: sessionstore.NewMemory(nil)}
	m := NewManager(testConfig(), store, nil)
	old, _ := create(t, m)
	// While the next sign-in is between reading the generation and
	// extending it, sign out everywhere happens.
	store.onGenRead = func() {
		store.onGenRead = nil
		if err := m.EndAll(ctx, alice); err != nil {
			t.Error(err)
		}
	}
	create(t, m)
	if _, err := m.Load(ctx, requestWith(old)); !errors.Is(err, ErrNoSession) {
		t.Fatalf("a session from before sign out everywhere came back: %v", err)
	}
}

// raceStore runs a hook right after a generation record is read.
type raceStore struct {
	sessionstore.Store
	onGenRead func()
}

func (s *raceStore) GetMulti(ctx context.Context, keys []string) (map[string][]byte, error) {
	return getEach(ctx, s.Get, keys)
}

func (s *raceStore) Get(ctx context.Context, k string) ([]byte, error) {
	v, err := s.Store.Get(ctx, k)
	if strings.HasPrefix(k, "u2:") && s.onGenRead != nil {
		s.onGenRead()
	}
	return v, err
}

// A write to an existing session (the idle clock, a revalidation) never
// re-creates a session that was signed out in between.
func TestWritesDoNotRecreateASignedOutSession(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// run loads or saves the session; signOut is called in the
		// middle, after the session was read and before it is written.
		run func(t *testing.T, m *Manager, store *deleteAfterRead, c *http.Cookie, s *Session, clk *fakeClock)
	}{
		{"idle clock on a request", func(t *testing.T, m *Manager, store *deleteAfterRead, c *http.Cookie, _ *Session, clk *fakeClock) {
			clk.add(10 * time.Minute) // due for an idle-clock write
			store.arm()
			if _, err := m.Load(ctx, requestWith(c)); !errors.Is(err, ErrNoSession) {
				t.Fatalf("request that raced the sign-out: %v, want ErrNoSession", err)
			}
		}},
		{"save after revalidation", func(t *testing.T, m *Manager, store *deleteAfterRead, c *http.Cookie, _ *Session, clk *fakeClock) {
			s, err := m.Load(ctx, requestWith(c))
			if err != nil {
				t.Fatal(err)
			}
			store.signOut() // while the provider round trip runs
			s.ValidatedAt = clk.now()
			if err := m.Save(ctx, s); !errors.Is(err, ErrNoSession) {
				t.Fatalf("Save after sign-out: %v, want ErrNoSession", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			store := &deleteAfterRead{Store: sessionstore.NewMemory(clk.now)}
			m := NewManager(testConfig(), store, clk.now)
			c, s := create(t, m)
			store.signOut = func() {
				if err := m.Delete(ctx, nil, s); err != nil {
					t.Error(err)
				}
			}
			tt.run(t, m, store, c, s, clk)
			if _, err := m.Load(ctx, requestWith(c)); !errors.Is(err, ErrNoSession) {
				t.Fatalf("signed-out session loads again: %v", err)
			}
			tk, _ := parseTicket(c.Value)
			if _, err := store.Store.Get(ctx, tk.storeKey()); !errors.Is(err, sessionstore.ErrNotFound) {
				t.Fatalf("signed-out session's record is back in the store: %v", err)
			}
		})
	}
}

// deleteAfterRead signs the session out right after its record is read,
// once armed: a sign-out on another replica racing this request.
type deleteAfterRead struct {
	sessionstore.Store
	mu      sync.Mutex
	armed   bool
	signOut func()
}

func (d *deleteAfterRead) arm() { d.mu.Lock(); d.armed = true; d.mu.Unlock() }

func (d *deleteAfterRead) GetMulti(ctx context.Context, keys []string) (map[string][]byte, error) {
	return getEach(ctx, d.Get, keys)
}

func (d *deleteAfterRead) Get(ctx context.Context, k string) ([]byte, error) {
	v, err := d.Store.Get(ctx, k)
	d.mu.Lock()
	fire := d.armed && strings.HasPrefix(k, "s1:")
	if fire {
		d.armed = false
	}
	d.mu.Unlock()
	if fire {
		d.signOut()
	}
	return v, err
}
