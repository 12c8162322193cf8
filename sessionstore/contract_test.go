package sessionstore

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// testStoreContract is what every Store must do. advance moves the store's
// clock; it is nil for stores on real time, which then wait briefly.
func testStoreContract(t *testing.T, newStore func(t *testing.T) Store, advance func(time.Duration)) {
	ctx := context.Background()
	t.Run("missing is ErrNotFound", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("set get replace delete", func(t *testing.T) {
		s := newStore(t)
		if err := s.Set(ctx, "k", []byte("v1"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.Set(ctx, "k", []byte("v2"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if v, err := s.Get(ctx, "k"); err != nil || string(v) != "v2" {
			t.Fatalf("get = %q, %v", v, err)
		}
		if err := s.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after delete: %v", err)
		}
		if err := s.Delete(ctx, "k"); err != nil {
			t.Fatalf("deleting a missing key: %v", err)
		}
	})
	t.Run("add is create-only and atomic", func(t *testing.T) {
		s := newStore(t)
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.Add(ctx, "once", []byte("x"), time.Minute)
				if err == nil {
					mu.Lock()
					wins++
					mu.Unlock()
				} else if !errors.Is(err, ErrExists) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d Adds succeeded, want 1", wins)
		}
		if err := s.Add(ctx, "once", []byte("y"), time.Minute); !errors.Is(err, ErrExists) {
			t.Fatalf("second add: %v", err)
		}
		if v, _ := s.Get(ctx, "once"); string(v) != "x" {
			t.Fatalf("add replaced the value: %q", v)
		}
	})
	t.Run("values are copies", func(t *testing.T) {
		s := newStore(t)
		buf := []byte("abc")
		_ = s.Set(ctx, "k", buf, time.Minute)
		buf[0] = 'X'
		v, _ := s.Get(ctx, "k")
		v[1] = 'Y'
		if again, _ := s.Get(ctx, "k"); string(again) != "abc" {
			t.Fatalf("stored value aliased: %q", again)
		}
	})
	t.Run("expiry", func(t *testing.T) {
		s := newStore(t)
		_ = s.Set(ctx, "short", []byte("x"), time.Second)
		_ = s.Add(ctx, "short-add", []byte("x"), time.Second)
		if advance != nil {
			advance(2 * time.Second)
			if _, err := s.Get(ctx, "short"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("expired record still there: %v", err)
			}
		} else {
			// Real clock: memcached counts whole seconds, so poll until the
			// one-second record is gone (it must be within about 2 s).
			deadline := time.Now().Add(4 * time.Second)
			for {
				_, err := s.Get(ctx, "short")
				if errors.Is(err, ErrNotFound) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("one-second record still there after 4 s: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			for time.Now().Before(deadline) {
				if _, err := s.Get(ctx, "short-add"); errors.Is(err, ErrNotFound) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		if err := s.Add(ctx, "short-add", []byte("y"), time.Minute); err != nil {
			t.Fatalf("add after expiry: %v", err)
		}
	})
	t.Run("ping", func(t *testing.T) {
		if err := newStore(t).Ping(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func TestMemoryContract(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	testStoreContract(t, func(*testing.T) Store { return NewMemory(clock) }, advance)
}

func TestMemorySweepsExpiredRecords(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := NewMemory(func() time.Time { return now })
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		_ = m.Set(ctx, k, []byte("x"), time.Second)
	}
	now = now.Add(2 * time.Minute)
	_ = m.Set(ctx, "d", []byte("x"), time.Hour)
	if n := m.Len(); n != 1 {
		t.Fatalf("memory holds %d records after a sweep, want 1", n)
	}
}
