package sessionstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Ping implements Store: ready while at least one server is in use.
// When every server is set aside it asks them directly, so readiness does
// not wait for the probe either. With no server at all (names that did
// not resolve) it says so.
func (m *Memcache) Ping(ctx context.Context) error {
	if err := m.check(ctx); err != nil {
		return err
	}
	if m.ring.upMembers() > 0 {
		return nil
	}
	if m.ring.memberCount() == 0 {
		return m.orNoServer(nil)
	}
	for _, s := range m.ring.downServers(true) {
		if n, _, busy := m.ring.state(s); n == 0 && !busy && m.alive(s.addr) && m.ring.markUp(s, false, 0) {
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
		var wg sync.WaitGroup
		for _, s := range m.ring.downServers(false) {
			wg.Add(1)
			go func() { defer wg.Done(); m.recover(s) }()
		}
		wg.Wait()
	}
}

// recover brings server s back if it answers, flushing it first when it
// missed writes or deletes while set aside.
func (m *Memcache) recover(s *server) bool {
	missed, isDown, busy := m.ring.state(s)
	if !isDown {
		return true
	}
	if busy || !m.alive(s.addr) {
		return false
	}
	if missed > 0 {
		if err := m.flushAll(s.addr); err != nil {
			return false
		}
	}
	_ = s.client.Close()
	if !m.ring.markUp(s, missed > 0, missed) {
		return false
	}
	m.log.Info("memcached server in use again", "server", s.addr, "flushed", missed > 0)
	return true
}

// alive asks a server for its version over a fresh connection.
func (m *Memcache) alive(addr string) bool {
	line, err := m.command(addr, "version")
	return err == nil && strings.HasPrefix(line, "VERSION")
}

// flushAll empties a server over a fresh connection.
func (m *Memcache) flushAll(addr string) error {
	line, err := m.command(addr, "flush_all")
	if err != nil {
		return err
	}
	if line != "OK\r\n" {
		return fmt.Errorf("memcache: flush_all answered %q", strings.TrimSpace(line))
	}
	return nil
}

// command sends one text-protocol command to addr over a fresh
// connection (TLS when configured, like every other) and returns the
// first line of the answer. The health probe and flushes use it, so that
// they never share a pooled connection with requests.
func (m *Memcache) command(addr, cmd string) (string, error) {
	timeout := max(m.timeout, probeTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := m.dial(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(conn).ReadString('\n')
}
