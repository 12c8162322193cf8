package sessionstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/bradfitz/gomemcache/memcache"
)

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
