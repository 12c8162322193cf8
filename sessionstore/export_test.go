package sessionstore

import (
	"testing"
	"time"
)

// Hooks for the tests in package sessionstore_test, which also use
// package session (which imports this one).

// StartMemcached runs a real memcached on a free port until t ends.
func StartMemcached(t testing.TB) *memcached { return startMemcached(t) }

// Addr is the process's host:port.
func (m *memcached) Addr() string { return m.addr() }

// Pause freezes the process: a node cut off by the network.
func (m *memcached) Pause() { m.pause() }

// Resume lets a paused process answer again.
func (m *memcached) Resume() { m.resume() }

// NewTestMemcache is a Memcache over servers, closed when t ends.
func NewTestMemcache(t *testing.T, servers ...string) *Memcache {
	return newMemcacheStore(t, servers...)
}

// UpCount is how many servers are in use.
func UpCount(m *Memcache) int { return m.ring.upMembers() }

// WaitUntil polls cond until it holds or timeout passes.
func WaitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	waitUntil(t, timeout, what, cond)
}

// Stop kills the process; Start runs it again on the same port (empty).
func (m *memcached) Stop()  { m.stop() }
func (m *memcached) Start() { m.start() }

// NewTestMemcacheNoProbe is NewTestMemcache without the background probe:
// only requests bring a server back.
func NewTestMemcacheNoProbe(t *testing.T, servers ...string) *Memcache {
	return newMemcacheStoreProbing(t, 0, servers...)
}
