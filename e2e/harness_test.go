// Package e2e runs the real gatehouse binary against a real OIDC provider
// and a real upstream, all on loopback, and drives headless Chromium
// through the whole sign-in.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse/gatehouse/demo/echo"
	"github.com/gatehouse/gatehouse/demo/idp"
	"github.com/gatehouse/gatehouse/internal/fakegithub"
)

// binary is the gatehouse binary built once for the whole suite.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gatehouse-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "gatehouse")
	build := exec.Command("go", "build", "-race", "-o", binary, "./cmd/gatehouse")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building gatehouse:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const password = "correct horse"

var (
	alice   = idp.User{Subject: "1001", Email: "alice@example.com", EmailVerified: true, Name: "Alice", PreferredUsername: "alice", Groups: []string{"ops", "staff"}, Password: password}
	mallory = idp.User{Subject: "1002", Email: "mallory@evil.test", EmailVerified: true, Name: "Mallory", PreferredUsername: "mallory", Groups: []string{"staff"}, Password: password}
)

// stack is one running set: provider, upstream and gatehouse.
type stack struct {
	t        *testing.T
	URL      string // gatehouse's public URL
	IdP      *idp.Provider
	Upstream string
	GitHub   *fakegithub.Server // when options.github
	gitlab   bool
	logs     *syncBuffer
	settings [][2]string // settings[0] is server.listen
	opts     options
	// Of the first process launched:
	proc       *exec.Cmd
	exited     chan struct{} // closed when it exits
	configFile string        // with options.yamlOnly

	upstreamInFlight *atomic.Int32 // requests the upstream is serving now
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// options change how a stack is started.
type options struct {
	env       []string // extra GATEHOUSE_ variables
	yamlOnly  bool     // configure through a YAML file instead of the environment
	extraYAML string
	gitlab    bool // the provider plays GitLab (auth.gitlab) instead of a generic OIDC provider "corp"
	users     []idp.User
	github    bool // also enable GitHub (a fake GitHub Enterprise Server)
	// idp edits the provider's configuration before it starts; public is
	// gatehouse's public URL (for redirect and logout URIs).
	idp func(c *idp.Config, public string)
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs a provider, an echo upstream and the gatehouse binary.
func start(t *testing.T, o options) *stack {
	t.Helper()
	var inFlight atomic.Int32
	echoHandler := echo.NewHandler()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		echoHandler.ServeHTTP(w, r)
	}))
	t.Cleanup(upstream.Close)

	idpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + idpLn.Addr().String()
	addr := freePort(t)
	public := "http://" + addr
	name := "corp"
	if o.gitlab {
		name = "gitlab"
	}
	users := o.users
	if users == nil {
		users = []idp.User{alice, mallory}
	}
	idpConfig := idp.Config{
		Issuer:  issuer,
		Users:   users,
		Clients: []idp.Client{{ID: "gatehouse", Secret: "client-secret-e2e", RedirectURIs: []string{public + "/oauth2/callback/" + name}}},
	}
	if o.idp != nil {
		o.idp(&idpConfig, public)
	}
	provider, err := idp.New(idpConfig)
	if err != nil {
		t.Fatal(err)
	}
	idpSrv := &http.Server{Handler: provider}
	go func() { _ = idpSrv.Serve(idpLn) }()
	t.Cleanup(func() { _ = idpSrv.Close() })

	s := &stack{t: t, URL: public, IdP: provider, Upstream: upstream.URL, gitlab: o.gitlab, logs: &syncBuffer{}, upstreamInFlight: &inFlight}
	settings := [][2]string{
		{"server.listen", addr},
		{"server.public_url", public},
		{"server.metrics_listen", ""},
		{"upstream.url", upstream.URL},
		{"session.secret", "e2e-session-secret-0123456789abcdef"},
		{"session.cookie_secure", "false"},
		{"logging.level", "debug"},
	}
	if o.gitlab {
		settings = append(settings, [][2]string{
			{"auth.gitlab.enabled", "true"},
			{"auth.gitlab.url", issuer},
			{"auth.gitlab.client_id", "gatehouse"},
			{"auth.gitlab.client_secret", "client-secret-e2e"},
		}...)
	} else {
		settings = append(settings, [][2]string{
			{"auth.allowed_domains", "example.com"},
			{"auth.oidc.corp.display_name", "Corp SSO"},
			{"auth.oidc.corp.issuer_url", issuer},
			{"auth.oidc.corp.client_id", "gatehouse"},
			{"auth.oidc.corp.client_secret", "client-secret-e2e"},
		}...)
	}
	if o.github {
		s.GitHub = fakegithub.New(fakegithub.Config{Enterprise: true, ClientID: "gh-client", ClientSecret: "gh-secret-e2e",
			RedirectURIs: []string{public + "/oauth2/callback/github"}})
		ghe := httptest.NewServer(s.GitHub)
		t.Cleanup(ghe.Close)
		settings = append(settings, [][2]string{
			{"auth.github.enabled", "true"},
			{"auth.github.url", ghe.URL}, // api_url follows as <url>/api/v3
			{"auth.github.client_id", "gh-client"},
			{"auth.github.client_secret", "gh-secret-e2e"},
			{"auth.github.allowed_organizations", "acme"},
		}...)
	}
	s.settings, s.opts = settings, o
	s.launch(addr)
	return s
}

// launch starts one gatehouse process listening on addr with the stack's
// settings; a second call starts another replica.
func (s *stack) launch(addr string) {
	t, o := s.t, s.opts
	t.Helper()
	settings := append([][2]string{{"server.listen", addr}}, s.settings[1:]...)
	cmd := exec.Command(binary, "serve")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	if o.yamlOnly {
		var y strings.Builder
		y.WriteString(yamlFor(settings))
		y.WriteString(o.extraYAML)
		file := filepath.Join(t.TempDir(), "gatehouse.yaml")
		if err := os.WriteFile(file, []byte(y.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd.Args = append(cmd.Args, "--config", file)
		if s.configFile == "" {
			s.configFile = file
		}
	} else {
		for _, kv := range settings {
			cmd.Env = append(cmd.Env, envName(kv[0])+"="+kv[1])
		}
	}
	cmd.Env = append(cmd.Env, o.env...)
	s.run(cmd, "http://"+addr+"/ready")
}

// run starts a gatehouse process, stops it (by its PID) when the test
// ends, and waits until ready answers 200.
func (s *stack) run(cmd *exec.Cmd, ready string) {
	t := s.t
	t.Helper()
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	if s.proc == nil {
		s.proc, s.exited = cmd, done
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("gatehouse output:\n%s", s.logs.String())
		}
	})
	waitFor(t, 20*time.Second, "gatehouse /ready", func() bool {
		select {
		case <-done:
			t.Fatalf("gatehouse exited early:\n%s", s.logs.String())
		default:
		}
		resp, err := http.Get(ready)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// replica starts another gatehouse with the same configuration and
// returns its base URL (the public URL stays the first one's, as behind a
// load balancer).
func (s *stack) replica() string {
	addr := freePort(s.t)
	s.launch(addr)
	return "http://" + addr
}

func envName(key string) string {
	return "GATEHOUSE_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// yamlFor writes dotted settings as nested YAML (two levels of nesting
// beyond the section are enough for these keys).
func yamlFor(settings [][2]string) string {
	var b strings.Builder
	written := map[string]bool{}
	for _, kv := range settings {
		parts := strings.Split(kv[0], ".")
		for i := 0; i < len(parts)-1; i++ {
			prefix := strings.Join(parts[:i+1], ".")
			if !written[prefix] {
				written[prefix] = true
				fmt.Fprintf(&b, "%s%s:\n", strings.Repeat("  ", i), parts[i])
			}
		}
		v := kv[1]
		if parts[len(parts)-1] == "allowed_domains" {
			v = "[" + fmt.Sprintf("%q", v) + "]"
		} else if v != "false" && v != "true" {
			v = fmt.Sprintf("%q", v)
		}
		fmt.Fprintf(&b, "%s%s: %s\n", strings.Repeat("  ", len(parts)-1), parts[len(parts)-1], v)
	}
	return b.String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// browser starts a headless Chromium with a fresh profile; extra are
// more allocator options (e.g. host-resolver-rules).
func browser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Fatal("chromium not found: run make test, which installs it")
	}
	// Chromium may still be writing its profile as it exits, which makes
	// t.TempDir's cleanup fail; remove it ourselves, after the browser is
	// gone (cleanups run last-registered first), retrying briefly.
	profile, err := os.MkdirTemp("", "gatehouse-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; i < 40 && os.RemoveAll(profile) != nil; i++ {
			time.Sleep(50 * time.Millisecond)
		}
	})
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(profile),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
	)
	opts = append(opts, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// signInWithBrowser goes from the sign-in page through the provider's form.
func signInWithBrowser(t *testing.T, ctx context.Context, s *stack, startPath string, u idp.User) {
	t.Helper()
	signInWithBrowserVia(t, ctx, s, startPath, "corp", u)
}

// signInWithBrowserVia clicks the named provider's button.
func signInWithBrowserVia(t *testing.T, ctx context.Context, s *stack, startPath, provider string, u idp.User) {
	t.Helper()
	button := "#provider-" + provider
	err := chromedp.Run(ctx,
		chromedp.Navigate(s.URL+startPath),
		chromedp.WaitVisible(button, chromedp.ByID),
		chromedp.Click(button, chromedp.ByID),
		chromedp.WaitVisible(`#username`, chromedp.ByID),
		chromedp.SendKeys(`#username`, u.Email, chromedp.ByID),
		chromedp.SendKeys(`#password`, u.Password, chromedp.ByID),
		chromedp.Click(`#login`, chromedp.ByID),
	)
	if err != nil {
		t.Fatalf("signing in as %s: %v\n%s", u.Email, err, s.logs.String())
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	var out string
	if err := chromedp.Run(ctx, chromedp.WaitVisible(sel, chromedp.ByQuery), chromedp.Text(sel, &out, chromedp.ByQuery)); err != nil {
		t.Fatalf("reading %s: %v", sel, err)
	}
	return strings.TrimSpace(out)
}

func location(t *testing.T, ctx context.Context) string {
	t.Helper()
	var loc string
	if err := chromedp.Run(ctx, chromedp.Location(&loc)); err != nil {
		t.Fatal(err)
	}
	return loc
}

// httpClient is a cookie-keeping client that does not follow redirects.
func httpClient(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

var (
	formAction  = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
	hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)"`)
)

// signInWithClient runs the whole flow with plain HTTP (no browser) and
// returns the last response: the redirect to rd, or a denial.
func signInWithClient(t *testing.T, c *http.Client, s *stack, rd string, u idp.User) *http.Response {
	t.Helper()
	provider := "corp"
	if s.gitlab {
		provider = "gitlab"
	}
	return signInWithClientVia(t, c, s, rd, provider, u)
}

// signInFor signs in through provider and fails unless it succeeded.
func signInFor(t *testing.T, c *http.Client, s *stack, provider string, u idp.User) {
	t.Helper()
	resp := signInWithClientVia(t, c, s, "/", provider, u)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("signing in as %s: %d", u.Email, resp.StatusCode)
	}
}

func signInWithClientVia(t *testing.T, c *http.Client, s *stack, rd, provider string, u idp.User) *http.Response {
	t.Helper()
	resp := mustGet(t, c, s.URL+"/oauth2/start?provider="+provider+"&rd="+url.QueryEscape(rd))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("start: %d", resp.StatusCode)
	}
	form := mustGet(t, c, resp.Header.Get("Location"))
	body := readBody(t, form)
	m := formAction.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no login form:\n%s", body)
	}
	vals := url.Values{"username": {u.Email}, "password": {u.Password}}
	for _, h := range hiddenInput.FindAllStringSubmatch(body, -1) {
		vals.Set(h[1], html.UnescapeString(h[2]))
	}
	resp, err := c.PostForm(html.UnescapeString(m[1]), vals)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("login form: %d", resp.StatusCode)
	}
	return mustGet(t, c, resp.Header.Get("Location"))
}

func mustGet(t *testing.T, c *http.Client, u string) *http.Response {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
