// Command floor is the baseline of the bench: a bare
// net/http/httputil.ReverseProxy, with no authentication, in front of the
// same upstream as Gatehouse. Its transport keeps enough idle connections
// for the bench's concurrency and it copies bodies through pooled buffers,
// so it is a tuned proxy, not a strawman.
//
//	floor -listen 127.0.0.1:8080 -upstream http://127.0.0.1:9000
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	upstream := flag.String("upstream", "", "upstream base URL")
	groups := flag.Int("groups", 0, "also send the headers a user in this many groups costs Gatehouse: X-Forwarded-Groups and an assertion-sized X-Gatehouse-Assertion (to tell what is inherent in forwarding a large identity)")
	assertionBytes := flag.Int("assertion-bytes", 0, "size of that fake assertion")
	flag.Parse()
	var identity http.Header
	if *groups > 0 {
		names := make([]string, *groups)
		for i := range names {
			names[i] = fmt.Sprintf("team-%03d-engineering", i) // as the bench's large user
		}
		identity = http.Header{
			"X-Forwarded-Groups":    {strings.Join(names, ",")},
			"X-Gatehouse-Assertion": {strings.Repeat("a", *assertionBytes)},
		}
	}
	target, err := url.Parse(*upstream)
	if err != nil || target.Host == "" {
		fmt.Fprintln(os.Stderr, "floor: -upstream must be an absolute URL")
		os.Exit(2)
	}
	transport := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			for k, v := range identity {
				pr.Out.Header[k] = v
			}
		},
		Transport:  transport,
		BufferPool: &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}},
	}
	srv := &http.Server{Addr: *listen, Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// bufferPool is httputil.BufferPool over a sync.Pool of 32 KiB buffers.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte  { return *b.p.Get().(*[]byte) }
func (b *bufferPool) Put(p []byte) { b.p.Put(&p) }
