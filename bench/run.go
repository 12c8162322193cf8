package main

import (
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"syscall"
	"time"
)

const (
	smallPath = "/api/items"
	blobPath  = "/api/blob"
	blobSize  = 64 << 10
	coldRuns  = 3
)

// measurement is one target in one round.
type measurement struct {
	rps, cpuPerReq, proxyUtil, clientUtil float64 // concurrent window, small responses
	otherUtil                             float64 // CPU used by processes outside the bench, same window
	p50c, p99c                            time.Duration
	p50s, p99s                            time.Duration // one connection
	blobRPS, blobMBps, blobCPUPerReq      float64
	rss                                   int64
	errors                                int
	lastErr                               string
}

func run(o options, dir string, cpus []string) error {
	var clientCPU, proxyCPU string
	if len(cpus) >= 2 {
		clientCPU, proxyCPU = cpus[0], cpus[1]
	}
	ps := &procs{}
	defer ps.stopAll()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		ps.stopAll()
		os.Exit(130)
	}()

	// The upstream: a small fixed answer, so the numbers show the proxy's
	// cost, and a 64 KiB one for throughput.
	upstream, err := startUpstream()
	if err != nil {
		return err
	}

	memcached, mcCmd, err := startMemcached(ps, proxyCPU)
	if err != nil {
		return err
	}
	specs := []gatehouseSpec{
		{name: "gatehouse, memory store", short: "memory", store: "memory", user: smallUser},
		{name: "gatehouse, memcache store (+ memcached CPU)", short: "memcache", store: "memcache", user: smallUser},
		{name: fmt.Sprintf("gatehouse, memory, large identity (%d groups, %d policies)", largeGroups, largePolicies),
			short: "large", store: "memory", user: largeUser, policies: largePoliciesJSON()},
	}
	var redirects []string
	for i := range specs {
		specs[i].addr = freeAddr()
		redirects = append(redirects, specs[i].public()+"/oauth2/callback/corp")
	}
	provider, err := startIdP(redirects)
	if err != nil {
		return err
	}

	floor, err := startFloor(ps, dir+"/floor", proxyCPU, upstream)
	if err != nil {
		return err
	}
	targets := []*target{floor}
	// The floor again, sending the headers the large identity makes
	// Gatehouse send (its X-Forwarded-Groups and an assertion of about its
	// size): what forwarding such an identity costs any proxy.
	floorLarge, err := startFloor(ps, dir+"/floor", proxyCPU, upstream, "-groups", strconv.Itoa(largeGroups), "-assertion-bytes", strconv.Itoa(largeAssertionBytes))
	if err != nil {
		return err
	}
	floorLarge.name = fmt.Sprintf("floor + a %d-group identity's headers (no auth)", largeGroups)
	floorLarge.short = "floor-large"
	targets = append(targets, floorLarge)
	for _, s := range specs {
		env := s.env(upstream, provider.issuer, memcached, o.assertion)
		t := &target{name: s.name, short: s.short, base: s.public()}
		for i := 0; i < coldRuns; i++ {
			cmd, cold, err := startGatehouse(ps, dir+"/gatehouse", proxyCPU, env, s.public())
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			t.cold = append(t.cold, cold)
			if i < coldRuns-1 {
				ps.stop(cmd)
				continue
			}
			t.pid = cmd.Process.Pid
		}
		if t.cookie, err = signIn(s.public(), s.user); err != nil {
			return fmt.Errorf("%s: signing in: %w", s.name, err)
		}
		if s.store == "memcache" {
			t.extra = mcCmd.Process.Pid
		}
		targets = append(targets, t)
	}

	pinning := "not pinned"
	if proxyCPU != "" {
		pinning = fmt.Sprintf("load generator + upstream on CPU %s, proxy (+ memcached) on CPU %s", clientCPU, proxyCPU)
	}
	d32, d1, dBlob := o.duration*4/10, o.duration*3/10, o.duration*3/10
	warm := min(max(o.duration/10, 200*time.Millisecond), 500*time.Millisecond)
	windows := fmt.Sprintf("per target and round: %s at %d connections, %s at 1 connection, %s of 64 KiB responses at %d connections, each after a %s warm-up",
		d32, o.concurrency, d1, dBlob, o.concurrency, warm)
	fmt.Fprintf(os.Stderr, "%s; %d rounds; %s\n", pinning, o.rounds, windows)

	// Every target must answer both paths before anything is measured, then
	// gets one unmeasured pass so that it meets no first load in round 1.
	for _, t := range targets {
		for _, path := range []string{smallPath, blobPath} {
			if err := check(t, path); err != nil {
				return fmt.Errorf("%s: GET %s: %w", t.name, path, err)
			}
		}
		runWindow(window{url: t.base + smallPath, cookie: t.cookie, conns: o.concurrency, warm: warm, d: warm})
		runWindow(window{url: t.base + blobPath, cookie: t.cookie, conns: o.concurrency, warm: warm, d: warm})
	}

	results := make([][]measurement, len(targets)) // [target][round]
	wall := time.Now()
	for r := 0; r < o.rounds; r++ {
		for i, t := range targets {
			m := measure(t, o.concurrency, d32, d1, dBlob, warm)
			results[i] = append(results[i], m)
			fmt.Fprintf(os.Stderr, "round %d %-8s %8.0f req/s  %6.1f µs CPU/req (CPU use: proxy %3.0f%%, bench %3.0f%%, others %3.0f%%)  p50/p99 @1 %s/%s  @%d %s/%s  64KiB %6.0f req/s %5.0f MB/s %5.1f µs CPU/req  RSS %s\n",
				r+1, t.short, m.rps, m.cpuPerReq, 100*m.proxyUtil, 100*m.clientUtil, 100*m.otherUtil, us(m.p50s), us(m.p99s),
				o.concurrency, us(m.p50c), us(m.p99c), m.blobRPS, m.blobMBps, m.blobCPUPerReq, mib(m.rss))
			if m.errors > 0 {
				fmt.Fprintf(os.Stderr, "round %d %s: %d failed requests (last: %s)\n", r+1, t.short, m.errors, m.lastErr)
			}
		}
	}
	fmt.Fprintf(os.Stderr, "measured rounds took %s; %d windows were run again because other processes were busy\n",
		time.Since(wall).Round(time.Second), maxRetries-retriesLeft)
	report(o, targets, results, pinning, windows, max(len(cpus), len(allowedCPUs())))
	return nil
}

// check sends one request as the load generator will and wants a 200.
func check(t *target, path string) error {
	u, _ := url.Parse(t.base + path)
	c := &client{addr: u.Host, req: requestBytes(u, t.cookie)}
	defer c.close()
	status, _, err := c.do()
	if err == nil && status != 200 {
		err = fmt.Errorf("status %d", status)
	}
	return err
}

// maxOthers is how much CPU other processes may use during a window (as a
// share of one CPU) before the window is run again.
const maxOthers = 0.15

// measure runs a target's three windows: one connection, concurrent small
// responses (CPU, RSS), concurrent 64 KiB responses.
func measure(t *target, conns int, d32, d1, dBlob, warm time.Duration) measurement {
	pids := []int{t.pid}
	if t.extra != 0 {
		pids = append(pids, t.extra)
	}
	var m measurement
	one := quiet(window{url: t.base + smallPath, cookie: t.cookie, conns: 1, warm: warm, d: d1, pids: pids})
	m.p50s, m.p99s = one.p50, one.p99

	resetPeakRSS(t.pid)
	c := quiet(window{url: t.base + smallPath, cookie: t.cookie, conns: conns, warm: warm, d: d32, pids: pids})
	m.rps, m.p50c, m.p99c, m.cpuPerReq = c.rps(), c.p50, c.p99, c.cpuPerReq()
	m.proxyUtil, m.clientUtil, m.otherUtil = c.util(c.proxyCPU), c.util(c.selfCPU), c.util(c.others())

	b := quiet(window{url: t.base + blobPath, cookie: t.cookie, conns: conns, warm: warm, d: dBlob, pids: pids})
	m.blobRPS, m.blobMBps, m.blobCPUPerReq = b.rps(), float64(b.bytes)/b.elapsed.Seconds()/1e6, b.cpuPerReq()
	m.rss = peakRSS(t.pid)

	for _, w := range []windowResult{one, c, b} {
		m.errors += w.errors
		if w.lastErr != "" {
			m.lastErr = w.lastErr
		}
	}
	return m
}

// retriesLeft bounds how many windows quiet runs again, so a busy machine
// does not make the bench run much longer.
var retriesLeft = maxRetries

const maxRetries = 12

// quiet runs a window, and once more when other processes took more than
// maxOthers of a CPU meanwhile; it keeps the run they disturbed less.
func quiet(w window) windowResult {
	r := runWindow(w)
	if r.util(r.others()) <= maxOthers || retriesLeft == 0 {
		return r
	}
	retriesLeft--
	again := runWindow(w)
	if again.util(again.others()) < r.util(r.others()) {
		return again
	}
	return r
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// stat is the median of one metric over the rounds, and the median of its
// per-round ratio to the floor.
func stat(ms, floor []measurement, f func(measurement) float64) (value, ratio float64) {
	var vs, rs []float64
	for i, m := range ms {
		vs = append(vs, f(m))
		if fv := f(floor[i]); fv != 0 {
			rs = append(rs, f(m)/fv)
		}
	}
	return median(vs), median(rs)
}

func us(d time.Duration) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func thousands(x float64) string {
	s := strconv.FormatInt(int64(x+0.5), 10)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func report(o options, targets []*target, results [][]measurement, pinning, windows string, ncpu int) {
	floor := results[0]
	c := strconv.Itoa(o.concurrency)
	fmt.Printf("\n### Gatehouse vs. a bare httputil.ReverseProxy (the floor)\n\n")
	fmt.Printf("%s, %d CPUs, %s, %s; medians of %d alternating rounds; (×) = ratio to the floor, median of per-round ratios.\n\n",
		cpuModel(), ncpu, goVersion(), pinning, o.rounds)
	fmt.Printf("| target | req/s @%s | CPU µs/req @%s | CPU × floor | p50 @1 | p99 @1 | p50 @%s | p99 @%s | 64 KiB req/s @%s | 64 KiB MB/s | peak RSS @%s | cold start to /ready |\n",
		c, c, c, c, c, c)
	fmt.Println("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	durF := func(f func(measurement) time.Duration) func(measurement) float64 {
		return func(m measurement) float64 { return float64(f(m)) / float64(time.Microsecond) }
	}
	cell := func(v, r float64, unit string, isFloor bool, prec int) string {
		s := strconv.FormatFloat(v, 'f', prec, 64) + unit
		if prec == 0 && unit == "" {
			s = thousands(v)
		}
		if isFloor {
			return s
		}
		return fmt.Sprintf("%s (%.2f×)", s, r)
	}
	var cpuMemory, cpuLarge, cpuFloor, cpuFloorLarge []float64
	for i, t := range targets {
		ms, isFloor := results[i], i == 0
		rps, rpsR := stat(ms, floor, func(m measurement) float64 { return m.rps })
		cpu, cpuR := stat(ms, floor, func(m measurement) float64 { return m.cpuPerReq })
		p50s, p50sR := stat(ms, floor, durF(func(m measurement) time.Duration { return m.p50s }))
		p99s, p99sR := stat(ms, floor, durF(func(m measurement) time.Duration { return m.p99s }))
		p50c, p50cR := stat(ms, floor, durF(func(m measurement) time.Duration { return m.p50c }))
		p99c, p99cR := stat(ms, floor, durF(func(m measurement) time.Duration { return m.p99c }))
		brps, brpsR := stat(ms, floor, func(m measurement) float64 { return m.blobRPS })
		bmb, _ := stat(ms, floor, func(m measurement) float64 { return m.blobMBps })
		rss, rssR := stat(ms, floor, func(m measurement) float64 { return float64(m.rss) / (1 << 20) })
		cold := "—"
		if len(t.cold) > 0 {
			var cs []float64
			for _, d := range t.cold {
				cs = append(cs, float64(d)/float64(time.Millisecond))
			}
			cold = fmt.Sprintf("%.0f ms", median(cs))
		}
		cpuRatio := "1.00×"
		if !isFloor {
			cpuRatio = fmt.Sprintf("**%.2f×**", cpuR)
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", t.name,
			cell(rps, rpsR, "", isFloor, 0), strconv.FormatFloat(cpu, 'f', 1, 64), cpuRatio,
			cell(p50s, p50sR, " µs", isFloor, 0), cell(p99s, p99sR, " µs", isFloor, 0),
			cell(p50c, p50cR, " µs", isFloor, 0), cell(p99c, p99cR, " µs", isFloor, 0),
			cell(brps, brpsR, "", isFloor, 0), strconv.FormatFloat(bmb, 'f', 0, 64),
			cell(rss, rssR, " MiB", isFloor, 1), cold)
		for _, m := range ms {
			switch t.short {
			case "floor":
				cpuFloor = append(cpuFloor, m.cpuPerReq)
			case "memory":
				cpuMemory = append(cpuMemory, m.cpuPerReq)
			case "large":
				cpuLarge = append(cpuLarge, m.cpuPerReq)
			case "floor-large":
				cpuFloorLarge = append(cpuFloorLarge, m.cpuPerReq)
			}
		}
	}
	if len(cpuMemory) == len(cpuLarge) && len(cpuLarge) > 0 {
		var rs []float64
		for i := range cpuLarge {
			rs = append(rs, cpuLarge[i]/cpuMemory[i])
		}
		r := median(rs)
		verdict := "within"
		switch {
		case r == 0:
			verdict = "not measured, requests failed"
		case r > 1.3:
			verdict = "OVER"
		}
		fmt.Printf("\nLarge identity (%d groups, %d non-matching policies) vs. memory store: CPU per request %.2f× (target ≤ 1.30×: %s).\n",
			largeGroups, largePolicies, r, verdict)
		if len(cpuFloorLarge) == len(cpuLarge) && len(cpuFloor) == len(cpuLarge) {
			var fl, vs []float64
			for i := range cpuLarge {
				fl = append(fl, cpuFloorLarge[i]/cpuFloor[i])
				vs = append(vs, cpuLarge[i]/cpuFloorLarge[i])
			}
			fmt.Printf("The floor itself, sending the same identity headers: %.2f× its CPU per request without them; the large identity through Gatehouse vs. that floor: %.2f×.\n",
				median(fl), median(vs))
		}
	}
	var errs int
	for _, ms := range results {
		for _, m := range ms {
			errs += m.errors
		}
	}
	if errs > 0 {
		fmt.Printf("\nWARNING: %d requests failed; see the round lines above.\n", errs)
	}
	var others []float64
	for _, ms := range results {
		for _, m := range ms {
			others = append(others, m.otherUtil)
		}
	}
	if o := median(others); o > 0.1 {
		fmt.Printf("\nWARNING: other processes used %.0f%% of a CPU (median) while the bench measured; the numbers are unreliable, run it on a quiet machine.\n", 100*o)
	}
	fmt.Printf("\nCPU µs/req: proxy process utime+stime over the %d-connection window (small responses) / requests; the memcache row adds memcached's. Peak RSS: VmHWM over the %d-connection windows. Cold start: process start to the first 200 on /ready, median of %d starts. Windows: %s.\n",
		o.concurrency, o.concurrency, coldRuns, windows)
	fmt.Printf("\nCommand: go run ./bench -duration %s -concurrency %d -rounds %d%s\n", o.duration, o.concurrency, o.rounds,
		map[bool]string{true: "", false: " -assertion=false"}[o.assertion])
}
