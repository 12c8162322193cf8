package sessionstore

import (
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

const (
	maxItemSize  = 1<<20 - 512 // room for the key and item header
	maxKeyLen    = 250
	maxRelative  = 30 * 24 * time.Hour // longer expirations are absolute Unix times
	probeEvery   = 500 * time.Millisecond
	probeTimeout = 250 * time.Millisecond
)

// Memcache is a Store in memcached, shared by every replica. Servers are
// chosen by rendezvous hashing; a server that fails is set aside (its keys
// go to the next-best server) until a background probe finds it again.
type Memcache struct {
	client   *memcache.Client
	selector *rendezvous
	stop     chan struct{}
	done     sync.WaitGroup
	now      func() time.Time
}

// NewMemcache connects to the configured servers. Call Close to stop the
// background health probe.
func NewMemcache(cfg MemcacheConfig) (*Memcache, error) {
	sel, err := newRendezvous(cfg.Servers)
	if err != nil {
		return nil, err
	}
	c := memcache.NewFromSelector(sel)
	c.Timeout = cfg.Timeout
	c.MaxIdleConns = cfg.MaxIdleConns
	m := &Memcache{client: c, selector: sel, stop: make(chan struct{}), now: time.Now}
	m.done.Add(1)
	go m.probe()
	return m, nil
}

// Close stops the health probe.
func (m *Memcache) Close() error {
	close(m.stop)
	m.done.Wait()
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

// run performs op for key, setting aside the server on a network failure.
func (m *Memcache) run(ctx context.Context, key string, op func(key string) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key = safeKey(key)
	server := m.selector.pick(key)
	if server < 0 {
		return fmt.Errorf("memcache: no server available")
	}
	err := op(key)
	if err != nil && isNetworkError(err) {
		m.selector.markDown(server)
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
	err := m.run(ctx, key, func(k string) error {
		it, err := m.client.Get(k)
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

// Set implements Store.
func (m *Memcache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if len(value) > maxItemSize {
		return ErrTooLarge
	}
	err := m.run(ctx, key, func(k string) error {
		return m.client.Set(&memcache.Item{Key: k, Value: value, Expiration: m.expiration(ttl)})
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
	err := m.run(ctx, key, func(k string) error {
		return m.client.Add(&memcache.Item{Key: k, Value: value, Expiration: m.expiration(ttl)})
	})
	if errors.Is(err, memcache.ErrNotStored) {
		return ErrExists
	}
	if err != nil {
		return fmt.Errorf("memcache add: %w", err)
	}
	return nil
}

// Delete implements Store.
func (m *Memcache) Delete(ctx context.Context, key string) error {
	err := m.run(ctx, key, func(k string) error { return m.client.Delete(k) })
	if err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		return fmt.Errorf("memcache delete: %w", err)
	}
	return nil
}

// Ping implements Store: ready while at least one server is up, since
// sessions on the others keep working.
func (m *Memcache) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.selector.upCount() == 0 {
		return errors.New("memcache: no server reachable")
	}
	return nil
}

// probe re-checks servers that were set aside, and brings them back.
func (m *Memcache) probe() {
	defer m.done.Done()
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		for _, i := range m.selector.downServers() {
			if alive(m.selector.names[i]) {
				m.selector.markUp(i)
			}
		}
	}
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
