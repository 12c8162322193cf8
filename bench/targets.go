package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/demo/idp"
)

// Sizes of the large identity.
const (
	largeGroups   = 300
	largePolicies = 50
	// largeAssertionBytes is about the size of the large user's signed
	// assertion (its groups claim dominates), for the floor that sends
	// the same headers.
	largeAssertionBytes = 10_000
)

// target is a running proxy under test.
type target struct {
	name   string
	short  string // for progress lines
	base   string // http://host:port
	cookie string // session cookie header value, "" for the floor
	pid    int    // the proxy process
	extra  int    // another process whose CPU counts (memcached), 0 for none
	cold   []time.Duration
}

// procs tracks the processes the bench started, to stop them on exit.
type procs struct {
	mu   sync.Mutex
	cmds []*exec.Cmd
}

func (p *procs) add(c *exec.Cmd) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cmds = append(p.cmds, c)
}

// stop kills and reaps one process the bench started.
func (p *procs) stop(c *exec.Cmd) {
	p.mu.Lock()
	found := false
	for i, x := range p.cmds {
		if x == c {
			p.cmds = append(p.cmds[:i], p.cmds[i+1:]...)
			found = true
			break
		}
	}
	p.mu.Unlock()
	if found {
		_ = c.Process.Kill()
		_ = c.Wait()
	}
}

func (p *procs) stopAll() {
	p.mu.Lock()
	cmds := p.cmds
	p.cmds = nil
	p.mu.Unlock()
	for i := len(cmds) - 1; i >= 0; i-- {
		_ = cmds[i].Process.Kill()
		_ = cmds[i].Wait()
	}
}

// command runs bin pinned to cpu when cpu is not "".
func command(cpu, bin string, args ...string) *exec.Cmd {
	if cpu == "" {
		return exec.Command(bin, args...)
	}
	return exec.Command("taskset", append([]string{"-c", cpu, bin}, args...)...)
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitTCP(addr string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

func startMemcached(ps *procs, cpu string) (string, *exec.Cmd, error) {
	addr := freeAddr()
	_, port, _ := net.SplitHostPort(addr)
	args := []string{"-l", "127.0.0.1", "-p", port, "-U", "0", "-m", "128", "-t", "1"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "root")
	}
	cmd := command(cpu, "memcached", args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("memcached (run make deps or apt-get install memcached): %w", err)
	}
	ps.add(cmd)
	if !waitTCP(addr, 5*time.Second) {
		return "", nil, errors.New("memcached did not start")
	}
	return addr, cmd, nil
}

func startFloor(ps *procs, bin, cpu, upstream string, extra ...string) (*target, error) {
	addr := freeAddr()
	cmd := command(cpu, bin, append([]string{"-listen", addr, "-upstream", upstream}, extra...)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ps.add(cmd)
	if !waitTCP(addr, 10*time.Second) {
		return nil, errors.New("floor did not start")
	}
	return &target{name: "floor: httputil.ReverseProxy, no auth", short: "floor", base: "http://" + addr, pid: cmd.Process.Pid}, nil
}

// benchIdP is the OIDC provider every Gatehouse target signs in against.
type benchIdP struct {
	issuer string
}

const (
	benchClientID     = "gatehouse-bench"
	benchClientSecret = "bench-client-secret"
	smallUser         = "bench@example.com"
	largeUser         = "large@example.com"
)

// startIdP serves demo/idp with two users: one in a single group, one in
// largeGroups groups. redirects are the Gatehouse callback URLs.
func startIdP(redirects []string) (*benchIdP, error) {
	addr := freeAddr()
	issuer := "http://" + addr
	groups := make([]string, largeGroups)
	for i := range groups {
		groups[i] = fmt.Sprintf("team-%03d-engineering", i)
	}
	provider, err := idp.New(idp.Config{
		Issuer: issuer,
		Users: []idp.User{
			{Subject: "1", Email: smallUser, EmailVerified: true, PreferredUsername: "bench", Groups: []string{"staff"}, Password: "pw"},
			{Subject: "2", Email: largeUser, EmailVerified: true, PreferredUsername: "large", Groups: groups, Password: "pw"},
		},
		Clients: []idp.Client{{ID: benchClientID, Secret: benchClientSecret, RedirectURIs: redirects}},
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	go func() { _ = (&http.Server{Handler: provider, ReadHeaderTimeout: 10 * time.Second}).Serve(ln) }()
	return &benchIdP{issuer: issuer}, nil
}

// largePoliciesJSON is GATEHOUSE_POLICIES for the large target: policies
// that each need a group the user is in, on paths the bench never asks for,
// so every request is checked against all of them and none applies.
func largePoliciesJSON() string {
	type policy struct {
		Path          string   `json:"path"`
		AllowedGroups []string `json:"allowed_groups"`
	}
	ps := make([]policy, largePolicies)
	for i := range ps {
		ps[i] = policy{Path: fmt.Sprintf("^/never-%d(/|$)", i), AllowedGroups: []string{fmt.Sprintf("team-%03d-engineering", i)}}
	}
	b, _ := json.Marshal(ps)
	return string(b)
}

// gatehouseSpec is one Gatehouse configuration under test.
type gatehouseSpec struct {
	name, short string
	store       string // memory or memcache
	user        string // who signs in
	policies    string // GATEHOUSE_POLICIES, "" for none
	addr        string // listen address, fixed up front for the redirect URI
}

func (s gatehouseSpec) public() string { return "http://" + s.addr }

func (s gatehouseSpec) env(upstream, issuer, memcached string, assertion bool) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"GATEHOUSE_SERVER_LISTEN=" + s.addr,
		"GATEHOUSE_SERVER_PUBLIC_URL=" + s.public(),
		"GATEHOUSE_SERVER_METRICS_LISTEN=",
		"GATEHOUSE_UPSTREAM_URL=" + upstream,
		"GATEHOUSE_AUTH_ALLOWED_DOMAINS=example.com",
		"GATEHOUSE_AUTH_OIDC_CORP_ISSUER_URL=" + issuer,
		"GATEHOUSE_AUTH_OIDC_CORP_CLIENT_ID=" + benchClientID,
		"GATEHOUSE_AUTH_OIDC_CORP_CLIENT_SECRET=" + benchClientSecret,
		"GATEHOUSE_SESSION_SECRET=bench-secret-0123456789abcdef0123456789",
		"GATEHOUSE_SESSION_COOKIE_SECURE=false",
		"GATEHOUSE_SESSION_STORE_TYPE=" + s.store,
		"GATEHOUSE_LOGGING_LEVEL=error", // the access log would measure the terminal
		"GATEHOUSE_HEADERS_ASSERTION_ENABLED=" + fmt.Sprint(assertion),
	}
	if s.store == "memcache" {
		env = append(env, "GATEHOUSE_SESSION_STORE_MEMCACHE_SERVERS="+memcached)
	}
	if s.policies != "" {
		env = append(env, "GATEHOUSE_POLICIES="+s.policies)
	}
	return env
}

// startGatehouse starts the binary and waits for the first 200 on /ready;
// it returns the process and that cold start, measured from just before
// the process is started.
func startGatehouse(ps *procs, bin, cpu string, env []string, public string) (*exec.Cmd, time.Duration, error) {
	cmd := command(cpu, bin, "serve")
	cmd.Env = env
	cmd.Stderr = os.Stderr
	poll := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	ps.add(cmd)
	deadline := t0.Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := poll.Get(public + "/ready"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cmd, time.Since(t0), nil
			}
		}
		if exited(cmd.Process.Pid) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	ps.stop(cmd)
	return nil, 0, errors.New("gatehouse did not become ready (its log is above)")
}

// exited reports whether a child has exited (it is a zombie until waited for).
func exited(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X'
}

var (
	formAction  = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
	hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)"`)
)

// signIn goes through the OIDC flow as user and returns the Cookie header
// value that carries the session.
func signIn(public, user string) (string, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := c.Get(public + "/oauth2/start?provider=corp&rd=/")
	if err != nil {
		return "", err
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := formAction.FindSubmatch(page)
	if m == nil {
		return "", fmt.Errorf("no login form (status %d)", resp.StatusCode)
	}
	form := url.Values{"username": {user}, "password": {"pw"}}
	for _, h := range hiddenInput.FindAllSubmatch(page, -1) {
		form.Set(string(h[1]), html.UnescapeString(string(h[2])))
	}
	resp, err = c.PostForm(html.UnescapeString(string(m[1])), form)
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("sign-in ended with %d", resp.StatusCode)
	}
	u, _ := url.Parse(public)
	var parts []string
	for _, ck := range jar.Cookies(u) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	if len(parts) == 0 {
		return "", errors.New("no session cookie after sign-in")
	}
	return strings.Join(parts, "; "), nil
}
