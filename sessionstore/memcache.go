package sessionstore

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/gatehouse/gatehouse/internal/confcheck"
)

// ErrTooLarge is returned for a value memcached would refuse (its default
// item size limit is 1 MB).
var ErrTooLarge = errors.New("sessionstore: record larger than memcached's 1 MB item limit")

// errNoServer means every server is set aside and none may be tried now.
var errNoServer = errors.New("memcache: no server available")

// errSetAside is a call skipped because its server was set aside after
// the operation chose it.
var errSetAside = errors.New("memcache: server set aside")

const (
	maxItemSize  = 1<<20 - 512 // room for the key and item header
	maxKeyLen    = 250
	maxRelative  = 30 * 24 * time.Hour // longer expirations are absolute Unix times
	probeEvery   = 500 * time.Millisecond
	probeTimeout = 250 * time.Millisecond
	// resolveTimeout bounds one round of name resolution.
	resolveTimeout = 5 * time.Second
)

// Memcache is a Store in memcached, shared by every replica. Each record
// lives on the first `replicas` servers of its rendezvous ranking that
// are in use; see ring for the rules that keep a stale record from ever
// being served. A server that fails is set aside until a background probe
// finds it again (flushed first when it missed writes or deletes). When
// every server is set aside, requests try them anyway: with one server
// there is nothing to fail over to, and waiting for the probe would only
// refuse requests a working memcached could answer. Servers given as
// dns+ or dnssrv+ names are resolved again every resolve interval.
type Memcache struct {
	ring     *ring
	timeout  time.Duration
	backoff  time.Duration // after a slow failure, tries wait this long
	maxIdle  int
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	log      *slog.Logger
	resolver Resolver
	now      func() time.Time

	specs        []*discovered
	specMu       sync.Mutex
	resolveEvery time.Duration
	joinDelay    time.Duration
	// heldUntil: no operation before this time (see holdFor).
	heldMu    sync.Mutex
	heldUntil time.Time

	stop chan struct{}
	done sync.WaitGroup
}

// NewMemcache connects to the configured servers. A name that does not
// resolve is not an error: the store starts without its servers (failing
// every request closed while it has none) and keeps resolving it. Call
// Close to stop the background work.
func NewMemcache(cfg MemcacheConfig, opts ...Option) (*Memcache, error) {
	return newMemcache(cfg, probeEvery, opts...)
}

// newMemcache is NewMemcache with the probe's interval; 0 runs no probe
// (tests that must see what requests alone do).
func newMemcache(cfg MemcacheConfig, probeInterval time.Duration, opts ...Option) (*Memcache, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.resolver == nil {
		o.resolver = net.DefaultResolver
	}
	var ps confcheck.Problems
	var specs []*discovered
	for _, raw := range cfg.Servers {
		sp, err := parseServer(raw)
		if err != nil {
			ps.Addf("servers", "%v", err)
			continue
		}
		specs = append(specs, &discovered{serverSpec: sp})
	}
	var tlsConfig *tls.Config
	if cfg.TLS.Enabled {
		var tps confcheck.Problems
		tlsConfig, _ = cfg.TLS.build(&tps)
		ps.Nest("tls", tps)
	}
	if len(ps) > 0 {
		return nil, errConfig(ps)
	}
	m := &Memcache{
		timeout: cfg.Timeout, backoff: probeEvery, maxIdle: cfg.MaxIdleConns,
		log: o.log, resolver: o.resolver, now: time.Now,
		specs: specs, resolveEvery: cfg.ResolveInterval,
		stop: make(chan struct{}),
	}
	if m.timeout <= 0 {
		m.timeout = memcache.DefaultTimeout
	}
	if m.resolveEvery <= 0 {
		m.resolveEvery = DefaultResolveInterval
	}
	// Long enough for every other Gatehouse process to have resolved at
	// least twice: see ring.
	m.joinDelay = 3 * m.resolveEvery
	replicas := cfg.Replicas
	if replicas <= 0 {
		replicas = DefaultReplicas
	}
	m.ring = newRing(replicas)
	netResolver, _ := o.resolver.(*net.Resolver)
	m.dial = dialer(tlsConfig, netResolver)
	m.resolve()
	if probeInterval > 0 {
		m.done.Add(1)
		go m.probe(probeInterval)
	}
	for _, sp := range specs {
		if sp.kind != staticServer {
			m.done.Add(1)
			go m.discover()
			break
		}
	}
	return m, nil
}

// dialer connects to memcached: over TLS when tlsConfig is set, resolving
// host names with resolver (nil: the default).
func dialer(tlsConfig *tls.Config, resolver *net.Resolver) func(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := &net.Dialer{Resolver: resolver}
	if tlsConfig == nil {
		return nd.DialContext
	}
	// With no server_name, tls.Dialer checks the certificate against the
	// host dialled (an IP address for dns+ servers: the certificate then
	// needs it as an IP SAN, or set server_name).
	td := &tls.Dialer{NetDialer: nd, Config: tlsConfig}
	return td.DialContext
}

// newServer makes the state for one address, with its own connections.
func (m *Memcache) newServer(addr string) *server {
	c := memcache.NewFromSelector(oneServer{tcpAddr(addr)})
	c.Timeout = m.timeout
	c.MaxIdleConns = m.maxIdle
	c.DialContext = m.dial
	return &server{addr: addr, client: c}
}

// tcpAddr is a host:port to dial, the host being a name or an address.
type tcpAddr string

func (a tcpAddr) Network() string { return "tcp" }
func (a tcpAddr) String() string  { return string(a) }

// oneServer is a memcache.ServerSelector of one address: the store picks
// the servers itself, so that it knows which one answered.
type oneServer struct{ addr net.Addr }

func (s oneServer) PickServer(string) (net.Addr, error) { return s.addr, nil }
func (s oneServer) Each(f func(net.Addr) error) error   { return f(s.addr) }

// Close stops the background work and closes idle connections.
func (m *Memcache) Close() error {
	close(m.stop)
	m.done.Wait()
	m.ring.mu.Lock()
	all := m.ring.all
	m.ring.mu.Unlock()
	for _, s := range all {
		_ = s.client.Close()
	}
	return nil
}

// safeKey keeps keys within memcached's rules: at most 250 bytes, no
// spaces or control characters. Gatehouse's own keys always fit; anything
// else is replaced by its hash rather than rejected or truncated (which
// could make two keys collide).
func safeKey(key string) string {
	ok := len(key) <= maxKeyLen
	for i := 0; ok && i < len(key); i++ {
		if key[i] <= ' ' || key[i] == 0x7f {
			ok = false
		}
	}
	if ok {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "h:" + hex.EncodeToString(sum[:])
}

// expiration converts a TTL to memcached's form: whole seconds, at least
// one (0 would mean never), and past 30 days an absolute Unix time.
func (m *Memcache) expiration(ttl time.Duration) int32 {
	secs := int64((ttl + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	if ttl > maxRelative {
		return int32(m.now().Unix() + secs)
	}
	return int32(secs)
}

// isAnswer reports whether err is memcached answering (no such key, not
// stored), as opposed to a server that could not be asked.
func isAnswer(err error) bool {
	return errors.Is(err, memcache.ErrCacheMiss) || errors.Is(err, memcache.ErrNotStored) || errors.Is(err, memcache.ErrCASConflict)
}

// op is one store operation: the servers it touched and failed on, and
// the set-aside servers it claimed to try.
type op struct {
	m       *Memcache
	mu      sync.Mutex
	touched []*server
	failed  []*server
	tries   map[*server]bool // guarded by ring.mu
}

func (m *Memcache) begin() *op { return &op{m: m} }

// finish releases what o holds. answered says whether a write or delete
// gave the caller a definite answer (done, exists, not found) rather than
// a store error: every server it failed on then counts as having missed
// it, since the call may or may not have been applied there. After a
// store error the outcome is undetermined for the caller too, and the
// server is not flushed for it.
func (o *op) finish(answered bool) { o.m.ring.finish(o, answered) }

// call runs fn against s. A server set aside since the operation chose
// it is skipped, as failed. Any failure other than memcached's answers
// sets the server aside.
func (o *op) call(s *server, fn func(c *memcache.Client) error) error {
	m := o.m
	ok, try := m.ring.enter(s, o)
	o.mu.Lock()
	o.touched = append(o.touched, s)
	if !ok {
		o.failed = append(o.failed, s)
	}
	o.mu.Unlock()
	if !ok {
		return errSetAside
	}
	start := m.now()
	err := fn(s.client)
	if err == nil || isAnswer(err) {
		if try {
			m.ring.tried(s, o)
		}
		return err
	}
	// A failure that took about the timeout is a hung server: hold tries
	// off for a while so that not every request waits for it.
	slow := m.now().Sub(start) >= m.timeout/2
	if m.ring.fail(s, try, slow, m.now(), m.backoff) {
		// Its idle connections are dead or stale; when it comes back,
		// start afresh rather than fail once per pooled connection.
		_ = s.client.Close()
		m.log.Warn("memcached server set aside: its records are read from and written to the next servers until it answers again",
			"server", s.addr, "err", err.Error())
	}
	o.mu.Lock()
	o.failed = append(o.failed, s)
	o.mu.Unlock()
	return err
}

// task is one call of a wave.
type task struct {
	s   *server
	fn  func(c *memcache.Client) error
	err error
}

// wave runs tasks at the same time (the last on this goroutine).
func (o *op) wave(tasks []*task) {
	if len(tasks) == 0 {
		return
	}
	var wg sync.WaitGroup
	for _, t := range tasks[:len(tasks)-1] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.err = o.call(t.s, t.fn)
		}()
	}
	last := tasks[len(tasks)-1]
	last.err = o.call(last.s, last.fn)
	wg.Wait()
}

// tasksFor is one call of fn per server.
func tasksFor(servers []*server, fn func(c *memcache.Client) error) []*task {
	ts := make([]*task, len(servers))
	for i, s := range servers {
		ts[i] = &task{s: s, fn: fn}
	}
	return ts
}

// check is what every operation checks first: a context already done,
// and the hold after a name's first answer (see holdFor).
func (m *Memcache) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return m.held()
}

// item checks a Set, Add or Replace and makes the record to send.
func (m *Memcache) item(ctx context.Context, key string, value []byte, ttl time.Duration) (*memcache.Item, error) {
	if len(value) > maxItemSize {
		return nil, ErrTooLarge
	}
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	return &memcache.Item{Key: safeKey(key), Value: value, Expiration: m.expiration(ttl)}, nil
}

// holdFor refuses every operation (a store error: requests fail closed,
// /ready is 503) for d from now. A name's first answer starts it: the
// servers it names are used at once, which is safe only once every other
// Gatehouse process has resolved the name since they appeared.
func (m *Memcache) holdFor(d time.Duration) {
	m.heldMu.Lock()
	defer m.heldMu.Unlock()
	if until := m.now().Add(d); until.After(m.heldUntil) {
		m.heldUntil = until
	}
}

// held is the error for an operation before the hold ends, or nil.
func (m *Memcache) held() error {
	m.heldMu.Lock()
	until := m.heldUntil
	m.heldMu.Unlock()
	if m.now().Before(until) {
		return fmt.Errorf("memcache: waiting until %s for every Gatehouse process to know the servers just resolved", until.Format(time.RFC3339))
	}
	return nil
}

// orNoServer is lastErr, the last failure of an operation, or when it has
// none (no server was asked), why there was no server to go to. It is
// worked out only then, off the path of requests that succeed.
func (m *Memcache) orNoServer(lastErr error) error {
	if lastErr != nil {
		return lastErr
	}
	if m.ring.memberCount() > 0 {
		return errNoServer
	}
	m.specMu.Lock()
	defer m.specMu.Unlock()
	var why []string
	for _, sp := range m.specs {
		if len(sp.addrs) == 0 && sp.err != nil {
			why = append(why, fmt.Sprintf("%s did not resolve (%v)", sp.raw, sp.err))
		}
	}
	if len(why) == 0 {
		return errors.New("memcache: no memcached server is known")
	}
	return fmt.Errorf("memcache: no memcached server is known: %s", strings.Join(why, "; "))
}
