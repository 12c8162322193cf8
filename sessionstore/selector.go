package sessionstore

import (
	"hash/fnv"
	"net"
	"sync"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// rendezvous picks a memcached server for each key by highest random
// weight: every key ranks every server by a hash of (server, key) and goes
// to the best one that is up. Adding or removing one of N servers moves
// only about 1/N of the keys, where gomemcache's default (crc32 % N)
// moves almost all of them and so logs almost everyone out.
type rendezvous struct {
	addrs []net.Addr
	names []string

	mu   sync.RWMutex
	down map[int]time.Time // server index -> marked down at
}

func newRendezvous(servers []string) (*rendezvous, error) {
	r := &rendezvous{down: map[int]time.Time{}}
	for _, s := range servers {
		addr, err := net.ResolveTCPAddr("tcp", s)
		if err != nil {
			return nil, err
		}
		r.addrs = append(r.addrs, addr)
		r.names = append(r.names, s)
	}
	return r, nil
}

func weight(server, key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(server))
	h.Write([]byte{0})
	h.Write([]byte(key))
	// fnv's low bits mix poorly for similar inputs; finish with a
	// splitmix64 step so weights are well spread.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// pick returns the index of the best server for key that is up, or -1.
func (r *rendezvous) pick(key string) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	best, bestW := -1, uint64(0)
	for i, name := range r.names {
		if _, isDown := r.down[i]; isDown {
			continue
		}
		if w := weight(name, key); best == -1 || w > bestW {
			best, bestW = i, w
		}
	}
	return best
}

// PickServer implements memcache.ServerSelector.
func (r *rendezvous) PickServer(key string) (net.Addr, error) {
	i := r.pick(key)
	if i < 0 {
		return nil, memcache.ErrNoServers
	}
	return r.addrs[i], nil
}

// Each implements memcache.ServerSelector.
func (r *rendezvous) Each(f func(net.Addr) error) error {
	for _, a := range r.addrs {
		if err := f(a); err != nil {
			return err
		}
	}
	return nil
}

func (r *rendezvous) markDown(i int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.down[i]; !ok {
		r.down[i] = time.Now()
	}
}

func (r *rendezvous) markUp(i int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.down, i)
}

func (r *rendezvous) downServers() []int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]int, 0, len(r.down))
	for i := range r.down {
		out = append(out, i)
	}
	return out
}

func (r *rendezvous) upCount() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.addrs) - len(r.down)
}
