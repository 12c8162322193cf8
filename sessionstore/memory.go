package sessionstore

import (
	"context"
	"sync"
	"time"
)

// Memory is an in-process Store for a single replica. Expired records are
// dropped when read and swept periodically so memory stays bounded by the
// number of live sessions.
//
// A record's bytes are never modified once stored (put copies what it is
// given, Append builds a new slice), so GetFew can hand out the stored
// slices themselves instead of copies.
type Memory struct {
	mu        sync.Mutex
	items     map[string]memItem
	now       func() time.Time
	lastSweep time.Time
}

type memItem struct {
	value   []byte
	expires time.Time
}

// sweepEvery bounds how often a write scans for expired records.
const sweepEvery = time.Minute

// NewMemory returns an empty in-memory store. now may be nil (time.Now).
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{items: map[string]memItem{}, now: now}
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.items[key]
	if !ok || !m.now().Before(it.expires) {
		delete(m.items, key)
		return nil, ErrNotFound
	}
	return append([]byte(nil), it.value...), nil
}

// GetMulti implements Store.
func (m *Memory) GetMulti(_ context.Context, keys []string) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string][]byte, len(keys))
	now := m.now()
	for _, key := range keys {
		it, ok := m.items[key]
		if !ok || !now.Before(it.expires) {
			delete(m.items, key)
			continue
		}
		out[key] = append([]byte(nil), it.value...)
	}
	return out, nil
}

// GetFew implements FewGetter: GetMulti for the session hot path, with
// neither a map nor copies. The records returned are the store's own
// (immutable, see Memory): callers must not modify them.
func (m *Memory) GetFew(_ context.Context, keys [MaxFew]string) ([MaxFew][]byte, error) {
	var out [MaxFew][]byte
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for i, key := range keys {
		if key == "" {
			continue
		}
		it, ok := m.items[key]
		if !ok || !now.Before(it.expires) {
			delete(m.items, key)
			continue
		}
		out[i] = present(it.value)
	}
	return out, nil
}

// Set implements Store.
func (m *Memory) Set(_ context.Context, key string, value []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.put(key, value, ttl)
	return nil
}

// Add implements Store.
func (m *Memory) Add(_ context.Context, key string, value []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.live(key) {
		return ErrExists
	}
	m.put(key, value, ttl)
	return nil
}

// Replace implements Store.
func (m *Memory) Replace(_ context.Context, key string, value []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.live(key) {
		return ErrNotFound
	}
	m.put(key, value, ttl)
	return nil
}

// Touch implements Store.
func (m *Memory) Touch(_ context.Context, key string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.live(key) {
		return ErrNotFound
	}
	it := m.items[key]
	it.expires = m.now().Add(ttl)
	m.items[key] = it
	return nil
}

// Append implements Store. An expired record counts as none: the list
// starts afresh rather than carry entries whose lifetime ended.
func (m *Memory) Append(_ context.Context, key string, value []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.live(key) {
		m.put(key, value, ttl)
		return nil
	}
	it := m.items[key]
	// A new slice, never an append in place: GetFew hands out the stored
	// bytes, which must not change under their reader.
	it.value = append(append(make([]byte, 0, len(it.value)+len(value)), it.value...), value...)
	it.expires = m.now().Add(ttl)
	m.items[key] = it
	return nil
}

// live reports whether key holds an unexpired record; m.mu is held.
func (m *Memory) live(key string) bool {
	it, ok := m.items[key]
	if ok && !m.now().Before(it.expires) {
		delete(m.items, key)
		return false
	}
	return ok
}

// Delete implements Store.
func (m *Memory) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.items, key)
	return nil
}

// Ping implements Store; memory is always there.
func (m *Memory) Ping(context.Context) error { return nil }

// Len returns the number of records held, expired or not (for tests).
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items)
}

// Keys returns the keys held, expired or not, in no order (for tests).
func (m *Memory) Keys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := make([]string, 0, len(m.items))
	for k := range m.items {
		keys = append(keys, k)
	}
	return keys
}

func (m *Memory) put(key string, value []byte, ttl time.Duration) {
	now := m.now()
	m.items[key] = memItem{value: append([]byte(nil), value...), expires: now.Add(ttl)}
	if now.Sub(m.lastSweep) >= sweepEvery {
		m.lastSweep = now
		for k, it := range m.items {
			if !now.Before(it.expires) {
				delete(m.items, k)
			}
		}
	}
}
