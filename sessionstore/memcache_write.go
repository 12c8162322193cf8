package sessionstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

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
