package sessionstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// testStoreContract is what every Store must do; each implementation's
// tests run it. newStore returns an empty store. advance moves the store's
// clock; it is nil for a store on real time (memcached), which then waits,
// polling with a deadline, for the cases that need time to pass, and skips
// the cases that need a clock it can stop (such as "still there just
// before the TTL").
func testStoreContract(t *testing.T, newStore func(t *testing.T) Store, advance func(time.Duration)) {
	ctx := context.Background()

	// waitGone waits until key holds nothing: at once with a fake clock
	// moved past ttl, else polling the real clock.
	waitGone := func(t *testing.T, s Store, key string, ttl time.Duration) {
		t.Helper()
		if advance != nil {
			advance(ttl + time.Second)
			if _, err := s.Get(ctx, key); !errors.Is(err, ErrNotFound) {
				t.Fatalf("%q still there after its TTL: %v", key, err)
			}
			return
		}
		// memcached counts whole seconds: a one-second record is gone
		// within about two.
		deadline := time.Now().Add(ttl + 3*time.Second)
		for {
			_, err := s.Get(ctx, key)
			if errors.Is(err, ErrNotFound) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%q still there %s after its TTL: %v", key, ttl+3*time.Second, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// key makes keys unique per case: a memcached outlives each case.
	key := func(t *testing.T, name string) string { return t.Name() + "/" + name }

	// Cases that wait on a real clock run side by side; with a fake
	// clock, shared by all cases, they must not.
	parallelOnRealTime := func(t *testing.T) {
		if advance == nil {
			t.Parallel()
		}
	}

	t.Run("get missing is ErrNotFound", func(t *testing.T) {
		s := newStore(t)
		if v, err := s.Get(ctx, key(t, "nope")); !errors.Is(err, ErrNotFound) || v != nil {
			t.Fatalf("Get = %q, %v; want nil, ErrNotFound", v, err)
		}
	})

	t.Run("set then get", func(t *testing.T) {
		s := newStore(t)
		value := []byte("\x00binary\xffrecord")
		if err := s.Set(ctx, key(t, "k"), value, time.Minute); err != nil {
			t.Fatal(err)
		}
		if v, err := s.Get(ctx, key(t, "k")); err != nil || !bytes.Equal(v, value) {
			t.Fatalf("Get = %q, %v", v, err)
		}
	})

	t.Run("set replaces", func(t *testing.T) {
		s := newStore(t)
		for _, v := range []string{"v1", "v2"} {
			if err := s.Set(ctx, key(t, "k"), []byte(v), time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		if v, err := s.Get(ctx, key(t, "k")); err != nil || string(v) != "v2" {
			t.Fatalf("Get = %q, %v; want v2", v, err)
		}
	})

	t.Run("keys are independent", func(t *testing.T) {
		s := newStore(t)
		for i := 0; i < 10; i++ {
			if err := s.Set(ctx, key(t, fmt.Sprintf("s1:key-%d", i)), []byte(fmt.Sprint(i)), time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Delete(ctx, key(t, "s1:key-3")); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			v, err := s.Get(ctx, key(t, fmt.Sprintf("s1:key-%d", i)))
			if i == 3 {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("deleted key: %q, %v", v, err)
				}
				continue
			}
			if err != nil || string(v) != fmt.Sprint(i) {
				t.Fatalf("key %d = %q, %v", i, v, err)
			}
		}
	})

	t.Run("get multi returns the keys that hold records", func(t *testing.T) {
		s := newStore(t)
		var keys []string
		for i := 0; i < 12; i++ { // spread over every server of a cluster
			keys = append(keys, key(t, fmt.Sprintf("s1:multi-%d", i)))
			if i%3 != 0 {
				if err := s.Set(ctx, keys[i], []byte(fmt.Sprint(i)), time.Minute); err != nil {
					t.Fatal(err)
				}
			}
		}
		keys = append(keys, key(t, "with space")) // a key memcached would refuse as is
		if err := s.Set(ctx, keys[12], []byte("spaced"), time.Minute); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetMulti(ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range keys[:12] {
			v, ok := got[k]
			if i%3 == 0 {
				if ok {
					t.Errorf("key %d holds nothing, got %q", i, v)
				}
				continue
			}
			if !ok || string(v) != fmt.Sprint(i) {
				t.Errorf("key %d = %q, %v", i, v, ok)
			}
		}
		if string(got[keys[12]]) != "spaced" {
			t.Errorf("hashed key = %q", got[keys[12]])
		}
		if got, err := s.GetMulti(ctx, nil); err != nil || len(got) != 0 {
			t.Errorf("no keys: %v, %v", got, err)
		}
	})

	t.Run("get few returns the records of its keys in order", func(t *testing.T) {
		s := newStore(t)
		a, b, empty := key(t, "few-a"), key(t, "few-b"), key(t, "few-empty")
		if err := s.Set(ctx, a, []byte("A"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.Set(ctx, empty, nil, time.Minute); err != nil {
			t.Fatal(err)
		}
		got, err := GetFew(ctx, s, [MaxFew]string{b, a, ""})
		if err != nil {
			t.Fatal(err)
		}
		if got[0] != nil || string(got[1]) != "A" || got[2] != nil {
			t.Errorf("GetFew = %q", got)
		}
		// A record found is never nil, even when empty.
		if got, err := GetFew(ctx, s, [MaxFew]string{empty}); err != nil || got[0] == nil || len(got[0]) != 0 {
			t.Errorf("empty record = %q, %v", got[0], err)
		}
		if advance != nil {
			advance(2 * time.Minute)
			if got, err := GetFew(ctx, s, [MaxFew]string{a}); err != nil || got[0] != nil {
				t.Errorf("expired record = %q, %v", got[0], err)
			}
		}
	})

	t.Run("add on an existing key is ErrExists and keeps the value", func(t *testing.T) {
		s := newStore(t)
		if err := s.Add(ctx, key(t, "once"), []byte("first"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.Add(ctx, key(t, "once"), []byte("second"), time.Minute); !errors.Is(err, ErrExists) {
			t.Fatalf("second Add: %v, want ErrExists", err)
		}
		if err := s.Set(ctx, key(t, "set-first"), []byte("x"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.Add(ctx, key(t, "set-first"), []byte("y"), time.Minute); !errors.Is(err, ErrExists) {
			t.Fatalf("Add over Set: %v, want ErrExists", err)
		}
		if v, _ := s.Get(ctx, key(t, "once")); string(v) != "first" {
			t.Fatalf("Add replaced the value: %q", v)
		}
	})

	t.Run("add is atomic", func(t *testing.T) {
		s := newStore(t)
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.Add(ctx, key(t, "once"), []byte("x"), time.Minute)
				switch {
				case err == nil:
					mu.Lock()
					wins++
					mu.Unlock()
				case !errors.Is(err, ErrExists):
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d concurrent Adds succeeded, want exactly 1", wins)
		}
	})

	t.Run("add after delete works", func(t *testing.T) {
		s := newStore(t)
		_ = s.Add(ctx, key(t, "code"), []byte("x"), time.Minute)
		if err := s.Delete(ctx, key(t, "code")); err != nil {
			t.Fatal(err)
		}
		if err := s.Add(ctx, key(t, "code"), []byte("y"), time.Minute); err != nil {
			t.Fatalf("Add after Delete: %v", err)
		}
	})

	t.Run("replace", func(t *testing.T) {
		tests := []struct {
			name    string
			prepare func(s Store, k string)
			wantErr error
			want    string // what Get returns afterwards; "" for nothing
		}{
			{"missing key: not found, nothing stored", func(Store, string) {}, ErrNotFound, ""},
			{"existing key: replaced", func(s Store, k string) { _ = s.Set(ctx, k, []byte("old"), time.Minute) }, nil, "new"},
			{"added key: replaced", func(s Store, k string) { _ = s.Add(ctx, k, []byte("old"), time.Minute) }, nil, "new"},
			{"deleted key (signed out): not re-created", func(s Store, k string) {
				_ = s.Set(ctx, k, []byte("old"), time.Minute)
				_ = s.Delete(ctx, k)
			}, ErrNotFound, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := newStore(t)
				k := key(t, "k")
				tt.prepare(s, k)
				err := s.Replace(ctx, k, []byte("new"), time.Minute)
				if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
					t.Fatalf("Replace = %v, want %v", err, tt.wantErr)
				}
				v, err := s.Get(ctx, k)
				if tt.want == "" {
					if !errors.Is(err, ErrNotFound) {
						t.Fatalf("after Replace: %q, %v; want nothing stored", v, err)
					}
					return
				}
				if err != nil || string(v) != tt.want {
					t.Fatalf("after Replace: %q, %v; want %q", v, err, tt.want)
				}
			})
		}
	})

	t.Run("touch missing is ErrNotFound and stores nothing", func(t *testing.T) {
		s := newStore(t)
		if err := s.Touch(ctx, key(t, "nope"), time.Minute); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Touch = %v, want ErrNotFound", err)
		}
		if _, err := s.Get(ctx, key(t, "nope")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Touch created a record: %v", err)
		}
	})

	t.Run("touch keeps the value", func(t *testing.T) {
		s := newStore(t)
		_ = s.Set(ctx, key(t, "k"), []byte("v1"), time.Minute)
		if err := s.Touch(ctx, key(t, "k"), time.Hour); err != nil {
			t.Fatal(err)
		}
		if v, err := s.Get(ctx, key(t, "k")); err != nil || string(v) != "v1" {
			t.Fatalf("after Touch: %q, %v", v, err)
		}
	})

	t.Run("touch extends the TTL", func(t *testing.T) {
		parallelOnRealTime(t)
		s := newStore(t)
		_ = s.Set(ctx, key(t, "touched"), []byte("x"), time.Second)
		_ = s.Set(ctx, key(t, "untouched"), []byte("x"), time.Second)
		if err := s.Touch(ctx, key(t, "touched"), time.Hour); err != nil {
			t.Fatal(err)
		}
		// Once its twin (same TTL, set later) is gone, the first TTL has
		// passed for the touched record too.
		waitGone(t, s, key(t, "untouched"), time.Second)
		if v, err := s.Get(ctx, key(t, "touched")); err != nil || string(v) != "x" {
			t.Fatalf("touched record expired on its first TTL: %q, %v", v, err)
		}
	})

	t.Run("touch after expiry is ErrNotFound", func(t *testing.T) {
		parallelOnRealTime(t)
		s := newStore(t)
		_ = s.Set(ctx, key(t, "k"), []byte("x"), time.Second)
		waitGone(t, s, key(t, "k"), time.Second)
		if err := s.Touch(ctx, key(t, "k"), time.Hour); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Touch of an expired record = %v, want ErrNotFound", err)
		}
	})

	t.Run("delete", func(t *testing.T) {
		s := newStore(t)
		_ = s.Set(ctx, key(t, "k"), []byte("v"), time.Minute)
		if err := s.Delete(ctx, key(t, "k")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, key(t, "k")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after Delete: %v", err)
		}
	})

	t.Run("delete missing is not an error", func(t *testing.T) {
		s := newStore(t)
		if err := s.Delete(ctx, key(t, "never-set")); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("values are copied, not aliased", func(t *testing.T) {
		s := newStore(t)
		buf := []byte("abc")
		_ = s.Set(ctx, key(t, "k"), buf, time.Minute)
		buf[0] = 'X' // the caller reuses its buffer
		v, _ := s.Get(ctx, key(t, "k"))
		if string(v) != "abc" {
			t.Fatalf("Get after the caller changed its buffer = %q", v)
		}
		v[1] = 'Y' // the caller changes what it read
		if again, _ := s.Get(ctx, key(t, "k")); string(again) != "abc" {
			t.Fatalf("stored value aliased: %q", again)
		}
	})

	t.Run("set expires after its TTL", func(t *testing.T) {
		parallelOnRealTime(t)
		s := newStore(t)
		_ = s.Set(ctx, key(t, "short"), []byte("x"), time.Second)
		_ = s.Set(ctx, key(t, "long"), []byte("x"), time.Hour)
		waitGone(t, s, key(t, "short"), time.Second)
		if _, err := s.Get(ctx, key(t, "long")); err != nil {
			t.Fatalf("an unexpired record went with the expired one: %v", err)
		}
	})

	t.Run("add after expiry works", func(t *testing.T) {
		parallelOnRealTime(t)
		s := newStore(t)
		if err := s.Add(ctx, key(t, "code"), []byte("x"), time.Second); err != nil {
			t.Fatal(err)
		}
		waitGone(t, s, key(t, "code"), time.Second)
		if err := s.Add(ctx, key(t, "code"), []byte("y"), time.Minute); err != nil {
			t.Fatalf("Add after expiry: %v", err)
		}
		if v, _ := s.Get(ctx, key(t, "code")); string(v) != "y" {
			t.Fatalf("Get = %q, want the new value", v)
		}
	})

	t.Run("append to a missing key creates the record", func(t *testing.T) {
		s := newStore(t)
		if err := s.Append(ctx, key(t, "list"), []byte("a1"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if v, err := s.Get(ctx, key(t, "list")); err != nil || string(v) != "a1" {
			t.Fatalf("Get = %q, %v; want a1", v, err)
		}
	})

	t.Run("appends concatenate in order", func(t *testing.T) {
		s := newStore(t)
		buf := []byte("a1")
		for _, v := range []string{"a1", "b2", "c3"} {
			copy(buf, v) // the caller reuses its buffer
			if err := s.Append(ctx, key(t, "list"), buf, time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		v, err := s.Get(ctx, key(t, "list"))
		if err != nil || string(v) != "a1b2c3" {
			t.Fatalf("Get = %q, %v; want a1b2c3", v, err)
		}
		v[0] = 'X' // the caller changes what it read
		if err := s.Append(ctx, key(t, "list"), []byte("d4"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if v, _ := s.Get(ctx, key(t, "list")); string(v) != "a1b2c3d4" {
			t.Fatalf("Get = %q, want a1b2c3d4", v)
		}
	})

	t.Run("append to a set record", func(t *testing.T) {
		s := newStore(t)
		_ = s.Set(ctx, key(t, "list"), []byte("a1"), time.Minute)
		if err := s.Append(ctx, key(t, "list"), []byte("b2"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if v, err := s.Get(ctx, key(t, "list")); err != nil || string(v) != "a1b2" {
			t.Fatalf("Get = %q, %v; want a1b2", v, err)
		}
	})

	t.Run("concurrent appends each end up once", func(t *testing.T) {
		s := newStore(t)
		const goroutines, each, size = 8, 50, 6
		var wg sync.WaitGroup
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < each; j++ {
					entry := fmt.Sprintf("%d-%03d;", g, j) // size bytes
					if err := s.Append(ctx, key(t, "list"), []byte(entry), time.Minute); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		v, err := s.Get(ctx, key(t, "list"))
		if err != nil {
			t.Fatal(err)
		}
		if len(v) != goroutines*each*size {
			t.Fatalf("record of %d bytes, want %d entries of %d", len(v), goroutines*each, size)
		}
		seen := map[string]int{}
		last := map[byte]string{} // each goroutine's entries stay in its order
		for i := 0; i < len(v); i += size {
			entry := string(v[i : i+size])
			seen[entry]++
			if prev := last[entry[0]]; prev != "" && entry <= prev {
				t.Errorf("%q after %q", entry, prev)
			}
			last[entry[0]] = entry
		}
		for g := 0; g < goroutines; g++ {
			for j := 0; j < each; j++ {
				if n := seen[fmt.Sprintf("%d-%03d;", g, j)]; n != 1 {
					t.Errorf("entry %d-%03d present %d times, want once", g, j, n)
				}
			}
		}
	})

	t.Run("append extends the TTL", func(t *testing.T) {
		parallelOnRealTime(t)
		s := newStore(t)
		_ = s.Append(ctx, key(t, "appended"), []byte("a1"), time.Second)
		_ = s.Append(ctx, key(t, "once"), []byte("a1"), time.Second)
		if err := s.Append(ctx, key(t, "appended"), []byte("b2"), time.Hour); err != nil {
			t.Fatal(err)
		}
		// Once its twin (same TTL, appended later) is gone, the first TTL
		// has passed for the appended record too.
		waitGone(t, s, key(t, "once"), time.Second)
		if v, err := s.Get(ctx, key(t, "appended")); err != nil || string(v) != "a1b2" {
			t.Fatalf("appended record expired on its first TTL: %q, %v", v, err)
		}
	})

	t.Run("append after delete starts afresh", func(t *testing.T) {
		s := newStore(t)
		_ = s.Append(ctx, key(t, "list"), []byte("a1"), time.Minute)
		_ = s.Append(ctx, key(t, "list"), []byte("b2"), time.Minute)
		if err := s.Delete(ctx, key(t, "list")); err != nil {
			t.Fatal(err)
		}
		if err := s.Append(ctx, key(t, "list"), []byte("c3"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if v, err := s.Get(ctx, key(t, "list")); err != nil || string(v) != "c3" {
			t.Fatalf("Get = %q, %v; want c3 alone", v, err)
		}
	})

	t.Run("append after expiry starts afresh", func(t *testing.T) {
		parallelOnRealTime(t)
		s := newStore(t)
		_ = s.Append(ctx, key(t, "list"), []byte("a1"), time.Second)
		waitGone(t, s, key(t, "list"), time.Second)
		if err := s.Append(ctx, key(t, "list"), []byte("b2"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if v, err := s.Get(ctx, key(t, "list")); err != nil || string(v) != "b2" {
			t.Fatalf("Get = %q, %v; want b2 alone", v, err)
		}
	})

	// The next cases need a clock the test can stop (real-time stores
	// count whole seconds): they are registered only for such a store,
	// never skipped.
	if advance != nil {
		t.Run("alive until its TTL", func(t *testing.T) {
			s := newStore(t)
			_ = s.Set(ctx, key(t, "k"), []byte("x"), time.Minute)
			advance(time.Minute - time.Second)
			if _, err := s.Get(ctx, key(t, "k")); err != nil {
				t.Fatalf("gone before its TTL: %v", err)
			}
			if err := s.Add(ctx, key(t, "k"), []byte("y"), time.Minute); !errors.Is(err, ErrExists) {
				t.Fatalf("Add over a live record: %v", err)
			}
			advance(2 * time.Second)
			if _, err := s.Get(ctx, key(t, "k")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("still there after its TTL: %v", err)
			}
		})

		t.Run("set restarts the TTL", func(t *testing.T) {
			s := newStore(t)
			_ = s.Set(ctx, key(t, "k"), []byte("v1"), time.Minute)
			advance(50 * time.Second)
			_ = s.Set(ctx, key(t, "k"), []byte("v2"), time.Minute) // a session touched
			advance(50 * time.Second)
			if v, err := s.Get(ctx, key(t, "k")); err != nil || string(v) != "v2" {
				t.Fatalf("rewritten record expired on its first TTL: %q, %v", v, err)
			}
		})

		t.Run("append restarts the TTL", func(t *testing.T) {
			s := newStore(t)
			_ = s.Append(ctx, key(t, "list"), []byte("a1"), time.Minute)
			advance(50 * time.Second)
			_ = s.Append(ctx, key(t, "list"), []byte("b2"), time.Minute)
			advance(50 * time.Second)
			if v, err := s.Get(ctx, key(t, "list")); err != nil || string(v) != "a1b2" {
				t.Fatalf("appended record expired on its first TTL: %q, %v", v, err)
			}
			advance(11 * time.Second)
			if _, err := s.Get(ctx, key(t, "list")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("still there a TTL after the last append: %v", err)
			}
		})
	}

	t.Run("safe for concurrent use", func(t *testing.T) {
		s := newStore(t)
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k := key(t, fmt.Sprintf("k%d", i%3))
				for j := 0; j < 50; j++ {
					_ = s.Set(ctx, k, []byte("v"), time.Minute)
					if _, err := s.Get(ctx, k); err != nil && !errors.Is(err, ErrNotFound) {
						t.Error(err)
						return
					}
					_ = s.Add(ctx, k+"-add", []byte("v"), time.Minute)
					_ = s.Delete(ctx, k)
				}
			}()
		}
		wg.Wait()
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

// GetFew hands out the memory store's own bytes: nothing written later
// (Set, Append, Replace) may change a record a reader already holds.
func TestMemoryGetFewRecordsNeverChange(t *testing.T) {
	m := NewMemory(nil)
	ctx := context.Background()
	in := []byte("one")
	_ = m.Set(ctx, "k", in, time.Minute)
	in[0] = 'X' // the store kept its own copy
	got, _ := m.GetFew(ctx, [MaxFew]string{"k"})
	_ = m.Append(ctx, "k", []byte("-two"), time.Minute)
	_ = m.Append(ctx, "k", []byte("-three"), time.Minute)
	if string(got[0]) != "one" {
		t.Fatalf("record held by a reader became %q", got[0])
	}
	held, _ := m.GetFew(ctx, [MaxFew]string{"k"})
	_ = m.Replace(ctx, "k", []byte("other"), time.Minute)
	if string(held[0]) != "one-two-three" {
		t.Fatalf("record held by a reader became %q", held[0])
	}
}
