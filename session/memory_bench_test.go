package session

import (
	"context"
	"fmt"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// BenchmarkMemoryStoreBytesPerSession signs in 1 000 000 users into the
// memory store and reports the heap each session holds (record, key,
// generation record, map overhead): go test -run '^$' -bench
// BytesPerSession -benchtime 1x ./session
func BenchmarkMemoryStoreBytesPerSession(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		store := sessionstore.NewMemory(nil)
		m := NewManager(testConfig(), store, nil)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		ctx := context.Background()
		rec := httptest.NewRecorder()
		for i := range n {
			id := identity.Identity{Provider: "corp", Subject: fmt.Sprint(i), User: fmt.Sprintf("user%d", i),
				Email: fmt.Sprintf("user%d@example.com", i), EmailVerified: true, Groups: []string{"staff"}}
			if _, err := m.Create(ctx, rec, id, &ProviderToken{AccessToken: "provider-access-token-of-some-length"}); err != nil {
				b.Fatal(err)
			}
			if i%1000 == 0 {
				rec = httptest.NewRecorder() // do not keep a million Set-Cookie headers
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/session")
		runtime.KeepAlive(store)
	}
}
