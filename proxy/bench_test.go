package proxy

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/metrics"
)

// BenchmarkAuthenticatedRequest measures one signed-in request through the
// handler to a loopback upstream (see `make bench` for the end-to-end view).
func BenchmarkAuthenticatedRequest(b *testing.B) {
	benchmarkRequest(b, aliceID, nil)
}

// BenchmarkAuthenticatedRequestLargeIdentity is the same with a user in
// 300 groups and 50 route policies that never match: the cost of a
// request must not grow with the size of the identity.
func BenchmarkAuthenticatedRequestLargeIdentity(b *testing.B) {
	id, policies := largeIdentity()
	benchmarkRequest(b, id, policies)
}

func largeIdentity() (identity.Identity, []filters.PolicyConfig) {
	id := aliceID
	id.Groups = nil
	for i := range 300 {
		id.Groups = append(id.Groups, fmt.Sprintf("org-%03d/team-with-a-longish-name-%03d", i, i))
	}
	var policies []filters.PolicyConfig
	for i := range 50 {
		policies = append(policies, filters.PolicyConfig{Path: fmt.Sprintf("^/never-%d(/|$)", i), AllowedGroups: []string{fmt.Sprintf("g%d", i)}})
	}
	return id, policies
}

func benchmarkRequest(b *testing.B, id identity.Identity, policies []filters.PolicyConfig) {
	f := newFixture(b, fixtureOpts{policies: policies, upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})})
	cookie := f.signIn(b, id)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodGet, "/app", nil)
		r.AddCookie(cookie)
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, r)
		if rec.Code != 200 {
			b.Fatalf("code %d", rec.Code)
		}
	}
}

// BenchmarkGate is the gate alone, without the round trip to the upstream:
// canonical request, session load (memory store), filters, policies,
// cached assertion and identity values. Its allocations are Gatehouse's
// own per-request cost.
func BenchmarkGate(b *testing.B) { benchmarkGate(b, aliceID, nil) }

// BenchmarkGateLargeIdentity is BenchmarkGate for a user in 300 groups
// with 50 policies that never match: Gatehouse's own work must not grow
// with the identity (the header bytes the upstream then gets are net/http's).
func BenchmarkGateLargeIdentity(b *testing.B) {
	id, policies := largeIdentity()
	benchmarkGate(b, id, policies)
}

func benchmarkGate(b *testing.B, id identity.Identity, policies []filters.PolicyConfig) {
	f := newFixture(b, fixtureOpts{policies: policies})
	h := f.h.(*Handler)
	var upstreamBytes int
	h.forward = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, _ := forwardedOf(r)
		upstreamBytes = len(strings.Join(f.values.groups, "")) + len(f.assertion)
	})
	cookie := f.signIn(b, id)
	r := httptest.NewRequest(http.MethodGet, "/app", nil)
	r.AddCookie(cookie)
	w := discardWriter{header: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
	b.ReportMetric(float64(upstreamBytes), "identity-header-bytes")
}

type discardWriter struct{ header http.Header }

func (d discardWriter) Header() http.Header         { return d.header }
func (d discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d discardWriter) WriteHeader(int)             {}

// BenchmarkAccessLog is the cost of the access log line and metrics that
// Observe adds to every request (JSON, the default format).
func BenchmarkAccessLog(b *testing.B) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	h := Observe(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), log, nil, metrics.New())
	r := httptest.NewRequest(http.MethodGet, "/app/items?x=1", nil)
	w := discardWriter{header: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}
