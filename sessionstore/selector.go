package sessionstore

import (
	"hash/fnv"
	"net"
	"sort"
	"sync"
	"time"
)

// rendezvous picks a memcached server for each key by highest random
// weight: every key ranks every server by a hash of (server, key) and goes
// to the best one that is up. Adding or removing one of N servers moves
// only about 1/N of the keys, where gomemcache's default (crc32 % N)
// moves almost all of them and so logs almost everyone out.
//
// It also remembers what a server that was set aside missed. While a
// server is down its keys go to the next server in their ranking; a write
// or delete sent there instead is one the down server never saw, so when
// it comes back it holds records that were changed or deleted meanwhile
// (a signed-out session, a replaced sign-out-everywhere generation). Such
// a server must be flushed before it is used again.
type rendezvous struct {
	addrs []net.Addr
	names []string

	mu   sync.Mutex
	down map[int]*downState // set-aside servers by index
}

// downState is what is known about a server set aside.
type downState struct {
	since time.Time
	// missed counts writes and deletes routed away from the server while
	// it was down: more than zero means it holds stale records and must be
	// flushed before it is used again.
	missed uint64
	// trying is set while a request tries the server although it is set
	// aside (every server is), so that requests do not pile up on it.
	trying bool
	// retryAfter holds further tries off after one that failed slowly (a
	// hung server), so that not every request waits for the timeout.
	retryAfter time.Time
	// displaced are the keys written or deleted on another server (the
	// value) while this one was down. Those copies go stale once this
	// server is back (a later sign-out reaches it, not them) and would
	// come back to life if it failed again, so they are deleted from
	// their fallback server before this one is used again. Past
	// maxDisplaced keys, overflowed says to flush the fallbacks instead.
	displaced  map[string]int
	overflowed map[int]bool
}

// maxDisplaced bounds the keys remembered per server set aside.
const maxDisplaced = 100_000

func (d *downState) displace(key string, to int) {
	if d.displaced == nil {
		d.displaced = map[string]int{}
	}
	if _, ok := d.displaced[key]; ok || len(d.displaced) < maxDisplaced {
		d.displaced[key] = to
		return
	}
	if d.overflowed == nil {
		d.overflowed = map[int]bool{}
	}
	d.overflowed[to] = true
}

func newRendezvous(servers []string) (*rendezvous, error) {
	r := &rendezvous{down: map[int]*downState{}}
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

// rank returns the server indexes in key's order of preference.
func (r *rendezvous) rank(key string) []int {
	ws := make([]uint64, len(r.names))
	order := make([]int, len(r.names))
	for i, name := range r.names {
		ws[i], order[i] = weight(name, key), i
	}
	sort.Slice(order, func(a, b int) bool {
		if ws[order[a]] != ws[order[b]] {
			return ws[order[a]] > ws[order[b]]
		}
		return order[a] < order[b]
	})
	return order
}

// pick returns the index of the best server for key that is up, or -1.
func (r *rendezvous) pick(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, i := range r.rank(key) {
		if _, isDown := r.down[i]; !isDown {
			return i
		}
	}
	return -1
}

// route chooses the server for one operation on key: the best-ranked one
// that is up. When every server is set aside there is nothing to fail
// over to, so it returns the best-ranked one that missed nothing and is
// not already being tried, with try set: a request succeeds as soon as
// memcached is back, without waiting for the probe. The caller must
// report the outcome of a try with done. A write or delete (mutates)
// marks every set-aside server ranked above the chosen one as having
// missed it. It returns -1 when no server may be used.
func (r *rendezvous) route(key string, mutates bool, now time.Time) (server int, try bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	order := r.rank(key)
	chosen := -1
	for pos, i := range order {
		if _, isDown := r.down[i]; !isDown {
			chosen = pos
			break
		}
	}
	if chosen < 0 {
		for pos, i := range order {
			d := r.down[i]
			if d.missed == 0 && !d.trying && !now.Before(d.retryAfter) {
				chosen, try = pos, true
				d.trying = true
				break
			}
		}
	}
	if chosen < 0 {
		return -1, false
	}
	if mutates {
		for _, i := range order[:chosen] {
			r.down[i].missed++
			r.down[i].displace(key, order[chosen])
		}
	}
	return order[chosen], try
}

// done records the outcome of an operation on server i: a network
// failure sets it aside (and, when slow, holds tries off for backoff); a
// try that worked brings it back unless it missed writes meanwhile. It
// reports whether the server was newly set aside.
func (r *rendezvous) done(i int, try, failed, slow bool, now time.Time, backoff time.Duration) (newlyDown bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, isDown := r.down[i]
	if try && isDown {
		d.trying = false
	}
	if failed {
		if !isDown {
			d = &downState{since: now}
			r.down[i] = d
		}

		if slow {
			d.retryAfter = now.Add(backoff)
		}
		return !isDown
	}
	if try && isDown && d.missed == 0 {
		delete(r.down, i)
	}
	return false
}

// markDown sets server i aside.
func (r *rendezvous) markDown(i int, now time.Time) {
	r.done(i, false, true, false, now, 0)
}

// missed returns how many writes server i missed while set aside, the
// keys written elsewhere instead (by fallback server) and the fallback
// servers to flush because too many were, and whether it is set aside.
func (r *rendezvous) missed(i int) (n uint64, displaced map[string]int, flush []int, isDown bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, isDown := r.down[i]
	if !isDown {
		return 0, nil, nil, false
	}
	displaced = make(map[string]int, len(d.displaced))
	for k, v := range d.displaced {
		displaced[k] = v
	}
	for j := range d.overflowed {
		flush = append(flush, j)
	}
	sort.Ints(flush)
	return d.missed, displaced, flush, true
}

// mustFlush makes server i, if it is set aside, flushed before it is used
// again; it reports whether i is set aside.
func (r *rendezvous) mustFlush(i int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, isDown := r.down[i]
	if isDown {
		d.missed++
	}
	return isDown
}

// markUp brings server i back, unless it missed more writes than the
// missed count its caller flushed away (more may have arrived meanwhile).
func (r *rendezvous) markUp(i int, flushed uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, isDown := r.down[i]
	if !isDown {
		return true
	}
	if d.missed != flushed {
		return false
	}
	delete(r.down, i)
	return true
}

func (r *rendezvous) downServers() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]int, 0, len(r.down))
	for i := range r.down {
		out = append(out, i)
	}
	sort.Ints(out)
	return out
}

func (r *rendezvous) upCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.addrs) - len(r.down)
}
