package e2e

import (
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
	"github.com/miekg/dns"

	"github.com/gatehouse/gatehouse/sessionstore"
)

// dnsServer is a DNS server on 127.0.0.1 (UDP, a random port) answering A
// and SRV queries from tables the test changes; every other name is
// NXDOMAIN.
type dnsServer struct {
	addr string
	mu   sync.Mutex
	a    map[string][]net.IP  // FQDN -> addresses
	srv  map[string][]dns.SRV // FQDN -> targets
}

func startDNS(t *testing.T) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dnsServer{addr: pc.LocalAddr().String(), a: map[string][]net.IP{}, srv: map[string][]dns.SRV{}}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: d, NotifyStartedFunc: func() { close(started) }}
	go func() { _ = srv.ActivateAndServe() }()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the DNS server did not start")
	}
	t.Cleanup(func() { _ = srv.Shutdown() })
	return d
}

func (d *dnsServer) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	for _, q := range r.Question {
		name := strings.ToLower(q.Name)
		ips, hasA := d.a[name]
		srvs, hasSRV := d.srv[name]
		if !hasA && !hasSRV {
			m.Rcode = dns.RcodeNameError
			continue
		}
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 0}
		switch q.Qtype {
		case dns.TypeA:
			for _, ip := range ips {
				h := hdr
				h.Rrtype = dns.TypeA
				m.Answer = append(m.Answer, &dns.A{Hdr: h, A: ip.To4()})
			}
		case dns.TypeSRV:
			for _, s := range srvs {
				h := hdr
				h.Rrtype = dns.TypeSRV
				rr := s
				rr.Hdr = h
				m.Answer = append(m.Answer, &rr)
			}
		}
	}
	_ = w.WriteMsg(m)
}

// setA makes name (an FQDN) answer with ips; none: NXDOMAIN.
func (d *dnsServer) setA(name string, ips ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(ips) == 0 {
		delete(d.a, name)
		return
	}
	var out []net.IP
	for _, ip := range ips {
		out = append(out, net.ParseIP(ip))
	}
	d.a[name] = out
}

// setSRV makes name list targets (host:port, the host an FQDN).
func (d *dnsServer) setSRV(name string, targets ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []dns.SRV
	for _, tg := range targets {
		host, port, _ := net.SplitHostPort(tg)
		p, _ := strconv.Atoi(port)
		out = append(out, dns.SRV{Priority: 0, Weight: 10, Port: uint16(p), Target: host})
	}
	d.srv[name] = out
}

// resolver sends every query to the test's DNS server.
func (d *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "udp", d.addr)
	}}
}

// portFreeOn finds a port free on every one of ips.
func portFreeOn(t *testing.T, ips ...string) string {
	t.Helper()
	for try := 0; try < 20; try++ {
		ln, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		ok := true
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, port))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		ln.Close()
		if ok {
			return port
		}
	}
	t.Fatal("no port free on every address")
	return ""
}

// holdsKey asks the memcached at addr directly whether it holds key.
func holdsKey(t *testing.T, addr, key string) bool {
	t.Helper()
	c := memcache.New(addr)
	c.Timeout = 2 * time.Second
	defer c.Close()
	_, err := c.Get(key)
	if err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("asking %s for %s: %v", addr, key, err)
	}
	return err == nil
}

// dnsStore is a store over servers resolved through d every 100 ms.
func dnsStore(t *testing.T, d *dnsServer, servers ...string) (*sessionstore.Memcache, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	s, err := sessionstore.NewMemcache(sessionstore.MemcacheConfig{
		Servers: servers, ResolveInterval: 100 * time.Millisecond, Replicas: 2,
		Timeout: 250 * time.Millisecond, MaxIdleConns: 8,
	}, sessionstore.WithResolver(d.resolver()), sessionstore.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Close()
		if t.Failed() {
			t.Logf("store log:\n%s", logs.String())
		}
	})
	return s, logs
}

// membershipChange runs the same scenario for dns+ and dnssrv+: servers
// a and b behind the name, then c added and a removed. New records go to
// the new set, the removed server gets nothing new, every record written
// before stays readable throughout, and the removed server can then be
// stopped without a single failed request.
func membershipChange(t *testing.T, s *sessionstore.Memcache, a, b, c string, stopA func(), change func()) {
	t.Helper()
	// A name's first answer holds the store for three resolve intervals
	// (every Gatehouse process must know its servers first).
	waitFor(t, 10*time.Second, "the store's hold after the first answer", func() bool {
		return s.Ping(context.Background()) == nil
	})
	ctx := context.Background()
	const n = 100
	old := make([]string, n)
	for i := range old {
		old[i] = fmt.Sprintf("s1:before-%d", i)
		if err := s.Set(ctx, old[i], []byte("v"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range old {
		if !holdsKey(t, a, k) || !holdsKey(t, b, k) || holdsKey(t, c, k) {
			t.Fatalf("%s: want it on %s and %s (replicas 2 of 2), not on %s", k, a, b, c)
		}
	}
	readAll := func(when string) {
		t.Helper()
		got, err := s.GetMulti(ctx, old)
		if err != nil || len(got) != n {
			t.Fatalf("%s: %d of %d records read, %v", when, len(got), n, err)
		}
	}
	change()
	// Poll: new records land on c once it has joined (after being
	// flushed and three resolve intervals of deletes only).
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		k := fmt.Sprintf("s1:after-%d", i)
		if err := s.Set(ctx, k, []byte("v"), time.Hour); err != nil {
			t.Fatalf("write while the membership changes: %v", err)
		}
		readAll("while the membership changes")
		if holdsKey(t, c, k) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no record written to %s 20 s after it was added", c)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := 0; i < 30; i++ {
		k := fmt.Sprintf("s1:new-%d", i)
		if err := s.Set(ctx, k, []byte("v"), time.Hour); err != nil {
			t.Fatal(err)
		}
		if !holdsKey(t, b, k) || !holdsKey(t, c, k) || holdsKey(t, a, k) {
			t.Fatalf("%s: want it on %s and %s, not on the removed %s", k, b, c, a)
		}
	}
	readAll("after the change")
	// The removed server is no longer needed: stopping it fails nothing.
	stopA()
	for i := 0; i < 30; i++ {
		k := fmt.Sprintf("s1:new-%d", i)
		if v, err := s.Get(ctx, k); err != nil || string(v) != "v" {
			t.Fatalf("%s with the removed server stopped: %q, %v", k, v, err)
		}
		if err := s.Delete(ctx, k); err != nil {
			t.Fatalf("delete with the removed server stopped: %v", err)
		}
	}
	readAll("with the removed server stopped")
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// dns+ follows the A records of a name: a server added behind the name is
// used and a removed one dropped, without a restart.
func TestDNSDiscoveryFollowsARecords(t *testing.T) {
	t.Parallel()
	d := startDNS(t)
	ips := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	port := portFreeOn(t, ips...)
	na, nb, nc := startMemcachedAt(t, ips[0], port), startMemcachedAt(t, ips[1], port), startMemcachedAt(t, ips[2], port)
	a, b, c, stopA := na.addr(), nb.addr(), nc.addr(), na.kill
	d.setA("memcached.gatehouse.test.", ips[0], ips[1])
	s, _ := dnsStore(t, d, "dns+memcached.gatehouse.test:"+port)
	membershipChange(t, s, a, b, c, stopA, func() { d.setA("memcached.gatehouse.test.", ips[1], ips[2]) })
}

// dnssrv+ follows the SRV records of a name; the targets are names too,
// resolved (through the same resolver) when dialling.
func TestDNSDiscoveryFollowsSRVRecords(t *testing.T) {
	t.Parallel()
	d := startDNS(t)
	var direct, targets []string
	var stops []func()
	for i := 0; i < 3; i++ {
		n := startMemcachedAt(t, "127.0.0.1", portFreeOn(t, "127.0.0.1"))
		addr, stop := n.addr(), n.kill
		_, port, _ := net.SplitHostPort(addr)
		host := fmt.Sprintf("mc-%d.memcached.gatehouse.test.", i)
		d.setA(host, "127.0.0.1")
		direct, targets, stops = append(direct, addr), append(targets, net.JoinHostPort(host, port)), append(stops, stop)
	}
	const name = "_memcache._tcp.memcached.gatehouse.test."
	d.setSRV(name, targets[0], targets[1])
	s, _ := dnsStore(t, d, "dnssrv+"+strings.TrimSuffix(name, "."))
	membershipChange(t, s, direct[0], direct[1], direct[2], stops[0], func() { d.setSRV(name, targets[1], targets[2]) })
}

// A name that does not resolve at start is not fatal: the store starts
// with no server, fails requests closed with an error naming it, is not
// ready and logs it; once the name resolves it works, without a restart.
func TestDNSNameThatDoesNotResolveAtStart(t *testing.T) {
	t.Parallel()
	d := startDNS(t)
	port := portFreeOn(t, "127.0.0.1")
	startMemcachedAt(t, "127.0.0.1", port)
	s, logs := dnsStore(t, d, "dns+late.gatehouse.test:"+port)
	ctx := context.Background()
	if _, err := s.Get(ctx, "s1:k"); err == nil || errors.Is(err, sessionstore.ErrNotFound) || !strings.Contains(err.Error(), "dns+late.gatehouse.test:"+port+" did not resolve") {
		t.Fatalf("get before the name resolves: %v; want a store error naming it", err)
	}
	if err := s.Ping(ctx); err == nil {
		t.Fatal("ready with no server")
	}
	if !strings.Contains(logs.String(), "did not resolve") || !strings.Contains(logs.String(), "late.gatehouse.test") {
		t.Fatalf("no log line naming the name:\n%s", logs.String())
	}
	d.setA("late.gatehouse.test.", "127.0.0.1")
	waitFor(t, 10*time.Second, "the store to be ready", func() bool { return s.Ping(ctx) == nil })
	if err := s.Set(ctx, "s1:k", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(ctx, "s1:k"); err != nil || string(v) != "v" {
		t.Fatalf("get once the name resolves: %q, %v", v, err)
	}
}
