package sessionstore

import (
	"bytes"
	"context"
	"crypto/tls"
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

	"github.com/bradfitz/gomemcache/memcache"
)

// memcached is a real memcached process started for a test.
type memcached struct {
	t    testing.TB
	ip   string // to listen on; 127.0.0.1 unless set
	port int
	cmd  *exec.Cmd
	args []string // extra arguments (TLS)
	// probeTLS, when set, is how the test checks that the process is up.
	probeTLS *tls.Config
}

func (m *memcached) addr() string { return net.JoinHostPort(m.host(), strconv.Itoa(m.port)) }

func (m *memcached) host() string {
	if m.ip == "" {
		return "127.0.0.1"
	}
	return m.ip
}

// startMemcached runs memcached on a free port until the test ends.
func startMemcached(t testing.TB) *memcached {
	t.Helper()
	if _, err := exec.LookPath("memcached"); err != nil {
		t.Fatal("memcached not found: run make test, which installs it")
	}
	m := &memcached{t: t, port: freePort(t)}
	m.start()
	t.Cleanup(m.stop)
	return m
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (m *memcached) start() {
	m.t.Helper()
	args := append([]string{"-l", m.host(), "-p", strconv.Itoa(m.port), "-U", "0", "-m", "64", "-u", "root"}, m.args...)
	m.cmd = exec.Command("memcached", args...)
	if err := m.cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !m.answers() {
		if time.Now().After(deadline) {
			m.t.Fatalf("memcached on %s did not come up", m.addr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// answers reports whether the process answers "version" (over TLS when
// probeTLS is set).
func (m *memcached) answers() bool {
	probe := &Memcache{dial: dialer(m.probeTLS, nil), timeout: time.Second}
	return probe.alive(m.addr())
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
	return newStoreWith(t, probe, testConfig(servers...))
}

// testConfig is the configuration the tests use unless they say otherwise
// (replicas: the default, 2).
func testConfig(servers ...string) MemcacheConfig {
	return MemcacheConfig{Servers: servers, Timeout: 250 * time.Millisecond, MaxIdleConns: 16}
}

// newStoreWith builds a store from cfg, closed when t ends.
func newStoreWith(t *testing.T, probe time.Duration, cfg MemcacheConfig, opts ...Option) *Memcache {
	t.Helper()
	s, err := newMemcache(cfg, probe, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// oneReplica is a store with replicas: 1 over servers: each record on one
// server, for the tests of what happens to the records of a server that
// fails or comes back.
func oneReplica(t *testing.T, probe time.Duration, servers ...string) *Memcache {
	t.Helper()
	cfg := testConfig(servers...)
	cfg.Replicas = 1
	return newStoreWith(t, probe, cfg)
}

// serverAt is the store's state for addr.
func (m *Memcache) serverAt(addr string) *server {
	m.ring.mu.Lock()
	defer m.ring.mu.Unlock()
	return m.ring.servers[addr]
}

// rank returns the members in key's order of preference.
func (r *ring) rank(key string) []*server {
	r.mu.Lock()
	defer r.mu.Unlock()
	return rankServers(r.members, key)
}

// markDown sets s aside with missed writes: it is flushed before use.
func (r *ring) markDown(s *server) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.down == nil {
		s.down = &downState{}
	}
	s.down.missed++
}

// ServerState is what a Memcache store knows about one server.
type ServerState struct {
	Addr  string // host:port as dialled
	Role  string // member (holds records), joining or leaving (receives deletes only)
	InUse bool   // false while set aside (until the probe finds it again)
}

// Servers lists the servers the store knows, by address.
func (m *Memcache) Servers() []ServerState {
	m.ring.mu.Lock()
	defer m.ring.mu.Unlock()
	out := make([]ServerState, 0, len(m.ring.all))
	for _, s := range m.ring.all {
		out = append(out, ServerState{Addr: s.addr, Role: s.role.String(), InUse: s.down == nil})
	}
	return out
}

// replicasOf lists the addresses of the first n members of key's ranking.
func (m *Memcache) replicasOf(key string, n int) []string {
	var out []string
	for _, s := range m.ring.rank(safeKey(key))[:n] {
		out = append(out, s.addr)
	}
	return out
}

// keysOn returns n keys whose first choice is the server at addr.
func keysOn(s *Memcache, addr string, n int, prefix string) []string {
	var out []string
	for j := 0; len(out) < n; j++ {
		k := fmt.Sprintf("%s-%d", prefix, j)
		if s.replicasOf(k, 1)[0] == addr {
			out = append(out, k)
		}
	}
	return out
}

// holds reports whether the memcached at addr holds key (asked directly).
func holds(t *testing.T, addr, key string) bool {
	t.Helper()
	c := memcache.New(addr)
	c.Timeout = 2 * time.Second
	defer c.Close()
	_, err := c.Get(safeKey(key))
	if err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("asking %s for %s: %v", addr, key, err)
	}
	return err == nil
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

// An append is refused like a set of a value over memcached's item size
// limit, and a record that would outgrow it is not stored: an error, but
// memcached answered, and its server stays in use.
func TestMemcacheAppendSizeLimits(t *testing.T) {
	mc := startMemcached(t)
	s := newMemcacheStore(t, mc.addr())
	ctx := context.Background()
	if err := s.Append(ctx, "big", make([]byte, 2<<20), time.Minute); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("2 MB append: %v, want ErrTooLarge", err)
	}
	full := make([]byte, 1000*1000)
	if err := s.Set(ctx, "full", full, time.Minute); err != nil {
		t.Fatal(err)
	}
	err := s.Append(ctx, "full", make([]byte, 100<<10), time.Minute)
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrExists) {
		t.Fatalf("append past the item size limit: %v, want a store error", err)
	}
	if s.ring.upMembers() != 1 {
		t.Fatal("the server was set aside for answering an append it could not store")
	}
	if v, err := s.Get(ctx, "full"); err != nil || len(v) != len(full) {
		t.Fatalf("record after the refused append: %d bytes, %v", len(v), err)
	}
}

// With replicas: 1, a node that fails takes its own records with it and
// nobody else's.
func TestMemcacheOneReplicaNodeDownLosesOnlyItsKeysAndRecovers(t *testing.T) {
	nodes := []*memcached{startMemcached(t), startMemcached(t), startMemcached(t)}
	s := oneReplica(t, probeEvery, nodes[0].addr(), nodes[1].addr(), nodes[2].addr())
	ctx := context.Background()
	const n = 300
	owner := map[string]string{}
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("s1:key-%d", i)
		if err := s.Set(ctx, k, []byte("v"), time.Hour); err != nil {
			t.Fatal(err)
		}
		owner[k] = s.replicasOf(k, 1)[0]
	}
	dead := nodes[1].addr()
	nodes[1].stop()
	lost := 0
	for k, o := range owner {
		_, err := s.Get(ctx, k)
		if o != dead && err != nil {
			t.Fatalf("key on a live node failed: %v", err)
		}
		if o == dead && err == nil {
			t.Fatalf("key on the dead node still read")
		}
		if o == dead {
			lost++
		}
	}
	if lost == 0 || lost > n/2 {
		t.Fatalf("%d of %d keys lost with one of three nodes down", lost, n)
	}
	// New sessions land on live nodes once the dead one is set aside.
	for k, o := range owner {
		if o == dead {
			if err := s.Set(ctx, k, []byte("again"), time.Hour); err != nil {
				t.Fatalf("write after failover: %v", err)
			}
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ready with two of three nodes: %v", err)
	}
	nodes[1].start()
	waitUntil(t, 10*time.Second, "the restarted node to be used again", func() bool { return s.ring.upMembers() == 3 })
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

// testRing is a ring of members at addrs (no connections).
func testRing(replicas int, addrs ...string) *ring {
	r := newRing(replicas)
	immediate := map[string]bool{}
	for _, a := range addrs {
		immediate[a] = true
	}
	r.update(addrs, immediate, time.Now(), time.Minute, func(addr string) *server { return &server{addr: addr} })
	return r
}

func TestRendezvousMovesFewKeys(t *testing.T) {
	three := testRing(1, "10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211")
	four := testRing(1, "10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211", "10.0.0.4:11211")
	const n = 10000
	moved, perServer := 0, map[string]int{}
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("s1:%d", i)
		a, b := three.rank(k)[0].addr, four.rank(k)[0].addr
		perServer[a]++
		if a != b {
			moved++
			if b != "10.0.0.4:11211" {
				t.Fatalf("key moved between old servers (%s -> %s)", a, b)
			}
		}
	}
	if frac := float64(moved) / n; frac < 0.15 || frac > 0.35 {
		t.Fatalf("adding a 4th server moved %.0f%% of keys, want about 25%%", frac*100)
	}
	for srv, c := range perServer {
		if c < n/3-n/10 || c > n/3+n/10 {
			t.Fatalf("server %s holds %d of %d keys: unbalanced", srv, c, n)
		}
	}
	// Removing a server (or setting it aside) moves only the keys it held.
	var o op
	three.markDown(three.servers["10.0.0.1:11211"])
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("s1:%d", i)
		before := four.rank(k)[0].addr
		if after := three.plan(k, false, time.Now(), &o).order[0].addr; before != "10.0.0.1:11211" && before != "10.0.0.4:11211" && after != before {
			t.Fatal("a key not on the removed server moved")
		}
	}
}

// With replicas 2 of 3, a key's replica set changes when a server comes
// or goes only when that server is (or becomes) one of its two.
func TestRendezvousReplicaSetsMoveOnlyForTheServerThatChanged(t *testing.T) {
	three := testRing(2, "10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211")
	four := testRing(2, "10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211", "10.0.0.4:11211")
	const n = 10000
	changed := 0
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("s1:%d", i)
		a, b := three.rank(k)[:2], four.rank(k)[:2]
		if a[0].addr == b[0].addr && a[1].addr == b[1].addr {
			continue
		}
		changed++
		if b[0].addr != "10.0.0.4:11211" && b[1].addr != "10.0.0.4:11211" {
			t.Fatalf("replica set changed without the new server: %s,%s -> %s,%s", a[0].addr, a[1].addr, b[0].addr, b[1].addr)
		}
	}
	// The new server is one of the two for about 2/4 of the keys.
	if frac := float64(changed) / n; frac < 0.4 || frac > 0.6 {
		t.Fatalf("adding a 4th server changed the replicas of %.0f%% of keys, want about 50%%", frac*100)
	}
}

func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
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
		{"append", func(s *Memcache) error { return s.Append(ctx, "k", []byte("v"), time.Hour) }, nil},
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
	s := oneReplica(t, probeEvery, a.addr(), b.addr())
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
	keys := keysOn(s, a.addr(), len(changes)+1, "onA")
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
	waitUntil(t, 10*time.Second, "A to be used again", func() bool { return s.ring.upMembers() == 2 })
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
	s := oneReplica(t, probeEvery, a.addr(), b.addr())
	ctx := context.Background()
	keys := keysOn(s, a.addr(), 3, "onA")
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
	waitUntil(t, 10*time.Second, "A to be used again", func() bool { return s.ring.upMembers() == 2 })
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
	s := oneReplica(t, 0, a.addr(), b.addr()) // no probe
	ctx := context.Background()
	k := keysOn(s, a.addr(), 1, "onA")[0]
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
	if !s.recover(s.serverAt(a.addr())) {
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
	s := oneReplica(t, probeEvery, a.addr(), b.addr())
	ctx := context.Background()
	keys := keysOn(s, a.addr(), 5, "onA")
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
	waitUntil(t, 10*time.Second, "A to be used again", func() bool { return s.ring.upMembers() == 2 })
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
