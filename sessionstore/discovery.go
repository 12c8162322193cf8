package sessionstore

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Resolver looks up the names of dns+ and dnssrv+ servers;
// *net.Resolver is one.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupSRV(ctx context.Context, service, proto, name string) (cname string, addrs []*net.SRV, err error)
}

// discovered is one servers entry and what it resolved to. Guarded by
// Memcache.specMu.
type discovered struct {
	serverSpec
	resolved bool     // it has given addresses once
	addrs    []string // the last addresses it gave
	err      error    // why the last resolution failed, nil when it worked
}

// lookup resolves one entry to host:port addresses, sorted.
func (m *Memcache) lookup(ctx context.Context, sp serverSpec) ([]string, error) {
	var addrs []string
	switch sp.kind {
	case staticServer:
		// Used as written: the dialler resolves a host name at each
		// connection, and the ranking hashes the entry as configured.
		return []string{sp.raw}, nil
	case dnsServer:
		ips, err := m.resolver.LookupIPAddr(ctx, sp.host)
		if err != nil {
			return nil, err
		}
		for _, ip := range ips {
			addrs = append(addrs, net.JoinHostPort(ip.IP.String(), sp.port))
		}
	case srvServer:
		_, srvs, err := m.resolver.LookupSRV(ctx, "", "", sp.host)
		if err != nil && len(srvs) == 0 {
			return nil, err
		}
		for _, s := range srvs {
			if target := strings.TrimSuffix(s.Target, "."); target != "" {
				addrs = append(addrs, net.JoinHostPort(target, strconv.Itoa(int(s.Port))))
			}
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("no records")
	}
	slices.Sort(addrs)
	return slices.Compact(addrs), nil
}

// resolve resolves every entry and makes the ring follow. An entry that
// fails keeps the addresses it last gave (none before its first answer);
// the first answer of an entry is used at once, later new addresses join
// (see ring.update).
func (m *Memcache) resolve() {
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	type result struct {
		addrs []string
		err   error
	}
	results := make([]result, len(m.specs))
	done := make(chan struct{})
	for i, sp := range m.specs {
		go func() {
			addrs, err := m.lookup(ctx, sp.serverSpec)
			results[i] = result{addrs, err}
			done <- struct{}{}
		}()
	}
	for range m.specs {
		<-done
	}
	immediate := map[string]bool{}
	var live []string
	m.specMu.Lock()
	for i, sp := range m.specs {
		r := results[i]
		switch {
		case r.err != nil && !sp.resolved && sp.err == nil:
			m.log.Error("session store: a memcached name did not resolve; it adds no server until it does, "+
				"and while the store has no server every request that needs a session fails (503)",
				"server", sp.raw, "err", r.err.Error())
		case r.err != nil && sp.resolved && sp.err == nil:
			m.log.Warn("session store: a memcached name no longer resolves; keeping the servers it last gave",
				"server", sp.raw, "servers", sp.addrs, "err", r.err.Error())
		case r.err == nil && sp.err != nil:
			m.log.Info("session store: a memcached name resolves again", "server", sp.raw, "servers", r.addrs)
		}
		if r.err != nil {
			sp.err = r.err
		} else {
			if !sp.resolved {
				for _, a := range r.addrs {
					immediate[a] = true
				}
				if sp.kind != staticServer {
					// The answer may name a server that appeared only
					// just now, which other Gatehouse processes do not
					// know yet: their deletes and writes would miss it.
					// Wait until every process that resolves the same
					// name has seen it (and flushed it) before using it.
					m.holdFor(m.joinDelay)
				}
			}
			sp.resolved, sp.addrs, sp.err = true, r.addrs, nil
		}
		live = append(live, sp.addrs...)
	}
	m.specMu.Unlock()
	slices.Sort(live)
	live = slices.Compact(live)
	changes, forgotten := m.ring.update(live, immediate, m.now(), m.joinDelay, m.newServer)
	for _, c := range changes {
		switch {
		case c.from == "" && c.to == "member":
			m.log.Info("session store: memcached server in use", "server", c.addr)
		case c.from == "":
			m.log.Info("session store: memcached server found; it is flushed, then receives deletes only until it joins the ring",
				"server", c.addr, "joins_in", m.joinDelay.String())
		case c.to == "member":
			m.log.Info("session store: memcached server joined the ring", "server", c.addr)
		case c.to == "leaving":
			m.log.Info("session store: memcached server no longer listed; it receives deletes only until it is forgotten",
				"server", c.addr, "forgotten_in", m.joinDelay.String())
		case c.to == "joining":
			m.log.Info("session store: memcached server listed again; it is flushed, then receives deletes only until it joins the ring",
				"server", c.addr, "joins_in", m.joinDelay.String())
		case c.to == "":
			m.log.Info("session store: memcached server forgotten", "server", c.addr)
		}
	}
	for _, s := range forgotten {
		_ = s.client.Close()
	}
}

// discover resolves the names again every resolve interval.
func (m *Memcache) discover() {
	defer m.done.Done()
	t := time.NewTicker(m.resolveEvery)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		m.resolve()
	}
}
