package sessionstore

import (
	"bufio"
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

// Get implements Store: the key's replicas (the first servers in use of
// its ranking) are asked in ranking order and the first record found is
// the answer. A replica that holds nothing (it came back empty, or is new
// to the key) passes the question on; the key holds nothing when the
// replicas that answered all said so. When none answered, Get fails.
func (m *Memcache) Get(ctx context.Context, key string) ([]byte, error) {
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	k := safeKey(key)
	o := m.begin()
	defer o.finish(false)
	p := m.ring.plan(k, false, m.now(), o)
	answered := 0
	var lastErr error
	for _, s := range p.order[:p.n] {
		var value []byte
		err := o.call(s, func(c *memcache.Client) error {
			it, err := c.Get(k)
			if err == nil {
				value = it.Value
			}
			return err
		})
		switch {
		case err == nil:
			return value, nil
		case errors.Is(err, memcache.ErrCacheMiss):
			answered++
		default:
			lastErr = err
		}
	}
	if answered > 0 {
		return nil, ErrNotFound
	}
	return nil, fmt.Errorf("memcache get: %w", m.orNoServer(lastErr))
}

// GetMulti implements Store as Get does for each key, in waves: each
// wave asks every server concerned at the same time, with one multi-get
// for all the keys it is next in line for. Usually one wave answers.
func (m *Memcache) GetMulti(ctx context.Context, keys []string) (map[string][]byte, error) {
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	type read struct {
		key, safe      string
		p              plan
		next, answered int
	}
	o := m.begin()
	defer o.finish(false)
	now := m.now()
	reads := make([]*read, 0, len(keys))
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		r := &read{key: k, safe: safeKey(k)}
		r.p = m.ring.plan(r.safe, false, now, o)
		reads = append(reads, r)
	}
	var lastErr error
	unanswered := 0
	for len(reads) > 0 {
		groups := map[*server][]*read{}
		var tasks []*task
		for _, r := range reads {
			if r.next >= r.p.n {
				if r.answered == 0 {
					unanswered++
				}
				continue
			}
			s := r.p.order[r.next]
			if groups[s] == nil {
				tasks = append(tasks, &task{s: s})
			}
			groups[s] = append(groups[s], r)
		}
		// Each task writes only its own element: no lock needed.
		results := make([]map[string]*memcache.Item, len(tasks))
		for i, t := range tasks {
			group := groups[t.s]
			ks := make([]string, len(group))
			for j, r := range group {
				ks[j] = r.safe
			}
			t.fn = func(c *memcache.Client) (err error) {
				results[i], err = c.GetMulti(ks)
				return err
			}
		}
		o.wave(tasks)
		var again []*read
		for i, t := range tasks {
			for _, r := range groups[t.s] {
				r.next++
				if t.err != nil {
					lastErr = t.err
					again = append(again, r)
					continue
				}
				if it, ok := results[i][r.safe]; ok {
					out[r.key] = it.Value
					continue
				}
				r.answered++
				again = append(again, r)
			}
		}
		reads = again
	}
	if unanswered > 0 {
		return nil, fmt.Errorf("memcache get: %w", m.orNoServer(lastErr))
	}
	return out, nil
}

// Set implements Store: the record goes to the key's replicas (a replica
// that fails is replaced by the next server in the ranking) and the key
// is deleted from every other server in use.
func (m *Memcache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	item, err := m.item(ctx, key, value, ttl)
	if err != nil {
		return err
	}
	k := item.Key
	set := func(c *memcache.Client) error { return c.Set(item) }
	o := m.begin()
	p := m.ring.plan(k, true, m.now(), o)
	stored, err := m.replicate(o, p, k, 0, p.n, set, nil)
	o.finish(len(stored) > 0)
	if len(stored) == 0 {
		return fmt.Errorf("memcache set: %w", m.orNoServer(err))
	}
	return nil
}

// replicate writes to want servers of p.order from position from on
// (replacing one that fails by the next), deleting the key from the
// servers after them and from p.others in the first wave. It returns the
// servers that stored the write and the last failure (nil when no write
// was tried or none failed). A write that memcached answers without
// storing (not stored, exists) is added to answered, when given, and
// fills its place.
func (m *Memcache) replicate(o *op, p plan, key string, from, want int, write func(*memcache.Client) error, answered *[]*task) (storedOn []*server, lastErr error) {
	del := func(c *memcache.Client) error { return c.Delete(key) }
	next := min(from+max(want, 0), len(p.order))
	tasks := tasksFor(p.order[min(from, next):next], write)
	writes := len(tasks)
	tasks = append(tasks, tasksFor(p.order[next:], del)...)
	tasks = append(tasks, tasksFor(p.others, del)...)
	for len(tasks) > 0 {
		o.wave(tasks)
		failed := 0
		for _, t := range tasks[:writes] {
			switch {
			case t.err == nil:
				storedOn = append(storedOn, t.s)
			case isAnswer(t.err):
				if answered != nil {
					*answered = append(*answered, t)
				}
				lastErr = t.err
			default:
				failed++
				lastErr = t.err
			}
		}
		tasks = nil
		for ; failed > 0 && next < len(p.order); failed-- {
			tasks = append(tasks, &task{s: p.order[next], fn: write})
			next++
		}
		writes = len(tasks)
	}
	return storedOn, lastErr
}

// decide runs fn on the servers of p.order in turn until one of the first
// p.n that answer succeeds. It returns that server's position (-1 when
// none did), how many answered otherwise (not stored, not found), and
// the last error.
func (m *Memcache) decide(o *op, p plan, fn func(*memcache.Client) error) (at, answered int, lastErr error) {
	for i, s := range p.order {
		if answered >= p.n {
			break
		}
		err := o.call(s, fn)
		switch {
		case err == nil:
			return i, answered, nil
		case isAnswer(err):
			answered++
			lastErr = err
		default:
			lastErr = err
		}
	}
	return -1, answered, m.orNoServer(lastErr)
}

// Add implements Store. The first replica that answers decides (a record
// there: ErrExists); the record is then added to the other replicas. A
// replica that already holds the key shows that it existed (the first
// one had lost it): the record is taken back and Add reports ErrExists.
func (m *Memcache) Add(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	item, err := m.item(ctx, key, value, ttl)
	if err != nil {
		return err
	}
	k := item.Key
	add := func(c *memcache.Client) error { return c.Add(item) }
	o := m.begin()
	p := m.ring.plan(k, true, m.now(), o)
	var first *server
	var lastErr error
	at := -1
	for i, s := range p.order {
		err := o.call(s, add)
		if err == nil {
			first, at = s, i
			break
		}
		if isAnswer(err) {
			// A definite answer: a server that failed before it may hold
			// this record, which nobody will be told exists.
			o.finish(true)
			return ErrExists
		}
		lastErr = err
	}
	if first == nil {
		o.finish(false)
		return fmt.Errorf("memcache add: %w", m.orNoServer(lastErr))
	}
	// The copies are added too, so that a replica that holds the key
	// reports it.
	var exists []*task
	copies, _ := m.replicate(o, p, k, at+1, p.n-1, add, &exists)
	if len(exists) > 0 {
		// Take ours back from wherever it went: only the record that was
		// there before stays.
		o.wave(tasksFor(append(copies, first), func(c *memcache.Client) error { return c.Delete(k) }))
		o.finish(true)
		return ErrExists
	}
	o.finish(true)
	return nil
}

// Replace implements Store with memcached's replace: the first replica,
// in ranking order, that holds the record decides; the others that hold
// it are replaced too, best effort, and the key is deleted from every
// other server in use. A replica that holds nothing is left empty:
// creating the record there could bring back one deleted meanwhile.
func (m *Memcache) Replace(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	item, err := m.item(ctx, key, value, ttl)
	if err != nil {
		return err
	}
	k := item.Key
	replace := func(c *memcache.Client) error { return c.Replace(item) }
	o := m.begin()
	p := m.ring.plan(k, true, m.now(), o)
	at, answered, err := m.decide(o, p, replace)
	if at < 0 {
		// Not found is a definite answer: a server that failed before it
		// may have replaced the record there.
		o.finish(answered > 0)
		if answered > 0 {
			return ErrNotFound
		}
		return fmt.Errorf("memcache replace: %w", err)
	}
	m.replicate(o, p, k, at+1, p.n-answered-1, replace, nil)
	o.finish(true)
	return nil
}

// Touch implements Store with memcached's touch: decided by the first
// replica that holds the record, applied to the others best effort. A
// touch changes no record, so servers that miss one need no flush.
func (m *Memcache) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := m.check(ctx); err != nil {
		return err
	}
	k := safeKey(key)
	exp := m.expiration(ttl)
	touch := func(c *memcache.Client) error { return c.Touch(k, exp) }
	o := m.begin()
	defer o.finish(false)
	p := m.ring.plan(k, false, m.now(), o)
	at, answered, err := m.decide(o, p, touch)
	if at < 0 {
		if answered > 0 {
			return ErrNotFound
		}
		return fmt.Errorf("memcache touch: %w", err)
	}
	o.wave(tasksFor(p.order[at+1:min(len(p.order), at+p.n-answered)], touch))
	return nil
}

// appendTries bounds, on one server, how many times Append creates a
// record that another Append created first, then appends to it and finds
// it gone again. Racing appends settle in one round; a record that is
// still not stored after these keeps being deleted meanwhile, or cannot
// grow (memcached answers an append past its item size limit with "not
// stored" too).
const appendTries = 3

// Append implements Store with memcached's append, atomic on each server,
// on the key's replicas: a replica that fails is replaced by the next
// server, and the key is deleted from every other server in use, as for
// Set. Memcached's append keeps the record's expiry: a touch follows it,
// on the same server. Which replicas already hold the record decides what
// is done on those that hold nothing:
//
//   - None does: the record is created on each replica with add, one
//     replica after the other in ranking order. An add that finds a
//     record (another Append created it meanwhile) appends to it instead,
//     so that concurrent first appends all end up on every replica.
//   - Some do: a replica ranked after the first that holds it gets the
//     record the same way (the entries from now on, better than nothing
//     should the first fail). A replica ranked before it is left empty,
//     as Replace leaves one: reads take the first record in ranking
//     order, and a record begun there (a server that came back empty)
//     would hide every earlier entry. It is asked to append once more,
//     for the case where another Append is creating the record: created
//     in ranking order, the record is there by now if it reached a later
//     replica.
//
// Append fails when no replica stored the value.
func (m *Memcache) Append(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	item, err := m.item(ctx, key, value, ttl)
	if err != nil {
		return err
	}
	k := item.Key
	appendTo := func(c *memcache.Client) error {
		if err := c.Append(item); err != nil {
			return err
		}
		// A record gone before its touch was deleted after the append:
		// the append happened, and the delete that followed it wins.
		if err := c.Touch(k, item.Expiration); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
			return err
		}
		return nil
	}
	create := func(c *memcache.Client) error {
		var err error
		for range appendTries {
			if err = c.Add(item); !errors.Is(err, memcache.ErrNotStored) {
				return err
			}
			if err = appendTo(c); !errors.Is(err, memcache.ErrNotStored) {
				return err
			}
		}
		return err
	}
	o := m.begin()
	p := m.ring.plan(k, true, m.now(), o)
	// empty: the replicas that answered the append with "not stored",
	// in ranking order (replicate tries replacements after the servers
	// they replace).
	var empty []*task
	stored, lastErr := m.replicate(o, p, k, 0, p.n, appendTo, &empty)
	if len(stored) == 0 && len(empty) == 0 {
		o.finish(false)
		return fmt.Errorf("memcache append: %w", m.orNoServer(lastErr))
	}
	rank := make(map[*server]int, len(p.order))
	for i, s := range p.order {
		rank[s] = i
	}
	var tasks []*task
	if len(stored) == 0 {
		for _, t := range empty {
			tasks = append(tasks, &task{s: t.s, fn: create})
		}
		// One after the other, in ranking order: see above.
		for _, t := range tasks {
			t.err = o.call(t.s, t.fn)
		}
	} else {
		first := len(p.order)
		for _, s := range stored {
			first = min(first, rank[s])
		}
		for _, t := range empty {
			fn := create
			if rank[t.s] < first {
				fn = appendTo
			}
			tasks = append(tasks, &task{s: t.s, fn: fn})
		}
		o.wave(tasks)
	}
	notStored := false
	for _, t := range tasks {
		switch {
		case t.err == nil:
			stored = append(stored, t.s)
		case isAnswer(t.err):
			notStored = true
		default:
			lastErr = t.err
		}
	}
	o.finish(len(stored) > 0)
	if len(stored) > 0 {
		return nil
	}
	if notStored {
		return fmt.Errorf("memcache append: not stored after %d tries: the record would exceed memcached's item size limit, or is being deleted meanwhile", appendTries)
	}
	return fmt.Errorf("memcache append: %w", lastErr)
}

// Delete implements Store: the key is deleted from every server in use.
// It fails only when no server answered; a replica that failed is set
// aside and flushed before it is used again.
func (m *Memcache) Delete(ctx context.Context, key string) error {
	if err := m.check(ctx); err != nil {
		return err
	}
	k := safeKey(key)
	del := func(c *memcache.Client) error { return c.Delete(k) }
	o := m.begin()
	p := m.ring.plan(k, true, m.now(), o)
	tasks := tasksFor(append(p.order, p.others...), del)
	o.wave(tasks)
	answered := 0
	var lastErr error
	for _, t := range tasks {
		if t.err == nil || isAnswer(t.err) {
			answered++
		} else {
			lastErr = t.err
		}
	}
	o.finish(answered > 0)
	if answered == 0 {
		return fmt.Errorf("memcache delete: %w", m.orNoServer(lastErr))
	}
	return nil
}

// Ping implements Store: ready while at least one server is in use.
// When every server is set aside it asks them directly, so readiness does
// not wait for the probe either. With no server at all (names that did
// not resolve) it says so.
func (m *Memcache) Ping(ctx context.Context) error {
	if err := m.check(ctx); err != nil {
		return err
	}
	if m.ring.upMembers() > 0 {
		return nil
	}
	if m.ring.memberCount() == 0 {
		return m.orNoServer(nil)
	}
	for _, s := range m.ring.downServers(true) {
		if n, _, busy := m.ring.state(s); n == 0 && !busy && m.alive(s.addr) && m.ring.markUp(s, false, 0) {
			return nil
		}
	}
	return errors.New("memcache: no server reachable")
}

// probe re-checks servers that were set aside and brings them back,
// flushed first when they missed writes while away.
func (m *Memcache) probe(every time.Duration) {
	defer m.done.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		var wg sync.WaitGroup
		for _, s := range m.ring.downServers(false) {
			wg.Add(1)
			go func() { defer wg.Done(); m.recover(s) }()
		}
		wg.Wait()
	}
}

// recover brings server s back if it answers, flushing it first when it
// missed writes or deletes while set aside.
func (m *Memcache) recover(s *server) bool {
	missed, isDown, busy := m.ring.state(s)
	if !isDown {
		return true
	}
	if busy || !m.alive(s.addr) {
		return false
	}
	if missed > 0 {
		if err := m.flushAll(s.addr); err != nil {
			return false
		}
	}
	_ = s.client.Close()
	if !m.ring.markUp(s, missed > 0, missed) {
		return false
	}
	m.log.Info("memcached server in use again", "server", s.addr, "flushed", missed > 0)
	return true
}

// alive asks a server for its version over a fresh connection.
func (m *Memcache) alive(addr string) bool {
	line, err := m.command(addr, "version")
	return err == nil && strings.HasPrefix(line, "VERSION")
}

// flushAll empties a server over a fresh connection.
func (m *Memcache) flushAll(addr string) error {
	line, err := m.command(addr, "flush_all")
	if err != nil {
		return err
	}
	if line != "OK\r\n" {
		return fmt.Errorf("memcache: flush_all answered %q", strings.TrimSpace(line))
	}
	return nil
}

// command sends one text-protocol command to addr over a fresh
// connection (TLS when configured, like every other) and returns the
// first line of the answer. The health probe and flushes use it, so that
// they never share a pooled connection with requests.
func (m *Memcache) command(addr, cmd string) (string, error) {
	timeout := max(m.timeout, probeTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := m.dial(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(conn).ReadString('\n')
}
