package sessionstore_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// BenchmarkMemcachedBytesPer10kSessions signs in 10 000 users against one
// real memcached (replicas: 1) and reports what memcached holds for them
// (its "bytes" stat: items with keys and headers, sessions and generation
// records), for sizing: go test -run '^$' -bench BytesPer10k -benchtime 1x ./sessionstore
func BenchmarkMemcachedBytesPer10kSessions(b *testing.B) {
	const n = 10_000
	for b.Loop() {
		addr := sessionstore.StartMemcached(b).Addr()
		store, err := sessionstore.NewMemcache(sessionstore.MemcacheConfig{Servers: []string{addr}, Replicas: 1,
			Timeout: time.Second, MaxIdleConns: 8, ResolveInterval: 10 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		m := session.NewManager(session.Config{CookieName: "_gatehouse", Lifetime: time.Hour, IdleTimeout: time.Hour}, store, nil)
		ctx := context.Background()
		for i := range n {
			id := identity.Identity{Provider: "corp", Subject: fmt.Sprint(i), User: fmt.Sprintf("user%d", i),
				Email: fmt.Sprintf("user%d@example.com", i), EmailVerified: true, Groups: []string{"staff", "ops"}}
			if _, err := m.Create(ctx, httptest.NewRecorder(), id, &session.ProviderToken{AccessToken: strings.Repeat("t", 40), RefreshToken: strings.Repeat("r", 40)}); err != nil {
				b.Fatal(err)
			}
		}
		bytes := memcachedStat(b, addr, "bytes")
		b.ReportMetric(float64(bytes)/n, "bytes/session")
		b.ReportMetric(float64(bytes)/(1<<20), "MiB/10k-sessions")
		_ = store.Close()
	}
}

func memcachedStat(b *testing.B, addr, name string) int64 {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("stats\r\n")); err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "STAT" && f[1] == name {
			v, _ := strconv.ParseInt(f[2], 10, 64)
			return v
		}
		if sc.Text() == "END" {
			break
		}
	}
	b.Fatalf("no stat %s", name)
	return 0
}
