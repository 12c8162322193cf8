package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkAuthenticatedRequest measures one signed-in request through the
// handler to a loopback upstream (see `make bench` for the end-to-end view).
func BenchmarkAuthenticatedRequest(b *testing.B) {
	f := newFixture(b, fixtureOpts{upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})})
	cookie := f.signIn(b, aliceID)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := httptest.NewRequest(http.MethodGet, "/app", nil)
		r.AddCookie(cookie)
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, r)
		if rec.Code != 200 {
			b.Fatalf("code %d", rec.Code)
		}
	}
}
