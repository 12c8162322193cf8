package sessionstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// fakeResolver answers SRV and A lookups from tables a test changes.
type fakeResolver struct {
	mu  sync.Mutex
	srv map[string][]*net.SRV
	ips map[string][]net.IPAddr
}

func newFakeResolver() *fakeResolver {
	return &fakeResolver{srv: map[string][]*net.SRV{}, ips: map[string][]net.IPAddr{}}
}

func (f *fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ips, ok := f.ips[host]; ok {
		return ips, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (f *fakeResolver) LookupSRV(_ context.Context, _, _, name string) (string, []*net.SRV, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if srvs, ok := f.srv[name]; ok {
		return name, srvs, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// setSRV makes name list the memcached at addrs (127.0.0.1:port each).
func (f *fakeResolver) setSRV(name string, addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var srvs []*net.SRV
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		srvs = append(srvs, &net.SRV{Target: host + ".", Port: uint16(p)})
	}
	f.srv[name] = srvs
}

func (f *fakeResolver) remove(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.srv, name)
	delete(f.ips, name)
}

// logBuffer collects a store's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

const srvName = "_memcache._tcp.mc.test"

// discoveringStore is a store over dnssrv+srvName resolved by r every
// 50 ms, logging into the returned buffer.
func discoveringStore(t *testing.T, r Resolver) (*Memcache, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	cfg := testConfig("dnssrv+" + srvName)
	cfg.ResolveInterval = 50 * time.Millisecond
	s := newStoreWith(t, probeEvery, cfg, WithResolver(r), WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	// A name's first answer holds the store for the join delay (every
	// other Gatehouse process must know its servers first): wait it out.
	waitUntil(t, 10*time.Second, "the hold after the first answer", func() bool { return s.held() == nil })
	return s, logs
}

// The servers of a name's first answer are used only after the join
// delay: a server that just appeared may be unknown to other Gatehouse
// processes, whose deletes would miss it (a signed-out session served
// again). Until then the store fails closed and is not ready.
func TestFirstAnswerIsHeldForTheJoinDelay(t *testing.T) {
	a := startMemcached(t)
	r := newFakeResolver()
	r.setSRV(srvName, a.addr())
	cfg := testConfig("dnssrv+" + srvName)
	cfg.ResolveInterval = time.Second // join delay 3 s
	s := newStoreWith(t, probeEvery, cfg, WithResolver(r))
	ctx := context.Background()
	if err := s.Ping(ctx); err == nil {
		t.Fatal("ready right after the first answer")
	}
	if err := s.Set(ctx, "k", []byte("v"), time.Hour); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("set during the hold: %v, want a store error", err)
	}
	if _, err := s.Get(ctx, "k"); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("get during the hold: %v, want a store error (never not found)", err)
	}
	waitUntil(t, 10*time.Second, "the hold to end", func() bool { return s.Ping(ctx) == nil })
	if err := s.Set(ctx, "k", []byte("v"), time.Hour); err != nil {
		t.Fatalf("set after the hold: %v", err)
	}
	// Static servers are known to every process from its configuration:
	// no hold.
	static := newStoreWith(t, probeEvery, testConfig(a.addr()))
	if err := static.Ping(ctx); err != nil {
		t.Fatalf("static server list held: %v", err)
	}
}

func (m *Memcache) roleOf(addr string) string {
	m.ring.mu.Lock()
	defer m.ring.mu.Unlock()
	s, ok := m.ring.servers[addr]
	if !ok {
		return ""
	}
	return s.role.String()
}

// A name that does not resolve at start is not fatal: the store starts
// with no server, fails every request closed with an error that names it,
// is not ready, and logs it. Once the name resolves, the store works,
// without a restart.
func TestDiscoveryNameThatDoesNotResolveAtStart(t *testing.T) {
	a, b := startMemcached(t), startMemcached(t)
	r := newFakeResolver()
	s, logs := discoveringStore(t, r)
	ctx := context.Background()
	checks := map[string]func() error{
		"get":       func() error { _, err := s.Get(ctx, "k"); return err },
		"get multi": func() error { _, err := s.GetMulti(ctx, []string{"k", "u2:x"}); return err },
		"set":       func() error { return s.Set(ctx, "k", []byte("v"), time.Hour) },
		"add":       func() error { return s.Add(ctx, "k", []byte("v"), time.Hour) },
		"replace":   func() error { return s.Replace(ctx, "k", []byte("v"), time.Hour) },
		"touch":     func() error { return s.Touch(ctx, "k", time.Hour) },
		"delete":    func() error { return s.Delete(ctx, "k") },
		"ping":      func() error { return s.Ping(ctx) },
	}
	for name, op := range checks {
		err := op()
		if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrExists) {
			t.Fatalf("%s with no server: %v, want a store error", name, err)
		}
		if !strings.Contains(err.Error(), "dnssrv+"+srvName+" did not resolve") {
			t.Errorf("%s with no server: %q does not say which name did not resolve", name, err)
		}
	}
	if l := logs.String(); !strings.Contains(l, "did not resolve") || !strings.Contains(l, srvName) || !strings.Contains(l, "level=ERROR") {
		t.Errorf("no error logged naming the name that did not resolve:\n%s", l)
	}
	r.setSRV(srvName, a.addr(), b.addr())
	waitUntil(t, 10*time.Second, "the store to be ready", func() bool { return s.Ping(ctx) == nil })
	// The first answer is used at once: no join delay, no flush.
	if got := s.roleOf(a.addr()) + "," + s.roleOf(b.addr()); got != "member,member" {
		t.Fatalf("roles after the first answer: %s", got)
	}
	if err := s.Set(ctx, "k", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("get: %q, %v", v, err)
	}
	if !strings.Contains(logs.String(), "resolves again") {
		t.Errorf("no log line when the name resolved:\n%s", logs.String())
	}
}

// A name that stops resolving keeps the servers it gave.
func TestDiscoveryNameThatStopsResolvingKeepsItsServers(t *testing.T) {
	a := startMemcached(t)
	r := newFakeResolver()
	r.setSRV(srvName, a.addr())
	s, logs := discoveringStore(t, r)
	ctx := context.Background()
	if err := s.Set(ctx, "k", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	r.remove(srvName)
	waitUntil(t, 10*time.Second, "the failure to be logged", func() bool { return strings.Contains(logs.String(), "no longer resolves") })
	if got := s.roleOf(a.addr()); got != "member" {
		t.Fatalf("server of a name that stopped resolving: %q, want still a member", got)
	}
	if v, err := s.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("get: %q, %v", v, err)
	}
}

// Membership follows the name: a new server is flushed, receives deletes
// only, and joins the ring after the join delay; a server no longer
// listed leaves the ring at once, receives deletes for as long, and is
// forgotten. Servers that stay keep their state (connections, set-aside
// state). No record is lost while the ring changes, and none that was
// changed or deleted meanwhile comes back.
func TestDiscoveryMembershipChangesMoveOnlyWhatTheyMustAndServeNothingStale(t *testing.T) {
	nodes := []*memcached{startMemcached(t), startMemcached(t), startMemcached(t)}
	a, b, c := nodes[0].addr(), nodes[1].addr(), nodes[2].addr()
	r := newFakeResolver()
	r.setSRV(srvName, a, b)
	s, _ := discoveringStore(t, r)
	ctx := context.Background()
	before := s.serverAt(a)

	// Keys for which C will be one of the two replicas, and others.
	const n = 120
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("s1:ring-%d", i)
		if err := s.Set(ctx, keys[i], []byte("v1"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// C holds records from an earlier life: they must never be served.
	direct := memcache.New(c)
	defer direct.Close()
	for _, k := range keys {
		if err := direct.Set(&memcache.Item{Key: k, Value: []byte("from an earlier life"), Expiration: 3600}); err != nil {
			t.Fatal(err)
		}
	}

	r.setSRV(srvName, a, b, c)
	waitUntil(t, 10*time.Second, "C to be found", func() bool { return s.roleOf(c) != "" })
	// While joining it is not read from nor written to.
	for _, k := range keys[:20] {
		if v, err := s.Get(ctx, k); err != nil || string(v) != "v1" {
			t.Fatalf("%s while C joins: %q, %v", k, v, err)
		}
	}
	waitUntil(t, 10*time.Second, "C to join the ring", func() bool { return s.roleOf(c) == "member" })
	if s.serverAt(a) != before {
		t.Fatal("a server that stayed lost its state when the ring changed")
	}
	withC := 0
	for i, k := range keys {
		reps := s.replicasOf(k, 2)
		if reps[0] == c || reps[1] == c {
			withC++
		}
		// Nothing lost: a key now on C is read from its other replica.
		v, err := s.Get(ctx, k)
		if err != nil || string(v) != "v1" {
			t.Fatalf("%s after C joined: %q, %v", k, v, err)
		}
		// Changes now: half signed out, half replaced.
		if i%2 == 0 {
			err = s.Delete(ctx, k)
		} else {
			err = s.Set(ctx, k, []byte("v2"), time.Hour)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if withC == 0 || withC == n {
		t.Fatalf("C is a replica of %d of %d keys", withC, n)
	}
	t.Logf("C became a replica of %d of %d keys (about 2/3 expected)", withC, n)

	// C leaves again: every key's replicas are A and B once more. The
	// copies A or B kept while C had taken their place were deleted or
	// replaced by the changes above; none comes back.
	r.setSRV(srvName, a, b)
	waitUntil(t, 10*time.Second, "C to leave the ring", func() bool { return s.roleOf(c) != "member" })
	for i, k := range keys {
		v, err := s.Get(ctx, k)
		if i%2 == 0 && !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s was deleted while C was in the ring: %q, %v", k, v, err)
		}
		if i%2 == 1 && (err != nil || string(v) != "v2") {
			t.Fatalf("%s was replaced while C was in the ring: %q, %v; want v2", k, v, err)
		}
	}
	waitUntil(t, 10*time.Second, "C to be forgotten", func() bool { return s.roleOf(c) == "" })
	want := []ServerState{{a, "member", true}, {b, "member", true}}
	if want[1].Addr < want[0].Addr {
		want[0], want[1] = want[1], want[0]
	}
	if got := s.Servers(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("servers: %v, want %v", got, want)
	}
	if s.serverAt(a) != before {
		t.Fatal("a server that stayed lost its state when the ring changed")
	}
}

// A server that is listed again after it left is flushed before it joins:
// what it held was not kept current while it was away.
func TestDiscoveryServerListedAgainIsFlushed(t *testing.T) {
	nodes := []*memcached{startMemcached(t), startMemcached(t)}
	a, b := nodes[0].addr(), nodes[1].addr()
	r := newFakeResolver()
	r.setSRV(srvName, a, b)
	s, _ := discoveringStore(t, r)
	ctx := context.Background()
	k := "u2:generation"
	if err := s.Set(ctx, k, []byte("old"), time.Hour); err != nil {
		t.Fatal(err)
	}
	r.setSRV(srvName, a)
	waitUntil(t, 10*time.Second, "B to be forgotten", func() bool { return s.roleOf(b) == "" })
	if err := s.Set(ctx, k, []byte("new"), time.Hour); err != nil { // sign out everywhere, B away
		t.Fatal(err)
	}
	if !holds(t, b, k) {
		t.Fatal("test setup: B should still hold the old generation")
	}
	r.setSRV(srvName, a, b)
	waitUntil(t, 10*time.Second, "B to join again", func() bool { return s.roleOf(b) == "member" })
	nodes[0].stop() // only B is left
	for i := 0; i < 3; i++ {
		if v, err := s.Get(ctx, k); string(v) == "old" {
			t.Fatalf("B served the generation replaced while it was away (%v)", err)
		}
	}
}

// dns+ entries give every address of the name, each with the port.
func TestDiscoveryDNSEntriesUseEveryAddress(t *testing.T) {
	r := newFakeResolver()
	r.ips["mc.test"] = []net.IPAddr{{IP: net.ParseIP("10.0.0.2")}, {IP: net.ParseIP("10.0.0.1")}, {IP: net.ParseIP("fd00::1")}}
	m := &Memcache{resolver: r}
	sp, err := parseServer("dns+mc.test:11211")
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.lookup(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	if want := "10.0.0.1:11211,10.0.0.2:11211,[fd00::1]:11211"; strings.Join(got, ",") != want {
		t.Fatalf("dns+mc.test:11211 = %v, want %s", got, want)
	}
}
