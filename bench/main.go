// Command bench measures authenticated requests through Gatehouse against
// the same upstream hit directly, on loopback, in one run: throughput and
// p50/p99 latency for the upstream alone, Gatehouse with the memory store,
// and Gatehouse with memcached, plus each one's ratio to direct.
//
//	go run ./bench [-duration 5s] [-concurrency 16]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/demo/idp"
)

func main() {
	duration := flag.Duration("duration", 5*time.Second, "how long each target is loaded")
	concurrency := flag.Int("concurrency", 16, "concurrent clients")
	flag.BoolVar(&withAssertion, "assertion", true, "sign the identity assertion (the default configuration)")
	flag.Parse()
	if err := run(*duration, *concurrency); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// withAssertion is whether Gatehouse signs X-Gatehouse-Assertion.
var withAssertion bool

type result struct {
	name          string
	requests      int
	errors        int
	elapsed       time.Duration
	p50, p99, max time.Duration
}

func (r result) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func run(duration time.Duration, concurrency int) error {
	dir, err := os.MkdirTemp("", "gatehouse-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "gatehouse")
	build := exec.Command("go", "build", "-o", bin, "./cmd/gatehouse")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building: %w", err)
	}

	// The upstream: a small fixed answer, so the numbers show Gatehouse's cost.
	body := []byte(`{"ok":true,"items":[1,2,3,4,5,6,7,8,9,10]}`)
	upstream, err := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	if err != nil {
		return err
	}

	results := []result{load("direct upstream", upstream+"/api/items", nil, duration, concurrency)}

	memcached, stop, err := startMemcached()
	if err != nil {
		return err
	}
	defer stop()
	for _, store := range []struct{ name, typ string }{{"gatehouse (memory store)", "memory"}, {"gatehouse (memcache store)", "memcache"}} {
		base, client, stop, err := startGatehouse(bin, upstream, store.typ, memcached)
		if err != nil {
			return err
		}
		results = append(results, load(store.name, base+"/api/items", client, duration, concurrency))
		stop()
	}
	report(results, duration, concurrency)
	return nil
}

func serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() { _ = http.Serve(ln, h) }()
	return "http://" + ln.Addr().String(), nil
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startMemcached() (string, func(), error) {
	addr := freeAddr()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("memcached", "-l", "127.0.0.1", "-p", port, "-U", "0", "-m", "128", "-t", "2", "-u", "root")
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("memcached (run make test or apt-get install memcached): %w", err)
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, stop, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	return "", nil, errors.New("memcached did not start")
}

// startGatehouse runs the binary in front of upstream with a real OIDC
// provider, signs in, and returns a client holding the session.
func startGatehouse(bin, upstream, storeType, memcached string) (string, *http.Client, func(), error) {
	idpAddr := freeAddr()
	issuer := "http://" + idpAddr
	addr := freeAddr()
	public := "http://" + addr
	provider, err := idp.New(idp.Config{
		Issuer: issuer,
		Users: []idp.User{{Subject: "1", Email: "bench@example.com", EmailVerified: true, PreferredUsername: "bench",
			Groups: []string{"staff"}, Password: "pw"}},
		Clients: []idp.Client{{ID: "gh", Secret: "s", RedirectURIs: []string{public + "/oauth2/callback/corp"}}},
	})
	if err != nil {
		return "", nil, nil, err
	}
	ln, err := net.Listen("tcp", idpAddr)
	if err != nil {
		return "", nil, nil, err
	}
	idpSrv := &http.Server{Handler: provider}
	go func() { _ = idpSrv.Serve(ln) }()

	cmd := exec.Command(bin, "serve")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"GATEHOUSE_SERVER_LISTEN=" + addr,
		"GATEHOUSE_SERVER_PUBLIC_URL=" + public,
		"GATEHOUSE_SERVER_METRICS_LISTEN=",
		"GATEHOUSE_UPSTREAM_URL=" + upstream,
		"GATEHOUSE_AUTH_ALLOWED_DOMAINS=example.com",
		"GATEHOUSE_AUTH_OIDC_CORP_ISSUER_URL=" + issuer,
		"GATEHOUSE_AUTH_OIDC_CORP_CLIENT_ID=gh",
		"GATEHOUSE_AUTH_OIDC_CORP_CLIENT_SECRET=s",
		"GATEHOUSE_SESSION_SECRET=bench-secret-0123456789abcdef0123456789",
		"GATEHOUSE_SESSION_COOKIE_SECURE=false",
		"GATEHOUSE_SESSION_STORE_TYPE=" + storeType,
		"GATEHOUSE_SESSION_STORE_MEMCACHE_SERVERS=" + memcached,
		"GATEHOUSE_LOGGING_LEVEL=error", // the access log would measure the terminal
		"GATEHOUSE_HEADERS_ASSERTION_ENABLED=" + fmt.Sprint(withAssertion),
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = idpSrv.Close() }
	ready := false
	for i := 0; i < 400 && !ready; i++ {
		if resp, err := http.Get(public + "/ready"); err == nil {
			resp.Body.Close()
			ready = resp.StatusCode == http.StatusOK
		}
		if !ready {
			time.Sleep(25 * time.Millisecond)
		}
	}
	if !ready {
		stop()
		return "", nil, nil, errors.New("gatehouse did not become ready")
	}
	client, err := signIn(public)
	if err != nil {
		stop()
		return "", nil, nil, err
	}
	return public, client, stop, nil
}

var (
	formAction  = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
	hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)"`)
)

func signIn(public string) (*http.Client, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Transport: transport()}
	resp, err := c.Get(public + "/oauth2/start?provider=corp&rd=/")
	if err != nil {
		return nil, err
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := formAction.FindSubmatch(page)
	if m == nil {
		return nil, errors.New("no login form")
	}
	form := url.Values{"username": {"bench@example.com"}, "password": {"pw"}}
	for _, h := range hiddenInput.FindAllSubmatch(page, -1) {
		form.Set(string(h[1]), html.UnescapeString(string(h[2])))
	}
	resp, err = c.PostForm(html.UnescapeString(string(m[1])), form)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("sign-in ended with %d", resp.StatusCode)
	}
	return c, nil
}

func transport() *http.Transport {
	return &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}
}

// load runs concurrency clients for d and collects latencies.
func load(name, target string, base *http.Client, d time.Duration, concurrency int) result {
	client := &http.Client{Transport: transport()}
	if base != nil {
		client.Jar = base.Jar
	}
	// Warm up connections (and Gatehouse's caches) before measuring.
	for i := 0; i < 200; i++ {
		if resp, err := client.Get(target); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			bad := 0
			for ctx.Err() == nil {
				t0 := time.Now()
				resp, err := client.Get(target)
				if err != nil {
					bad++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					bad++
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r := result{name: name, requests: len(lat), errors: errs, elapsed: elapsed}
	if len(lat) > 0 {
		r.p50, r.p99, r.max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	}
	return r
}

func report(rs []result, d time.Duration, concurrency int) {
	fmt.Printf("\nAuthenticated GET through Gatehouse vs. the upstream directly (loopback, %d clients, %s each)\n\n", concurrency, d)
	fmt.Printf("%-28s %10s %8s %10s %10s %10s %9s %9s %9s\n", "target", "req/s", "errors", "p50", "p99", "max", "rps/dir", "p50/dir", "p99/dir")
	direct := rs[0]
	for _, r := range rs {
		fmt.Printf("%-28s %10.0f %8d %10s %10s %10s %9.2f %9.2f %9.2f\n", r.name, r.rps(), r.errors,
			r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.max.Round(time.Microsecond),
			r.rps()/direct.rps(), float64(r.p50)/float64(direct.p50), float64(r.p99)/float64(direct.p99))
	}
	fmt.Println()
}
