package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/gatehouse/gatehouse/metrics"
)

// The two benchmarks below serve the same request end to end over
// loopback, in one process (client, proxy and upstream share the CPU):
// a bare httputil.ReverseProxy (the floor) and Gatehouse with its access
// log, signed in with the memory store. Compare their allocations and
// time in one run; `make bench` measures the proxy process alone.

// benchServe sends GET /app through h over a kept-alive connection.
func benchServe(b *testing.B, h http.Handler, cookie *http.Cookie) {
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	req, _ := http.NewRequest("GET", srv.URL+"/app", nil)
	if cookie != nil {
		req.AddCookie(cookie)
	}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Do(req)
		if err != nil || resp.StatusCode != 200 {
			b.Fatal(err, resp)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
}

// BenchmarkFloorReverseProxy is the floor: no authentication at all.
func BenchmarkFloorReverseProxy(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() },
		Transport: &http.Transport{MaxIdleConnsPerHost: 64}, BufferPool: newBufferPool()}
	benchServe(b, rp, nil)
}

// BenchmarkGatehouseEndToEnd is an authenticated request through Gatehouse.
func BenchmarkGatehouseEndToEnd(b *testing.B) {
	f := newFixture(b, fixtureOpts{upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })})
	h := Observe(f.h, slog.New(slog.NewJSONHandler(io.Discard, nil)), nil, metrics.New())
	benchServe(b, h, f.signIn(b, aliceID))
}
