package sessionstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// memcached is a real memcached process started for a test.
type memcached struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
}

func (m *memcached) addr() string { return "127.0.0.1:" + strconv.Itoa(m.port) }

// startMemcached runs memcached on a free port until the test ends.
func startMemcached(t *testing.T) *memcached {
	t.Helper()
	if _, err := exec.LookPath("memcached"); err != nil {
		t.Fatal("memcached not found: run make test, which installs it")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	m := &memcached{t: t, port: port}
	m.start()
	t.Cleanup(m.stop)
	return m
}

func (m *memcached) start() {
	m.t.Helper()
	m.cmd = exec.Command("memcached", "-l", "127.0.0.1", "-p", strconv.Itoa(m.port), "-U", "0", "-m", "64", "-u", "root")
	if err := m.cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !alive(m.addr()) {
		if time.Now().After(deadline) {
			m.t.Fatalf("memcached on %s did not come up", m.addr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (m *memcached) stop() {
	if m.cmd != nil && m.cmd.Process != nil {
		_ = m.cmd.Process.Kill()
		_ = m.cmd.Wait()
		m.cmd = nil
	}
}

// pause freezes the process (SIGSTOP): it keeps its records and its port
// but answers nothing, like a node cut off by the network.
func (m *memcached) pause() {
	m.t.Helper()
	if err := m.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		m.t.Fatal(err)
	}
	// The signal is delivered asynchronously: wait until every thread is
	// stopped, or a request sent now may still be answered.
	waitUntil(m.t, 10*time.Second, "memcached to stop", func() bool { return m.threadsIn('T') })
}

// threadsIn reports whether every thread of the process is in state
// (a letter of /proc/PID/task/TID/stat: T stopped, S sleeping, R running).
func (m *memcached) threadsIn(state byte) bool {
	dir := fmt.Sprintf("/proc/%d/task", m.cmd.Process.Pid)
	tasks, err := os.ReadDir(dir)
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(dir + "/" + task.Name() + "/stat")
		if err != nil {
			return false
		}
		// pid (comm) state ...: comm may hold spaces; the state follows
		// the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) || b[i+2] != state {
			return false
		}
	}
	return true
}

// resume undoes pause (SIGCONT).
func (m *memcached) resume() {
	m.t.Helper()
	if err := m.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		m.t.Fatal(err)
	}
	waitUntil(m.t, 10*time.Second, "memcached to resume", func() bool { return !m.threadsIn('T') })
}

func newMemcacheStore(t *testing.T, servers ...string) *Memcache {
	t.Helper()
	return newMemcacheStoreProbing(t, probeEvery, servers...)
}

// newMemcacheStoreProbing is newMemcacheStore with the probe's interval;
// 0 runs no probe, to see what requests alone do.
func newMemcacheStoreProbing(t *testing.T, probe time.Duration, servers ...string) *Memcache {
	t.Helper()
	s, err := newMemcache(MemcacheConfig{Servers: servers, Timeout: 250 * time.Millisecond, MaxIdleConns: 16}, probe)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// keysOn returns n keys whose first choice among servers is server i.
func keysOn(s *Memcache, i, n int, prefix string) []string {
	var out []string
	for j := 0; len(out) < n; j++ {
		k := fmt.Sprintf("%s-%d", prefix, j)
		if s.selector.rank(k)[0] == i {
			out = append(out, k)
		}
	}
	return out
}

func TestMemcacheContract(t *testing.T) {
	t.Run("one node", func(t *testing.T) {
		mc := startMemcached(t)
		testStoreContract(t, func(t *testing.T) Store { return newMemcacheStore(t, mc.addr()) }, nil)
	})
	t.Run("three nodes", func(t *testing.T) {
		a, b, c := startMemcached(t), startMemcached(t), startMemcached(t)
		testStoreContract(t, func(t *testing.T) Store { return newMemcacheStore(t, a.addr(), b.addr(), c.addr()) }, nil)
	})
}

func TestMemcacheKeysValuesAndExpirations(t *testing.T) {
	mc := startMemcached(t)
	s := newMemcacheStore(t, mc.addr())
	ctx := context.Background()
	for _, key := range []string{"has space", "ctl\x01char", string(make([]byte, 300))} {
		if err := s.Set(ctx, key, []byte("v"), time.Minute); err != nil {
			t.Fatalf("key %q: %v", key, err)
		}
		if v, err := s.Get(ctx, key); err != nil || string(v) != "v" {
			t.Fatalf("key %q: %q %v", key, v, err)
		}
	}
	if err := s.Set(ctx, "big", make([]byte, 2<<20), time.Minute); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("2 MB value: %v, want ErrTooLarge", err)
	}
	// A user in hundreds of groups still fits.
	if err := s.Set(ctx, "groups", make([]byte, 200<<10), time.Minute); err != nil {
		t.Fatalf("200 KB value: %v", err)
	}
	// Over 30 days memcached wants an absolute time; sent as seconds it
	// would be read as a time in 1970 and expire at once.
	if err := s.Set(ctx, "long", []byte("v"), 45*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "long"); err != nil {
		t.Fatalf("45-day record gone at once: %v", err)
	}
	if got := s.expiration(45 * 24 * time.Hour); int64(got) < time.Now().Unix() {
		t.Fatalf("expiration for 45 days = %d, want an absolute time", got)
	}
	if got := s.expiration(100 * time.Millisecond); got != 1 {
		t.Fatalf("expiration for 100ms = %d, want 1 (0 would never expire)", got)
	}
}

func TestMemcacheNodeDownLosesOnlyItsKeysAndRecovers(t *testing.T) {
	nodes := []*memcached{startMemcached(t), startMemcached(t), startMemcached(t)}
	s := newMemcacheStore(t, nodes[0].addr(), nodes[1].addr(), nodes[2].addr())
	ctx := context.Background()
	const n = 300
	owner := map[string]int{}
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("s1:key-%d", i)
		if err := s.Set(ctx, k, []byte("v"), time.Hour); err != nil {
			t.Fatal(err)
		}
		owner[k] = s.selector.pick(k)
	}
	nodes[1].stop()
	lost := 0
	for k, o := range owner {
		_, err := s.Get(ctx, k)
		if o != 1 && err != nil {
			t.Fatalf("key on a live node failed: %v", err)
		}
		if o == 1 && err == nil {
			t.Fatalf("key on the dead node still read")
		}
		if o == 1 {
			lost++
		}
	}
	if lost == 0 || lost > n/2 {
		t.Fatalf("%d of %d keys lost with one of three nodes down", lost, n)
	}
	// New sessions land on live nodes once the dead one is set aside.
	for k, o := range owner {
		if o == 1 {
			if err := s.Set(ctx, k, []byte("again"), time.Hour); err != nil {
				t.Fatalf("write after failover: %v", err)
			}
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ready with two of three nodes: %v", err)
	}
	nodes[1].start()
	waitUntil(t, 10*time.Second, "the restarted node to be used again", func() bool { return s.selector.upCount() == 3 })
}

func TestMemcacheAllDownFailsFastAndRecovers(t *testing.T) {
	mc := startMemcached(t)
	s := newMemcacheStore(t, mc.addr())
	ctx := context.Background()
	_ = s.Set(ctx, "k", []byte("v"), time.Hour)
	mc.stop()
	start := time.Now()
	if _, err := s.Get(ctx, "k"); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("get with memcached down: %v, want a store error", err)
	}
	if _, err := s.Get(ctx, "k"); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("second get: %v", err)
	}
	// A multi-get never answers "nothing there" for a server it could not ask.
	if got, err := s.GetMulti(ctx, []string{"k", "k2"}); err == nil {
		t.Fatalf("get multi with memcached down: %v, nil; want a store error", got)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("failing took %s", d)
	}
	if err := s.Ping(ctx); err == nil {
		t.Fatal("ready with memcached down")
	}
	mc.start()
	waitUntil(t, 10*time.Second, "recovery", func() bool { return s.Ping(ctx) == nil })
	if err := s.Set(ctx, "k2", []byte("v"), time.Hour); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestMemcacheUnresponsiveServerTimesOutWithoutPileUp(t *testing.T) {
	// A listener that accepts and never answers: a hung memcached.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	s := newMemcacheStore(t, ln.Addr().String())
	ctx := context.Background()
	before := runtime.NumGoroutine()
	start := time.Now()
	for i := 0; i < 200; i++ {
		if _, err := s.Get(ctx, "k"); err == nil {
			t.Fatal("hung server answered")
		}
	}
	// The first call waits for the timeout; the server is then set aside
	// and the rest fail at once.
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("200 calls against a hung server took %s", d)
	}
	waitUntil(t, 5*time.Second, "goroutines to settle", func() bool { return runtime.NumGoroutine() < before+20 })
}

func TestRendezvousMovesFewKeys(t *testing.T) {
	three, _ := newRendezvous([]string{"10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"})
	four, _ := newRendezvous([]string{"10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211", "10.0.0.4:11211"})
	const n = 10000
	moved, perServer := 0, map[int]int{}
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("s1:%d", i)
		a, b := three.pick(k), four.pick(k)
		perServer[a]++
		if a != b {
			moved++
			if b != 3 {
				t.Fatalf("key moved between old servers (%d -> %d)", a, b)
			}
		}
	}
	if frac := float64(moved) / n; frac < 0.15 || frac > 0.35 {
		t.Fatalf("adding a 4th server moved %.0f%% of keys, want about 25%%", frac*100)
	}
	for srv, c := range perServer {
		if c < n/3-n/10 || c > n/3+n/10 {
			t.Fatalf("server %d holds %d of %d keys: unbalanced", srv, c, n)
		}
	}
	// Removing a server moves only the keys it held.
	three.markDown(0, time.Now())
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("s1:%d", i)
		if before := four.pick(k); before != 0 && before != 3 && three.pick(k) != before {
			t.Fatal("a key not on the removed server moved")
		}
	}
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With one server there is nothing to fail over to: once memcached is
// back, the very next request is served, without waiting for the probe.
func TestMemcacheSingleServerServesAsSoonAsItIsBack(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		op   func(s *Memcache) error
		want error // the store's own answer once memcached is back
	}{
		{"get", func(s *Memcache) error { _, err := s.Get(ctx, "k"); return err }, ErrNotFound},
		{"set", func(s *Memcache) error { return s.Set(ctx, "k", []byte("v"), time.Hour) }, nil},
		{"add", func(s *Memcache) error { return s.Add(ctx, "k", []byte("v"), time.Hour) }, nil},
		{"replace", func(s *Memcache) error { return s.Replace(ctx, "k", []byte("v"), time.Hour) }, ErrNotFound},
		{"touch", func(s *Memcache) error { return s.Touch(ctx, "k", time.Hour) }, ErrNotFound},
		{"delete", func(s *Memcache) error { return s.Delete(ctx, "k") }, nil},
		{"ping", func(s *Memcache) error { return s.Ping(ctx) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mc := startMemcached(t)
			s := newMemcacheStoreProbing(t, 0, mc.addr()) // no probe: requests alone
			if err := s.Set(ctx, "before", []byte("v"), time.Hour); err != nil {
				t.Fatal(err)
			}
			mc.stop()
			if _, err := s.Get(ctx, "before"); err == nil || errors.Is(err, ErrNotFound) {
				t.Fatalf("get with memcached down: %v, want a store error", err)
			}
			for i := 0; i < 3; i++ {
				if err := tt.op(s); err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrExists) {
					t.Fatalf("%s with memcached down: %v, want a store error", tt.name, err)
				}
			}
			mc.start() // same port, empty
			if err := tt.op(s); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("first %s once memcached is back: %v, want %v", tt.name, err, tt.want)
			}
			if err := s.Set(ctx, "after", []byte("v"), time.Hour); err != nil {
				t.Fatalf("set after recovery: %v", err)
			}
			if v, err := s.Get(ctx, "after"); err != nil || string(v) != "v" {
				t.Fatalf("get after recovery: %q, %v", v, err)
			}
		})
	}
}

// A node set aside while cut off misses the writes and deletes sent to
// the next node instead; when it answers again it must not serve what it
// held before (a signed-out session, an old value).
func TestMemcacheNodeThatMissedWritesIsFlushedBeforeReuse(t *testing.T) {
	a, b := startMemcached(t), startMemcached(t)
	s := newMemcacheStore(t, a.addr(), b.addr())
	ctx := context.Background()
	type change struct {
		name string
		do   func(k string) error
	}
	changes := []change{
		{"deleted (signed out)", func(k string) error { return s.Delete(ctx, k) }},
		{"overwritten (sign out everywhere)", func(k string) error { return s.Set(ctx, k, []byte("new"), time.Hour) }},
		{"added anew", func(k string) error { return s.Add(ctx, k, []byte("new"), time.Hour) }},
	}
	keys := keysOn(s, 0, len(changes)+1, "onA")
	for _, k := range keys {
		if err := s.Set(ctx, k, []byte("old"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	a.pause()
	// The first request to reach A times out and sets A aside.
	if _, err := s.Get(ctx, keys[0]); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("get from a paused node: %v, want a store error", err)
	}
	for i, c := range changes {
		if err := c.do(keys[i]); err != nil {
			t.Fatalf("%s while A is down: %v", c.name, err)
		}
	}
	a.resume()
	waitUntil(t, 10*time.Second, "A to be used again", func() bool { return s.selector.upCount() == 2 })
	for i, c := range changes {
		if v, err := s.Get(ctx, keys[i]); string(v) == "old" {
			t.Errorf("%s while A was down: A served the old value again (%v)", c.name, err)
		}
	}
	// A record no write touched is gone too: the whole node was flushed.
	if v, err := s.Get(ctx, keys[len(changes)]); !errors.Is(err, ErrNotFound) {
		t.Errorf("untouched record on the flushed node: %q, %v", v, err)
	}
}

// A node that missed nothing (only reads went elsewhere) keeps its
// records: flushing it would sign out its sessions for nothing.
func TestMemcacheNodeThatMissedNothingIsNotFlushed(t *testing.T) {
	a, b := startMemcached(t), startMemcached(t)
	s := newMemcacheStore(t, a.addr(), b.addr())
	ctx := context.Background()
	keys := keysOn(s, 0, 3, "onA")
	for _, k := range keys {
		if err := s.Set(ctx, k, []byte("v"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	a.pause()
	for _, k := range keys {
		_, _ = s.Get(ctx, k) // the first times out; the rest go to B and miss
	}
	a.resume()
	waitUntil(t, 10*time.Second, "A to be used again", func() bool { return s.selector.upCount() == 2 })
	for _, k := range keys {
		if v, err := s.Get(ctx, k); err != nil || string(v) != "v" {
			t.Fatalf("record on a node that missed nothing: %q, %v", v, err)
		}
	}
}

// When every node is set aside, a node that missed writes is never tried
// without the probe flushing it first.
func TestMemcacheAllDownNeverTriesANodeThatMissedWrites(t *testing.T) {
	a, b := startMemcached(t), startMemcached(t)
	s := newMemcacheStoreProbing(t, 0, a.addr(), b.addr()) // no probe
	ctx := context.Background()
	k := keysOn(s, 0, 1, "onA")[0]
	if err := s.Set(ctx, k, []byte("old"), time.Hour); err != nil {
		t.Fatal(err)
	}
	a.pause()
	_, _ = s.Get(ctx, k) // sets A aside
	if err := s.Delete(ctx, k); err != nil {
		t.Fatalf("delete while A is down: %v", err)
	}
	b.stop() // now every node is down
	_, _ = s.Get(ctx, k)
	a.resume()
	for i := 0; i < 5; i++ {
		if v, err := s.Get(ctx, k); err == nil || string(v) == "old" {
			t.Fatalf("read with every node down: %q, %v; want a store error, never A's old value", v, err)
		}
	}
	// The probe's path flushes A and brings it back.
	if !s.recover(0) {
		t.Fatal("A not recovered")
	}
	if v, err := s.Get(ctx, k); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after A was flushed and brought back: %q, %v", v, err)
	}
}

// The copies written to the next node while a node was down go stale once
// it is back (later changes reach it, not them). They are deleted from the
// fallback when the node returns, so a second failure of the node cannot
// serve them again: a session signed out everywhere stays signed out.
func TestFallbackCopiesAreDeletedWhenTheNodeReturns(t *testing.T) {
	a, b := startMemcached(t), startMemcached(t)
	s := newMemcacheStore(t, a.addr(), b.addr())
	ctx := context.Background()
	keys := keysOn(s, 0, 5, "onA")
	a.pause()
	if _, err := s.Get(ctx, keys[0]); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("get from a paused node: %v, want a store error", err)
	}
	for _, k := range keys { // written to B in A's place
		if err := s.Set(ctx, k, []byte("written while A was down"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	a.resume()
	waitUntil(t, 10*time.Second, "A to be used again", func() bool { return s.selector.upCount() == 2 })
	for _, k := range keys { // later changes reach A only
		if err := s.Set(ctx, k, []byte("current"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	a.pause() // A fails again: its keys are read from B
	_, _ = s.Get(ctx, keys[0])
	for _, k := range keys {
		v, err := s.Get(ctx, k)
		if string(v) == "written while A was down" {
			t.Fatalf("%s: B served its stale copy after A failed again", k)
		}
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %q, %v; want not found", k, v, err)
		}
	}
	a.resume()
}
