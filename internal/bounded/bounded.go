// Package bounded is a map with a size limit, safe for concurrent use, for
// the per-session caches on the request path (decoded sessions, identity
// header values, signed assertions). When full, adding a key evicts one
// arbitrary entry: the caches hold derived data only, so any entry may go,
// and memory stays bounded however many sessions come and go.
package bounded

import "sync"

// Map is a bounded map. The zero value is not usable; call New.
type Map[K comparable, V any] struct {
	mu  sync.Mutex
	max int
	m   map[K]V
}

// New returns an empty Map holding at most max entries.
func New[K comparable, V any](max int) *Map[K, V] {
	return &Map[K, V]{max: max, m: make(map[K]V)}
}

// Get returns the value under k.
func (b *Map[K, V]) Get(k K) (V, bool) {
	b.mu.Lock()
	v, ok := b.m[k]
	b.mu.Unlock()
	return v, ok
}

// Put stores v under k, evicting one other entry when the map is full.
func (b *Map[K, V]) Put(k K, v V) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.m[k]; !ok && len(b.m) >= b.max {
		for old := range b.m { // map order is random: evict one
			delete(b.m, old)
			break
		}
	}
	b.m[k] = v
}

// Delete removes k.
func (b *Map[K, V]) Delete(k K) {
	b.mu.Lock()
	delete(b.m, k)
	b.mu.Unlock()
}

// Len is the number of entries.
func (b *Map[K, V]) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}
