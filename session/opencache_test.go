package session

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// roundTrips counts the store calls a request makes.
type roundTrips struct {
	sessionstore.Store
	gets, multis atomic.Int32
}

func (r *roundTrips) Get(ctx context.Context, k string) ([]byte, error) {
	r.gets.Add(1)
	return r.Store.Get(ctx, k)
}

func (r *roundTrips) GetMulti(ctx context.Context, keys []string) (map[string][]byte, error) {
	r.multis.Add(1)
	return r.Store.GetMulti(ctx, keys)
}

// An authenticated request costs one store round trip: the session and
// its user's generation are read together.
func TestLoadIsOneRoundTrip(t *testing.T) {
	store := &roundTrips{Store: sessionstore.NewMemory(nil)}
	m := NewManager(testConfig(), store, nil)
	c, _ := create(t, m)
	store.gets.Store(0)
	for range 3 {
		if _, err := m.Load(context.Background(), requestWith(c)); err != nil {
			t.Fatal(err)
		}
	}
	if g, mg := store.gets.Load(), store.multis.Load(); g != 0 || mg != 3 {
		t.Fatalf("3 requests made %d gets and %d multi-gets, want 0 and 3", g, mg)
	}
}

// The decoded-session cache serves only the holder of the exact ticket,
// and only while the stored record is the one it decoded.
func TestOpenCacheNeverServesWhatTheStoreDoesNot(t *testing.T) {
	ctx := context.Background()
	store := sessionstore.NewMemory(nil)
	m := NewManager(testConfig(), store, nil)
	c, s := create(t, m)
	if _, err := m.Load(ctx, requestWith(c)); err != nil { // now cached
		t.Fatal(err)
	}

	// The same id with another key: a forged cookie never hits the cache.
	forged := s.ticket
	forged.key[0] ^= 1
	if _, err := m.Load(ctx, requestWith(&http.Cookie{Name: "_gatehouse", Value: forged.String()})); !errors.Is(err, ErrNoSession) {
		t.Fatalf("forged key: %v, want ErrNoSession", err)
	}
	// The right id and key with another user's generation hint.
	other := s.ticket
	other.user = userHash(identity.Identity{Provider: "corp", Subject: "2"})
	if _, err := m.Load(ctx, requestWith(&http.Cookie{Name: "_gatehouse", Value: other.String()})); !errors.Is(err, ErrNoSession) {
		t.Fatalf("generation hint of another user: %v, want ErrNoSession", err)
	}

	// Rewritten by another replica (revalidated with new groups): the new
	// record is decoded, never the cached one.
	other2 := NewManager(testConfig(), store, nil)
	s2, err := other2.Load(ctx, requestWith(c))
	if err != nil {
		t.Fatal(err)
	}
	s2.Identity.Groups = []string{"ops"}
	if err := other2.Save(ctx, s2); err != nil {
		t.Fatal(err)
	}
	got, err := m.Load(ctx, requestWith(c))
	if err != nil || len(got.Identity.Groups) != 1 || got.Identity.Groups[0] != "ops" {
		t.Fatalf("after a write elsewhere: %v, %v; want the new groups", got, err)
	}

	// Signed out on another replica: gone here too.
	if err := other2.Delete(ctx, nil, s2); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Load(ctx, requestWith(c)); !errors.Is(err, ErrNoSession) {
		t.Fatalf("after sign-out elsewhere: %v, want ErrNoSession", err)
	}
}

// failingDeletes is a store whose deletes fail (memcached unreachable).
type failingDeletes struct{ sessionstore.Store }

func (failingDeletes) Delete(context.Context, string) error {
	return errors.New("memcache: i/o timeout")
}

// A sign-out the store could not carry out keeps the cookie, so that the
// person can try again; it is cleared once the record is gone.
func TestDeleteClearsTheCookieOnlyWhenTheRecordIsGone(t *testing.T) {
	ctx := context.Background()
	mem := sessionstore.NewMemory(nil)
	m := NewManager(testConfig(), failingDeletes{mem}, nil)
	c, _ := create(t, m)
	s, err := m.Load(ctx, requestWith(c))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	if err := m.Delete(ctx, rec, s); err == nil {
		t.Fatal("Delete with a failing store: nil error")
	}
	if got := rec.Result().Cookies(); len(got) != 0 {
		t.Fatalf("cookie cleared although the session lives on: %v", got)
	}
	m2 := NewManager(testConfig(), mem, nil)
	rec = httptest.NewRecorder()
	if err := m2.Delete(ctx, rec, s); err != nil {
		t.Fatal(err)
	}
	if got := rec.Result().Cookies(); len(got) != 1 || got[0].MaxAge >= 0 {
		t.Fatalf("cookie not cleared after sign-out: %v", got)
	}
}

// A session due for revalidation is not written by the idle clock: the
// revalidation writes it (with the clock), and two writers of one record
// would let the older provider token win.
func TestIdleClockLeavesADueSessionToRevalidation(t *testing.T) {
	clk := newClock()
	store := &countingStore{Store: sessionstore.NewMemory(clk.now)}
	cfg := testConfig()
	cfg.RevalidateInterval = 20 * time.Minute
	m := NewManager(cfg, store, clk.now)
	c, _ := create(t, m)
	clk.add(10 * time.Minute) // idle clock due, revalidation not
	before := store.sets
	if _, err := m.Load(context.Background(), requestWith(c)); err != nil {
		t.Fatal(err)
	}
	if store.sets != before+1 {
		t.Fatalf("idle clock not written when due: %d writes", store.sets-before)
	}
	clk.add(15 * time.Minute) // both due
	before = store.sets
	if _, err := m.Load(context.Background(), requestWith(c)); err != nil {
		t.Fatal(err)
	}
	if store.sets != before {
		t.Fatalf("idle clock written although revalidation is due: %d writes", store.sets-before)
	}
}
