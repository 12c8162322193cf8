package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The load generator speaks HTTP/1.1 over kept-alive connections itself:
// one pre-built request per connection, the response parsed just enough to
// skip its body. It costs a fraction of net/http's client, so on the
// shared core it leaves room for the upstream and does not cap the floor.

// window is one measured load: conns connections sending requests back to
// back, warm for warm (unmeasured), then measured for d.
type window struct {
	url    string // target URL (http only)
	cookie string // Cookie header value, "" for none
	conns  int
	warm   time.Duration
	d      time.Duration
	pids   []int // processes whose CPU time is the proxy's
}

type windowResult struct {
	requests int
	errors   int
	bytes    int64 // response body bytes
	elapsed  time.Duration
	p50, p99 time.Duration
	lastErr  string
	// CPU time over the window: of the proxy (pids), of the bench itself,
	// and of the whole machine.
	proxyCPU, selfCPU, allCPU time.Duration
}

func (r windowResult) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

// cpuPerReq is the proxy's CPU time per request in µs.
func (r windowResult) cpuPerReq() float64 {
	if r.requests == 0 {
		return 0
	}
	return float64(r.proxyCPU) / float64(time.Microsecond) / float64(r.requests)
}

// util is d as a share of one CPU over the window.
func (r windowResult) util(d time.Duration) float64 { return float64(d) / float64(r.elapsed) }

// others is the CPU time used by processes outside the bench.
func (r windowResult) others() time.Duration { return max(0, r.allCPU-r.proxyCPU-r.selfCPU) }

// usage samples the CPU counters a window reports.
func usage(pids []int) (proxy, self, all time.Duration) {
	for _, pid := range pids {
		proxy += cpuTime(pid)
	}
	return proxy, cpuTime(os.Getpid()), busyTime()
}

// Phases of a window.
const (
	phaseWarm int32 = iota
	phaseMeasure
	phaseStop
)

func runWindow(w window) windowResult {
	u, err := url.Parse(w.url)
	if err != nil {
		return windowResult{errors: 1, lastErr: err.Error()}
	}
	req := requestBytes(u, w.cookie)

	var phase atomic.Int32
	var wg sync.WaitGroup
	lats := make([][]time.Duration, w.conns)
	errs := make([]int, w.conns)
	byts := make([]int64, w.conns)
	lastErr := make([]string, w.conns)
	for i := 0; i < w.conns; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<14)
			c := &client{addr: u.Host, req: req}
			defer c.close()
			for {
				p := phase.Load()
				if p == phaseStop {
					break
				}
				t0 := time.Now()
				status, n, err := c.do()
				d := time.Since(t0)
				if phase.Load() != phaseMeasure || p != phaseMeasure {
					// Started in the warm-up or ended after the window: not counted.
					if err != nil {
						time.Sleep(time.Millisecond)
					}
					continue
				}
				switch {
				case err != nil:
					errs[i]++
					lastErr[i] = err.Error()
					time.Sleep(time.Millisecond)
				case status != 200:
					errs[i]++
					lastErr[i] = "status " + strconv.Itoa(status)
				default:
					lat = append(lat, d)
					byts[i] += n
				}
			}
			lats[i] = lat
		}(i)
	}
	time.Sleep(w.warm)
	p0, s0, a0 := usage(w.pids)
	start := time.Now()
	phase.Store(phaseMeasure)
	time.Sleep(w.d)
	phase.Store(phaseStop)
	elapsed := time.Since(start)
	p1, s1, a1 := usage(w.pids)
	wg.Wait()

	r := windowResult{elapsed: elapsed, proxyCPU: p1 - p0, selfCPU: s1 - s0, allCPU: a1 - a0}
	var all []time.Duration
	for i := range lats {
		all = append(all, lats[i]...)
		r.errors += errs[i]
		r.bytes += byts[i]
		if lastErr[i] != "" {
			r.lastErr = lastErr[i]
		}
	}
	r.requests = len(all)
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) > 0 {
		r.p50, r.p99 = all[len(all)/2], all[len(all)*99/100]
	}
	return r
}

// requestBytes is the GET request the load generator sends for u.
func requestBytes(u *url.URL, cookie string) []byte {
	var req bytes.Buffer
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: gatehouse-bench\r\nAccept: */*\r\n", u.RequestURI(), u.Host)
	if cookie != "" {
		fmt.Fprintf(&req, "Cookie: %s\r\n", cookie)
	}
	req.WriteString("\r\n")
	return req.Bytes()
}

// client is one kept-alive HTTP/1.1 connection; it redials after an error
// or a "Connection: close".
type client struct {
	addr string
	req  []byte
	c    net.Conn
	br   *bufio.Reader
}

func (c *client) close() {
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
}

var errMalformed = errors.New("malformed HTTP message")

// do sends the request and reads the whole response; it returns the status
// and the number of body bytes.
func (c *client) do() (int, int64, error) {
	if c.c == nil {
		conn, err := net.Dial("tcp", c.addr)
		if err != nil {
			return 0, 0, err
		}
		c.c = conn
		if c.br == nil {
			c.br = bufio.NewReaderSize(conn, 32<<10)
		} else {
			c.br.Reset(conn)
		}
	}
	status, n, keep, err := c.roundTrip()
	if err != nil || !keep {
		c.close()
	}
	return status, n, err
}

func (c *client) roundTrip() (status int, n int64, keep bool, err error) {
	if _, err = c.c.Write(c.req); err != nil {
		return 0, 0, false, err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, 0, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, 0, false, errMalformed
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, 0, false, errMalformed
	}
	keep = true
	length, chunked := int64(-1), false
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			return status, 0, false, err
		}
		if len(line) <= 2 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return status, 0, false, errMalformed
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil {
				return status, 0, false, errMalformed
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			keep = !bytes.EqualFold(value, []byte("close"))
		}
	}
	switch {
	case status == 204 || status == 304 || (status >= 100 && status < 200):
		return status, 0, keep, nil
	case chunked:
		n, err = c.chunked()
		return status, n, keep && err == nil, err
	case length >= 0:
		d, err := c.br.Discard(int(length))
		return status, int64(d), keep && err == nil, err
	default:
		d, err := io.Copy(io.Discard, c.br)
		return status, d, false, err
	}
}

func (c *client) chunked() (int64, error) {
	var total int64
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return total, err
		}
		hex, _, _ := bytes.Cut(bytes.TrimSpace(line), []byte(";"))
		size, err := strconv.ParseInt(string(hex), 16, 64)
		if err != nil || size < 0 {
			return total, errMalformed
		}
		if size == 0 {
			for { // trailers
				line, err = c.br.ReadSlice('\n')
				if err != nil {
					return total, err
				}
				if len(line) <= 2 {
					return total, nil
				}
			}
		}
		if _, err := c.br.Discard(int(size) + 2); err != nil {
			return total, err
		}
		total += size
	}
}
