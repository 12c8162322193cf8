package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/demo/idp"
)

// pause freezes the process (SIGSTOP): it keeps its port and records but
// answers nothing, like a node cut off by the network.
func (n *memcachedNode) pause() {
	n.t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		n.t.Fatal(err)
	}
	waitFor(n.t, 10*time.Second, "memcached to stop", func() bool { return n.threadsIn('T') })
}

func (n *memcachedNode) resume() {
	n.t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		n.t.Fatal(err)
	}
	waitFor(n.t, 10*time.Second, "memcached to resume", func() bool { return !n.threadsIn('T') })
}

// threadsIn reports whether every thread of the process is in state
// (from /proc/PID/task/TID/stat: T stopped).
func (n *memcachedNode) threadsIn(state byte) bool {
	dir := fmt.Sprintf("/proc/%d/task", n.cmd.Process.Pid)
	tasks, err := os.ReadDir(dir)
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(dir + "/" + task.Name() + "/stat")
		if err != nil {
			return false
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) || b[i+2] != state {
			return false
		}
	}
	return true
}

// memcachedStats returns the counters of the memcached at addr.
func memcachedStats(addr string) (map[string]int64, error) {
	return memcachedCommand(addr, "stats")
}

func memcachedCommand(addr, cmd string) (map[string]int64, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\r\n", cmd); err != nil {
		return nil, err
	}
	out := map[string]int64{}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimSpace(line)
		switch {
		case line == "END" || line == "RESET":
			return out, nil
		case strings.HasPrefix(line, "STAT "):
			f := strings.Fields(line)
			if v, err := strconv.ParseInt(f[2], 10, 64); err == nil && len(f) == 3 {
				out[f[1]] = v
			}
		default:
			return nil, fmt.Errorf("%s: %q", cmd, line)
		}
	}
}

// signInQuietly is signInWithClientVia for goroutines: it returns what
// went wrong instead of failing the test.
func signInQuietly(c *http.Client, s *stack, u idp.User) error {
	get := func(u string) (*http.Response, error) {
		resp, err := c.Get(u)
		if err != nil {
			return nil, err
		}
		return resp, nil
	}
	resp, err := get(s.URL + "/oauth2/start?provider=corp&rd=" + url.QueryEscape("/"))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return fmt.Errorf("start: %d", resp.StatusCode)
	}
	form, err := get(resp.Header.Get("Location"))
	if err != nil {
		return err
	}
	b, err := io.ReadAll(form.Body)
	form.Body.Close()
	if err != nil {
		return err
	}
	m := formAction.FindStringSubmatch(string(b))
	if m == nil {
		return fmt.Errorf("no login form: %s", b)
	}
	vals := url.Values{"username": {u.Email}, "password": {u.Password}}
	for _, h := range hiddenInput.FindAllStringSubmatch(string(b), -1) {
		vals.Set(h[1], html.UnescapeString(h[2]))
	}
	resp, err = c.PostForm(html.UnescapeString(m[1]), vals)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return fmt.Errorf("login form: %d", resp.StatusCode)
	}
	resp, err = get(resp.Header.Get("Location"))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return fmt.Errorf("callback: %d", resp.StatusCode)
	}
	return nil
}

// outcome is one request of the steady load.
type outcome struct {
	status int // 0: transport error
	took   time.Duration
	phase  string
}

// TestMemcachedNodeLossSignsOutNobody runs two Gatehouse replicas over
// three memcached with replicas: 2, signs in a few hundred users, keeps a
// steady load on both replicas, kills one memcached and later starts it
// again (empty). Nobody may be signed out, and a request may fail only
// within one timeout.
func TestMemcachedNodeLossSignsOutNobody(t *testing.T) {
	t.Parallel()
	const (
		sessions = 240
		timeout  = 250 * time.Millisecond
		slack    = time.Second // a loaded CI machine, the race detector
	)
	nodes := make([]*memcachedNode, 3)
	var servers []string
	for i := range nodes {
		nodes[i] = startMemcachedAt(t, "127.0.0.1", portFreeOn(t, "127.0.0.1"))
		servers = append(servers, nodes[i].addr())
	}
	users := make([]idp.User, sessions)
	for i := range users {
		users[i] = idp.User{Subject: fmt.Sprint(5000 + i), Email: fmt.Sprintf("user%03d@example.com", i), EmailVerified: true,
			Name: fmt.Sprintf("User %d", i), PreferredUsername: fmt.Sprintf("user%03d", i), Password: password}
	}
	s := start(t, options{users: users, env: []string{
		"GATEHOUSE_SESSION_STORE_TYPE=memcache",
		"GATEHOUSE_SESSION_STORE_MEMCACHE_SERVERS=" + strings.Join(servers, ","),
		"GATEHOUSE_SESSION_STORE_MEMCACHE_REPLICAS=2",
		"GATEHOUSE_SESSION_STORE_MEMCACHE_TIMEOUT=" + timeout.String(),
	}})
	bases := []string{s.URL, s.replica()}

	// One session per user, signed in by a few workers at once.
	began := time.Now()
	cookies := make([]string, sessions)
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	next := atomic.Int32{}
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= sessions {
					return
				}
				jar, _ := cookiejar.New(nil)
				c := &http.Client{Jar: jar, Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
					return http.ErrUseLastResponse
				}}
				if err := signInQuietly(c, s, users[i]); err != nil {
					errs <- fmt.Errorf("signing in %s: %w", users[i].Email, err)
					return
				}
				for _, ck := range jar.Cookies(mustURL(t, s.URL)) {
					if ck.Name == "_gatehouse" {
						cookies[i] = ck.Value
					}
				}
				if cookies[i] == "" {
					errs <- fmt.Errorf("%s: no session cookie", users[i].Email)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d sessions signed in in %s", sessions, time.Since(began).Round(time.Millisecond))

	// Every record is on two of the three nodes.
	var items int64
	for _, n := range nodes {
		st, err := memcachedStats(n.addr())
		if err != nil {
			t.Fatal(err)
		}
		items += st["curr_items"]
	}
	// A session and a generation per user (and sign-in state records,
	// already gone): two copies each.
	if items < 2*2*sessions {
		t.Fatalf("%d items on the three nodes for %d sessions and generations with two copies each", items, 2*sessions)
	}

	// The steady load: every worker goes through the sessions, alternating
	// the replicas, and records every answer.
	var (
		mu       sync.Mutex
		outcomes []outcome
		phase    atomic.Value
		stop     atomic.Bool
		cursor   atomic.Int64
		wrong    atomic.Int32 // answers for somebody else
	)
	phase.Store("before")
	transport := &http.Transport{MaxIdleConnsPerHost: 8}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	var load sync.WaitGroup
	for w := 0; w < 6; w++ {
		load.Add(1)
		go func() {
			defer load.Done()
			for !stop.Load() {
				n := cursor.Add(1)
				i := int(n % sessions)
				req, _ := http.NewRequest(http.MethodGet, bases[n%2]+"/app", nil)
				req.Header.Set("Accept", "application/json")
				req.AddCookie(&http.Cookie{Name: "_gatehouse", Value: cookies[i]})
				p := phase.Load().(string)
				began := time.Now()
				resp, err := client.Do(req)
				o := outcome{took: time.Since(began), phase: p}
				if err == nil {
					o.status = resp.StatusCode
					var e echoed
					if resp.StatusCode == http.StatusOK {
						if json.NewDecoder(resp.Body).Decode(&e) != nil || len(e.Headers["X-Forwarded-Email"]) == 0 || e.Headers["X-Forwarded-Email"][0] != users[i].Email {
							wrong.Add(1)
						}
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(outcomes) }
	// Each phase runs until it has seen enough requests (and at least a
	// moment), so a slow machine gets the same coverage.
	runPhase := func(name string, minRequests int, minTime time.Duration) {
		phase.Store(name)
		from, began := count(), time.Now()
		waitFor(t, 30*time.Second, fmt.Sprintf("%d requests in phase %q", minRequests, name), func() bool {
			return count()-from >= minRequests && time.Since(began) >= minTime
		})
	}
	runPhase("before", sessions, 500*time.Millisecond)

	// A node hangs (cut off, keeping its records): requests that reach it
	// wait for the timeout, once per Gatehouse replica, and go on to the
	// record's other replica. Nothing is written meanwhile, so it comes
	// back with its records.
	hung := nodes[2]
	hung.pause()
	runPhase("node hung", 2*sessions, 2*time.Second)
	hung.resume()
	runPhase("node resumed", sessions, time.Second)

	// A node is killed: its records are gone.
	victim := nodes[1]
	victim.kill()
	runPhase("node down", 2*sessions, 2*time.Second)

	victim.start() // the same port, empty
	phase.Store("node returning")
	// Back in use once both Gatehouse replicas have found it again (their
	// probe logs it; it missed no write, so it is not flushed).
	backLines := func() int {
		n := 0
		for _, line := range strings.Split(s.logs.String(), "\n") {
			if strings.Contains(line, "memcached server in use again") && strings.Contains(line, victim.addr()) {
				n++
			}
		}
		return n
	}
	waitFor(t, 20*time.Second, "both Gatehouse replicas to use the restarted node again", func() bool { return backLines() >= 2 })
	for _, n := range nodes {
		if _, err := memcachedCommand(n.addr(), "stats reset"); err != nil {
			t.Fatal(err)
		}
	}
	runPhase("node back", 2*sessions, time.Second)
	stop.Store(true)
	load.Wait()

	// What the nodes saw after the return: reads whose first replica is
	// the returned node miss there (it is empty) and go on to the second.
	var gets, back, backMisses int64
	for _, n := range nodes {
		st, err := memcachedStats(n.addr())
		if err != nil {
			t.Fatal(err)
		}
		gets += st["cmd_get"]
		if n == victim {
			back, backMisses = st["cmd_get"], st["get_misses"]
		}
	}
	firstReads := gets - backMisses // every key read once in the first wave
	if firstReads > 0 {
		t.Logf("after the node came back: %d of %d record reads (%.0f%%) went to it first (the records that moved back to it; "+
			"about 1/3 expected with 3 nodes), %d of them missed there and were read from their second replica",
			back, firstReads, 100*float64(back)/float64(firstReads), backMisses)
	}

	byPhase := map[string][]outcome{}
	for _, o := range outcomes {
		byPhase[o.phase] = append(byPhase[o.phase], o)
	}
	var failed, signedOut int
	var slowest time.Duration
	for _, p := range []string{"before", "node hung", "node resumed", "node down", "node returning", "node back"} {
		var pf, ps int
		var maxOK, maxFailed time.Duration
		var slowOK int
		for _, o := range byPhase[p] {
			switch o.status {
			case http.StatusOK:
				maxOK = max(maxOK, o.took)
				if o.took >= timeout {
					slowOK++
				}
			case http.StatusUnauthorized, http.StatusFound, http.StatusForbidden:
				ps++
			default: // 503 (store error), or no answer
				pf++
				maxFailed = max(maxFailed, o.took)
			}
		}
		t.Logf("phase %-15q %5d requests, %d failed (slowest failure %s), %d signed out, slowest success %s (%d took a timeout or more)",
			p, len(byPhase[p]), pf, maxFailed.Round(time.Millisecond), ps, maxOK.Round(time.Millisecond), slowOK)
		failed, signedOut, slowest = failed+pf, signedOut+ps, max(slowest, maxFailed)
		if p == "node hung" && maxOK > timeout+slack {
			t.Errorf("with a node hung a request took %s, want at most one timeout (%s) and %s slack", maxOK, timeout, slack)
		}
	}
	if signedOut > 0 {
		t.Errorf("%d requests found their user signed out, want 0", signedOut)
	}
	if n := wrong.Load(); n > 0 {
		t.Errorf("%d requests were answered for another user", n)
	}
	if slowest > timeout+slack {
		t.Errorf("a failed request took %s, want at most one timeout (%s) and %s slack", slowest, timeout, slack)
	}
	for _, p := range []string{"before", "node back", "node resumed"} {
		for _, o := range byPhase[p] {
			if o.status != http.StatusOK {
				t.Errorf("phase %q: a request answered %d with every node up", p, o.status)
				break
			}
		}
	}
	t.Logf("%d requests in all, %d failed, %d signed out", len(outcomes), failed, signedOut)
	if len(outcomes) < 4*sessions {
		t.Errorf("only %d requests ran", len(outcomes))
	}
}
