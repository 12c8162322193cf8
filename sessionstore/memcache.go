package sessionstore

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// ErrTooLarge is returned for a value memcached would refuse (its default
// item size limit is 1 MB).
var ErrTooLarge = errors.New("sessionstore: record larger than memcached's 1 MB item limit")

// errNoServer means every server is set aside and none may be tried now.
var errNoServer = errors.New("memcache: no server available")

const (
	maxItemSize  = 1<<20 - 512 // room for the key and item header
	maxKeyLen    = 250
	maxRelative  = 30 * 24 * time.Hour // longer expirations are absolute Unix times
	probeEvery   = 500 * time.Millisecond
	probeTimeout = 250 * time.Millisecond
)

// Memcache is a Store in memcached, shared by every replica. Servers are
// chosen by rendezvous hashing; a server that fails is set aside (its keys
// go to the next-best server) until a background probe finds it again. A
// server that missed writes or deletes while set aside is flushed before
// it is used again, so nothing ended meanwhile comes back from it. When
// every server is set aside, requests try them anyway: with one server
// there is nothing to fail over to, and waiting for the probe would only
// refuse requests a working memcached could answer.
type Memcache struct {
	clients  []*memcache.Client // one per server, same index as the selector's
	selector *rendezvous
	timeout  time.Duration
	backoff  time.Duration // after a slow failure, tries wait this long
	stop     chan struct{}
	done     sync.WaitGroup
	now      func() time.Time
}

// NewMemcache connects to the configured servers. Call Close to stop the
// background health probe.
func NewMemcache(cfg MemcacheConfig) (*Memcache, error) {
	return newMemcache(cfg, probeEvery)
}

// newMemcache is NewMemcache with the probe's interval; 0 runs no probe
// (tests that must see what requests alone do).
func newMemcache(cfg MemcacheConfig, probeInterval time.Duration) (*Memcache, error) {
	sel, err := newRendezvous(cfg.Servers)
	if err != nil {
		return nil, err
	}
	m := &Memcache{selector: sel, timeout: cfg.Timeout, backoff: probeEvery, stop: make(chan struct{}), now: time.Now}
	if m.timeout <= 0 {
		m.timeout = memcache.DefaultTimeout
	}
	for _, addr := range sel.addrs {
		c := memcache.NewFromSelector(oneServer{addr})
		c.Timeout = cfg.Timeout
		c.MaxIdleConns = cfg.MaxIdleConns
		m.clients = append(m.clients, c)
	}
	if probeInterval > 0 {
		m.done.Add(1)
		go m.probe(probeInterval)
	}
	return m, nil
}

// oneServer is a memcache.ServerSelector of one address: the store picks
// the server itself, so that it knows which one answered.
type oneServer struct{ addr net.Addr }

func (s oneServer) PickServer(string) (net.Addr, error) { return s.addr, nil }
func (s oneServer) Each(f func(net.Addr) error) error   { return f(s.addr) }

// Close stops the health probe and closes idle connections.
func (m *Memcache) Close() error {
	close(m.stop)
	m.done.Wait()
	for _, c := range m.clients {
		_ = c.Close()
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

// run performs op for key on the server chosen for it, setting the server
// aside on a network failure. mutates says whether op writes or deletes.
func (m *Memcache) run(ctx context.Context, key string, mutates bool, op func(c *memcache.Client, key string) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key = safeKey(key)
	server, try := m.selector.route(key, mutates, m.now())
	if server < 0 {
		return errNoServer
	}
	start := m.now()
	err := op(m.clients[server], key)
	failed := err != nil && isNetworkError(err)
	// A failure that took about the timeout is a hung server: hold tries
	// off for a while so that not every request waits for it.
	slow := failed && m.now().Sub(start) >= m.timeout/2
	if m.selector.done(server, try, failed, slow, m.now(), m.backoff) {
		// Its idle connections are dead or stale; when it comes back,
		// start afresh rather than fail once per pooled connection.
		_ = m.clients[server].Close()
	}
	return err
}

func isNetworkError(err error) bool {
	if errors.Is(err, memcache.ErrCacheMiss) || errors.Is(err, memcache.ErrNotStored) || errors.Is(err, memcache.ErrCASConflict) {
		return false
	}
	var ne net.Error
	var ce *memcache.ConnectTimeoutError
	return errors.As(err, &ne) || errors.As(err, &ce) || errors.Is(err, memcache.ErrServerError) ||
		strings.Contains(err.Error(), "connection") || strings.Contains(err.Error(), "EOF")
}

// Get implements Store.
func (m *Memcache) Get(ctx context.Context, key string) ([]byte, error) {
	var value []byte
	err := m.run(ctx, key, false, func(c *memcache.Client, k string) error {
		it, err := c.Get(k)
		if err == nil {
			value = it.Value
		}
		return err
	})
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("memcache get: %w", err)
	}
	return value, nil
}

// GetMulti implements Store: keys are grouped by the server chosen for
// them and each group is one multi-get; groups on different servers are
// asked at the same time, so the request costs one round trip.
func (m *Memcache) GetMulti(ctx context.Context, keys []string) (map[string][]byte, error) {
	groups := map[int][]string{}
	for _, k := range keys {
		server := m.selector.pick(safeKey(k))
		groups[server] = append(groups[server], k)
	}
	out := make(map[string][]byte, len(keys))
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	fetch := func(group []string) {
		safe := make([]string, len(group))
		original := make(map[string]string, len(group))
		for i, k := range group {
			safe[i] = safeKey(k)
			original[safe[i]] = k
		}
		// Routed by the group's first key: every key in the group was
		// picked for the same server.
		err := m.run(ctx, group[0], false, func(c *memcache.Client, _ string) error {
			items, err := c.GetMulti(safe)
			if err != nil {
				return err
			}
			mu.Lock()
			for k, it := range items {
				out[original[k]] = it.Value
			}
			mu.Unlock()
			return nil
		})
		if err != nil {
			mu.Lock()
			if firstErr == nil {
				firstErr = fmt.Errorf("memcache get: %w", err)
			}
			mu.Unlock()
		}
	}
	n := 0
	for _, group := range groups {
		n++
		if n == len(groups) {
			fetch(group) // the last group on this goroutine
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); fetch(group) }()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// Set implements Store.
func (m *Memcache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if len(value) > maxItemSize {
		return ErrTooLarge
	}
	err := m.run(ctx, key, true, func(c *memcache.Client, k string) error {
		return c.Set(&memcache.Item{Key: k, Value: value, Expiration: m.expiration(ttl)})
	})
	if err != nil {
		return fmt.Errorf("memcache set: %w", err)
	}
	return nil
}

// Add implements Store.
func (m *Memcache) Add(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if len(value) > maxItemSize {
		return ErrTooLarge
	}
	err := m.run(ctx, key, true, func(c *memcache.Client, k string) error {
		return c.Add(&memcache.Item{Key: k, Value: value, Expiration: m.expiration(ttl)})
	})
	if errors.Is(err, memcache.ErrNotStored) {
		return ErrExists
	}
	if err != nil {
		return fmt.Errorf("memcache add: %w", err)
	}
	return nil
}

// Replace implements Store with memcached's replace: stored only if the
// server holds the key.
func (m *Memcache) Replace(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if len(value) > maxItemSize {
		return ErrTooLarge
	}
	err := m.run(ctx, key, true, func(c *memcache.Client, k string) error {
		return c.Replace(&memcache.Item{Key: k, Value: value, Expiration: m.expiration(ttl)})
	})
	if errors.Is(err, memcache.ErrNotStored) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("memcache replace: %w", err)
	}
	return nil
}

// Touch implements Store with memcached's touch.
func (m *Memcache) Touch(ctx context.Context, key string, ttl time.Duration) error {
	err := m.run(ctx, key, true, func(c *memcache.Client, k string) error {
		return c.Touch(k, m.expiration(ttl))
	})
	if errors.Is(err, memcache.ErrCacheMiss) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("memcache touch: %w", err)
	}
	return nil
}

// Delete implements Store.
func (m *Memcache) Delete(ctx context.Context, key string) error {
	err := m.run(ctx, key, true, func(c *memcache.Client, k string) error { return c.Delete(k) })
	if err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		return fmt.Errorf("memcache delete: %w", err)
	}
	return nil
}

// Ping implements Store: ready while at least one server is up, since
// sessions on the others keep working. When every server is set aside it
// asks them directly, so readiness does not wait for the probe either.
func (m *Memcache) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.selector.upCount() > 0 {
		return nil
	}
	for _, i := range m.selector.downServers() {
		if n, _, _, _ := m.selector.missed(i); n == 0 && alive(m.selector.names[i]) && m.selector.markUp(i, 0) {
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
		for _, i := range m.selector.downServers() {
			m.recover(i)
		}
	}
}

// recover brings server i back if it answers, flushing it first when it
// missed writes or deletes while set aside, and deleting the copies
// written to other servers in its place (they would be stale from now on,
// and served again if it failed once more).
func (m *Memcache) recover(i int) bool {
	missed, displaced, overflowed, isDown := m.selector.missed(i)
	if !isDown {
		return true
	}
	addr := m.selector.names[i]
	if !alive(addr) {
		return false
	}
	if missed > 0 {
		if err := flushAll(addr, m.timeout); err != nil {
			return false
		}
	}
	for key, fallback := range displaced {
		if m.selector.mustFlush(fallback) {
			continue // down itself: it is flushed when it comes back
		}
		if err := m.clients[fallback].Delete(key); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
			return false // try again at the next probe
		}
	}
	for _, fallback := range overflowed {
		if m.selector.mustFlush(fallback) {
			continue
		}
		if err := flushAll(m.selector.names[fallback], m.timeout); err != nil {
			return false
		}
	}
	_ = m.clients[i].Close()
	return m.selector.markUp(i, missed)
}

// alive asks a server for its version over a fresh connection.
func alive(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, probeTimeout)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(probeTimeout))
	if _, err := conn.Write([]byte("version\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	return err == nil && strings.HasPrefix(string(buf[:n]), "VERSION")
}

// flushAll empties a server over a fresh connection.
func flushAll(addr string, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte("flush_all\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "OK\r\n" {
		return fmt.Errorf("memcache: flush_all answered %q", strings.TrimSpace(line))
	}
	return nil
}
