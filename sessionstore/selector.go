package sessionstore

import (
	"cmp"
	"hash/fnv"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// The ring: which memcached servers hold a key, and what is known about
// each server.
//
// Every key ranks the member servers by a hash of (server, key)
// (rendezvous hashing) and lives on the first `replicas` of them that are
// in use. Adding or removing one of N servers changes the ranking only
// for the keys that server is (or was) among the first of, where
// gomemcache's default (crc32 % N) moves almost every key.
//
// Why no stale record can be served. A record is stale on a server when
// a later write or delete of its key did not reach that server. The
// store keeps one invariant:
//
//	every server in use holds, for every key, the key's current record
//	or nothing.
//
// Reads may then take the first record found, in ranking order, and fall
// through a server that has nothing (one that came back empty, one new to
// the key) to the next replica: whatever they find is current. It holds
// because:
//
//   - A write or delete goes to the key's replicas and deletes the key
//     from every other server in use (members beyond the replicas, and
//     servers joining or leaving). So a server that drops out of a key's
//     replicas, because another server came back or joined ahead of it,
//     loses its copy at the key's next change, and until then its copy is
//     the current one. A server that becomes a replica again can hold
//     nothing older than the current record.
//   - A server that cannot be reached is set aside. Every write or delete
//     made while it is set aside, and every one that failed on it while
//     the operation gave a definite answer, counts as missed; a server that
//     missed any is emptied (flush_all) before it is used again. A server
//     that only missed reads keeps its records, which are still current.
//     A set-aside server is brought back only when no operation that
//     touched it is still running (so none can record a miss, or land a
//     write, after the flush), and, when it was not flushed, only if it
//     missed nothing meanwhile.
//   - A server found by discovery after the store started may hold
//     anything (it may be one that left and came back with its old
//     records), so it is flushed first. It then only receives deletes
//     for joinDelay (three resolve intervals) before it is ranked, and a
//     server that discovery no longer lists keeps receiving deletes for
//     as long before it is forgotten. Other Gatehouse replicas resolve on
//     their own clocks: the delays make sure that by the time any of them
//     reads from or writes to a server, every other one already sends it
//     its deletes, and that a server one of them still reads from keeps
//     receiving the others' deletes.
//   - Touch changes no value: a server that missed one holds an earlier
//     expiry, so its copy only goes away sooner.
//
// Limits. Each Gatehouse process sets servers aside on its own: a server
// that one process cannot reach while another can still misses the
// first one's deletes until the first one brings it back and flushes it.
// A record is not copied again to a replica that lost it (restarted or
// flushed): a read that finds it on the next replica does not write it
// back, because a sign-out racing with that write-back could resurrect
// the record. Its redundancy is back when it is next created or set.
// The delays apply to changes discovery sees while running: the servers
// of a static list, and a name's first answer, are used at once, so
// Gatehouse processes started with different lists (a rolling restart
// that changes a static list) may, until the last one restarted, read
// copies the others no longer keep current; change a static list with
// every replica stopped, or use dns+/dnssrv+.
type ring struct {
	replicas int

	mu      sync.Mutex
	servers map[string]*server
	members []*server // role member, by address
	all     []*server // every known server, by address
}

// role is what a known server is used for.
type role uint8

const (
	member  role = iota // ranked for every key
	joining             // found by discovery: receives deletes only, until promoted
	leaving             // no longer found: receives deletes only, until forgotten
)

func (r role) String() string {
	return [...]string{"member", "joining", "leaving"}[r]
}

// server is one memcached address the store knows.
type server struct {
	addr   string // identity in the ranking, and what is dialled
	client *memcache.Client

	// Guarded by ring.mu.
	role  role
	until time.Time  // joining: promoted then; leaving: forgotten then
	down  *downState // set aside when not nil
	// touched counts operations running that have touched the server
	// (called it, or skipped it because it was set aside). It must be 0
	// to bring the server back: such an operation may still land a write
	// on it or find that it missed one.
	touched int
}

// downState is what is known about a server set aside.
type downState struct {
	// missed counts writes and deletes the server did not get while set
	// aside: more than zero means it must be flushed before it is used
	// again.
	missed uint64
	// trying is set while a request tries the server although it is set
	// aside (when every server is), so that requests do not pile up on it.
	trying bool
	// retryAfter holds further tries off after one that failed slowly (a
	// hung server), so that not every request waits for the timeout.
	retryAfter time.Time
}

func newRing(replicas int) *ring {
	return &ring{replicas: replicas, servers: map[string]*server{}}
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

// rankServers orders servers by key's preference (ties, which need a hash
// collision, by address). It is on every request's path: one weight per
// server, and no reflection in the sort.
func rankServers(servers []*server, key string) []*server {
	type ranked struct {
		s *server
		w uint64
	}
	rs := make([]ranked, len(servers))
	for i, s := range servers {
		rs[i] = ranked{s, weight(s.addr, key)}
	}
	slices.SortFunc(rs, func(a, b ranked) int {
		if c := cmp.Compare(b.w, a.w); c != 0 {
			return c
		}
		return strings.Compare(a.s.addr, b.s.addr)
	})
	out := make([]*server, len(rs))
	for i, r := range rs {
		out[i] = r.s
	}
	return out
}

// plan is where one operation on one key goes.
type plan struct {
	// order holds the members in use in the key's ranking order: the
	// first n that answer are its replicas.
	order []*server
	n     int
	// others are the servers in use that are not members (joining or
	// leaving): writes and deletes delete the key there.
	others []*server
	// try is set when no member is in use and order is one set-aside
	// server that this operation tries.
	try bool
}

// plan chooses the servers for one operation on key. A write or delete
// (mutates) counts as missed by every server set aside. When no member is
// in use, it returns one set-aside member to try (among the key's
// replicas by ranking, one that missed nothing and is not already being
// tried by another operation), claimed for o.
func (r *ring) plan(key string, mutates bool, now time.Time, o *op) plan {
	r.mu.Lock()
	defer r.mu.Unlock()
	var p plan
	ranked := rankServers(r.members, key)
	// Filtered in place: when no member is in use nothing is written, and
	// ranked is still whole for choosing one to try.
	p.order = ranked[:0]
	for _, s := range ranked {
		if s.down == nil {
			p.order = append(p.order, s)
		}
	}
	if len(p.order) == 0 {
		for _, s := range ranked[:min(r.replicas, len(ranked))] {
			d := s.down
			if d.missed == 0 && (!d.trying || o.tries[s]) && !now.Before(d.retryAfter) {
				d.trying = true
				if o.tries == nil {
					o.tries = map[*server]bool{}
				}
				o.tries[s] = true
				p.order, p.try = []*server{s}, true
				break
			}
		}
	}
	for _, s := range r.all {
		switch {
		case s.down != nil && mutates && !(p.try && s == p.order[0]):
			s.down.missed++
		case s.down == nil && s.role != member:
			p.others = append(p.others, s)
		}
	}
	p.n = min(r.replicas, len(p.order))
	return p
}

// enter records that o is about to call s, and reports whether it may:
// s is in use, or set aside and claimed by o for a try. An operation that
// may not call s must treat it as failed.
func (r *ring) enter(s *server, o *op) (ok, try bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s.touched++
	if s.down == nil {
		return true, false
	}
	if o.tries[s] && s.down.trying {
		return true, true
	}
	return false, false
}

// fail sets s aside after a failed call (when slow, holding tries off for
// backoff) and reports whether it was newly set aside.
func (r *ring) fail(s *server, try, slow bool, now time.Time, backoff time.Duration) (newlyDown bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.down == nil {
		s.down = &downState{}
		newlyDown = true
	}
	if try {
		s.down.trying = false
	}
	if slow {
		s.down.retryAfter = now.Add(backoff)
	}
	return newlyDown
}

// tried records that a try of s answered: s is used again unless it
// missed writes meanwhile.
func (r *ring) tried(s *server, o *op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(o.tries, s)
	if s.down == nil {
		return
	}
	s.down.trying = false
	if s.down.missed == 0 {
		s.down = nil
	}
}

// finish ends operation o: it releases the servers it touched, the tries
// it claimed and, when a write or delete answered (see op.finish), counts
// a miss for every server it failed on or skipped.
func (r *ring) finish(o *op, answered bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range o.touched {
		s.touched--
	}
	for s := range o.tries {
		if s.down != nil {
			s.down.trying = false
		}
	}
	if answered {
		for _, s := range o.failed {
			if s.down != nil {
				s.down.missed++
			}
		}
	}
}

// state returns how many writes s missed, whether it is set aside,
// and whether an operation that touched it is still running.
func (r *ring) state(s *server) (missed uint64, isDown, busy bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.down == nil {
		return 0, false, s.touched > 0
	}
	return s.down.missed, true, s.touched > 0
}

// markUp brings s back. It refuses while an operation that touched s is
// running and, when s was not flushed, if it missed a write since
// missedSeen was read.
func (r *ring) markUp(s *server, flushed bool, missedSeen uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.down == nil {
		return true
	}
	if s.touched > 0 || (!flushed && s.down.missed != missedSeen) {
		return false
	}
	s.down = nil
	return true
}

// downServers lists the servers set aside (only members when
// membersOnly).
func (r *ring) downServers(membersOnly bool) []*server {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*server
	for _, s := range r.all {
		if s.down != nil && (!membersOnly || s.role == member) {
			out = append(out, s)
		}
	}
	return out
}

// upMembers is how many members are in use.
func (r *ring) upMembers() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.members {
		if s.down == nil {
			n++
		}
	}
	return n
}

// memberCount is how many members there are, in use or not.
func (r *ring) memberCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.members)
}

// ringChange is what one update did.
type ringChange struct {
	addr     string
	from, to string // roles; "" for unknown (new) or forgotten
}

// update makes the known servers follow the addresses discovery lists
// now (live). Addresses in immediate become members at once (the first
// answer for a name: other Gatehouse processes already use them); other
// new ones join: flushed first (they may hold anything), then only
// deleted from until joinDelay has passed. Servers no longer listed leave:
// deleted from for joinDelay, then forgotten (returned so that their
// connections can be closed). newServer makes a server for an address.
func (r *ring) update(live []string, immediate map[string]bool, now time.Time, joinDelay time.Duration,
	newServer func(addr string) *server) (changes []ringChange, forgotten []*server) {
	r.mu.Lock()
	defer r.mu.Unlock()
	listed := make(map[string]bool, len(live))
	for _, addr := range live {
		listed[addr] = true
		s, known := r.servers[addr]
		switch {
		case !known:
			s = newServer(addr)
			if immediate[addr] {
				s.role = member
			} else {
				s.role, s.until = joining, now.Add(joinDelay)
				s.down = &downState{missed: 1}
			}
			r.servers[addr] = s
			changes = append(changes, ringChange{addr, "", s.role.String()})
		case s.role == leaving:
			// Back before it was forgotten: it missed what was written
			// to the others while it was listed nowhere, so it joins
			// again, flushed first.
			s.role, s.until = joining, now.Add(joinDelay)
			if s.down == nil {
				s.down = &downState{}
			}
			s.down.missed++
			changes = append(changes, ringChange{addr, "leaving", "joining"})
		case s.role == joining && !now.Before(s.until) && s.down == nil:
			s.role = member
			changes = append(changes, ringChange{addr, "joining", "member"})
		}
	}
	for addr, s := range r.servers {
		if listed[addr] {
			continue
		}
		switch s.role {
		case member, joining:
			changes = append(changes, ringChange{addr, s.role.String(), "leaving"})
			s.role, s.until = leaving, now.Add(joinDelay)
		case leaving:
			if !now.Before(s.until) {
				delete(r.servers, addr)
				forgotten = append(forgotten, s)
				changes = append(changes, ringChange{addr, "leaving", ""})
			}
		}
	}
	r.members, r.all = nil, nil
	for _, s := range r.servers {
		r.all = append(r.all, s)
		if s.role == member {
			r.members = append(r.members, s)
		}
	}
	sort.Slice(r.all, func(a, b int) bool { return r.all[a].addr < r.all[b].addr })
	sort.Slice(r.members, func(a, b int) bool { return r.members[a].addr < r.members[b].addr })
	sort.Slice(changes, func(a, b int) bool { return changes[a].addr < changes[b].addr })
	return changes, forgotten
}
