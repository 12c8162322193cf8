package e2e

import (
	"context"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse/gatehouse/demo/echo"
	"github.com/gatehouse/gatehouse/demo/idp"
)

// Several upstreams behind one Gatehouse, by host. The hosts are names
// under gatehouse.test, all on loopback: Chromium maps them with
// --host-resolver-rules, and Go clients dial 127.0.0.1 whatever the name
// (so the Host header and the cookie jar see the names).
const routesDomain = "gatehouse.test"

// carol passes the global filter (example.com) but is not in ops.
var carol = idp.User{Subject: "1004", Email: "carol@example.com", EmailVerified: true, Name: "Carol", PreferredUsername: "carol",
	Groups: []string{"staff"}, Password: password}

// routesStack is a Gatehouse with three routes: grafana, prometheus and
// alerts (alertmanager, for group ops only), each its own upstream.
type routesStack struct {
	port string
	logs *syncBuffer
}

// url is base URL of a host under routesDomain ("auth" is public_url's).
func (s *routesStack) url(host string) string {
	return "http://" + host + "." + routesDomain + ":" + s.port
}

// namedUpstream answers /whoami with its name and the identity it was
// given, and echoes anything else.
func namedUpstream(t *testing.T, name string) string {
	t.Helper()
	e := echo.NewHandler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/whoami" {
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "%s %s authorization=%t", name, r.Header.Get("X-Forwarded-Email"), strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ey"))
			return
		}
		e.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func startRoutes(t *testing.T, extraSession string) *routesStack {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	s := &routesStack{port: port, logs: &syncBuffer{}}
	public := s.url("auth")

	idpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + idpLn.Addr().String()
	provider, err := idp.New(idp.Config{
		Issuer: issuer, Users: []idp.User{alice, carol, mallory},
		Clients: []idp.Client{{ID: "gatehouse", Secret: "client-secret-e2e", RedirectURIs: []string{public + "/oauth2/callback/corp"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	idpSrv := &http.Server{Handler: provider}
	go func() { _ = idpSrv.Serve(idpLn) }()
	t.Cleanup(func() { _ = idpSrv.Close() })

	config := fmt.Sprintf(`
server:
  listen: "127.0.0.1:%[1]s"
  public_url: %[2]q
  metrics_listen: ""
session:
  secret: "e2e-session-secret-0123456789abcdef"
  cookie_secure: false
%[3]s
auth:
  allowed_domains: ["example.com"]
  oidc:
    corp: {display_name: "Corp SSO", issuer_url: %[4]q, client_id: gatehouse, client_secret: client-secret-e2e}
logging: {level: debug}
routes:
  - name: grafana
    from: {host: "grafana.%[5]s"}
    to: %[6]q
    set_authorization: assertion
  - name: prometheus
    from: {host: "prometheus.%[5]s"}
    to: %[7]q
  - name: alertmanager
    from: {host: "alerts.%[5]s"}
    to: %[8]q
    allowed_groups: ["ops"]
`, port, public, extraSession, issuer, routesDomain, namedUpstream(t, "grafana"), namedUpstream(t, "prometheus"), namedUpstream(t, "alertmanager"))
	file := filepath.Join(t.TempDir(), "gatehouse.yaml")
	if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "serve", "--config", file)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	(&stack{t: t, logs: s.logs}).run(cmd, "http://127.0.0.1:"+port+"/ready") // probes answer on any host
	return s
}

// routesClient is a cookie-keeping client that does not follow redirects
// and reaches every name under routesDomain on loopback.
func routesClient(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	transport := &http.Transport{Proxy: nil, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err == nil && strings.HasSuffix(host, "."+routesDomain) {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		return dialer.DialContext(ctx, network, addr)
	}}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Jar: jar, Transport: transport, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// expectRedirect GETs u and returns where it redirects to.
func expectRedirect(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	resp := mustGet(t, c, u)
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("GET %s: %d, want a redirect:\n%s", u, resp.StatusCode, body)
	}
	loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return loc.String()
}

// logInAtProvider fills the provider's form at authorize and returns where
// the provider sends the browser back (the callback).
func logInAtProvider(t *testing.T, c *http.Client, authorize string, u idp.User) string {
	t.Helper()
	body := readBody(t, mustGet(t, c, authorize))
	m := formAction.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no login form at %s:\n%s", authorize, body)
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
	return resp.Header.Get("Location")
}

// handoffCode walks a client that is signed in on the auth host from a
// route host's page to the hand-off URL, and returns it unvisited.
func handoffCode(t *testing.T, c *http.Client, page string) string {
	t.Helper()
	start := expectRedirect(t, c, page)
	if !strings.Contains(start, "/oauth2/start?") || !strings.Contains(start, "binding=") {
		t.Fatalf("%s sent the browser to %s, want the auth host's start with a binding", page, start)
	}
	handoff := expectRedirect(t, c, start)
	u := mustURL(t, page)
	if !strings.HasPrefix(handoff, u.Scheme+"://"+u.Host+"/oauth2/handoff?code=") {
		t.Fatalf("start sent the browser to %s, want %s's hand-off", handoff, u.Host)
	}
	return handoff
}

func TestRoutesHandoffCodes(t *testing.T) {
	t.Parallel()
	s := startRoutes(t, "")
	c := routesClient(t)
	grafana := s.url("grafana")

	// The first visit signs in on the auth host (never on a route host).
	start := expectRedirect(t, c, grafana+"/d/home?orgId=1")
	if !strings.HasPrefix(start, s.url("auth")+"/oauth2/start?rd="+url.QueryEscape(grafana+"/d/home?orgId=1")+"&binding=") {
		t.Fatalf("route host sent the browser to %s", start)
	}
	callback := logInAtProvider(t, c, expectRedirect(t, c, start), alice)
	if back := expectRedirect(t, c, callback); back != grafana+"/d/home?orgId=1" {
		t.Fatalf("after sign-in the browser went to %s", back)
	}

	// A code used on another host is refused, and burned.
	code := handoffCode(t, c, grafana+"/d/home?orgId=1")
	other := strings.Replace(code, grafana, s.url("prometheus"), 1)
	if resp := mustGet(t, c, other); resp.StatusCode != http.StatusBadRequest || !strings.Contains(readBody(t, resp), "another address") {
		t.Fatalf("code on another host: %d", resp.StatusCode)
	}
	if resp := mustGet(t, c, code); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("code after its refusal: %d", resp.StatusCode)
	}
	// The same with the Host header alone saying another host.
	code = handoffCode(t, c, grafana+"/")
	req, _ := http.NewRequest(http.MethodGet, strings.Replace(code, grafana, "http://127.0.0.1:"+s.port, 1), nil)
	req.Host = "prometheus." + routesDomain + ":" + s.port
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("code with another Host header: %v %v", resp, err)
	}

	// A fresh code works once: the route host's own session, then the page.
	code = handoffCode(t, c, grafana+"/d/home?orgId=1")
	if back := expectRedirect(t, c, code); back != grafana+"/d/home?orgId=1" {
		t.Fatalf("hand-off went to %s", back)
	}
	for _, ck := range c.Jar.Cookies(mustURL(t, grafana)) {
		if strings.Contains(code, ck.Value) {
			t.Fatal("the hand-off URL carries a cookie value")
		}
	}
	resp := mustGet(t, c, grafana+"/whoami")
	if body := readBody(t, resp); resp.StatusCode != 200 || body != "grafana alice@example.com authorization=true" {
		t.Fatalf("grafana after hand-off: %d %q", resp.StatusCode, body)
	}
	// Replayed: refused, and the session it made is unaffected.
	if resp := mustGet(t, c, code); resp.StatusCode != http.StatusBadRequest || !strings.Contains(readBody(t, resp), "already been used") {
		t.Fatalf("replayed code: %d", resp.StatusCode)
	}
	// Another browser (no binding cookie) cannot use a code either.
	code = handoffCode(t, c, s.url("prometheus")+"/")
	if resp := mustGet(t, routesClient(t), code); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("code in another browser: %d", resp.StatusCode)
	}

	// rd naming another port of a route host (another service there could
	// read a code from its URL): the code still goes to the route's origin
	// (public_url's scheme and port), and the browser lands on the path.
	prometheus := s.url("prometheus")
	start = expectRedirect(t, c, prometheus+"/graph")
	su := mustURL(t, start)
	q := su.Query()
	q.Set("rd", "http://PROMETHEUS."+routesDomain+".:1/graph?g0.expr=up")
	su.RawQuery = q.Encode()
	handoff := expectRedirect(t, c, su.String())
	if !strings.HasPrefix(handoff, prometheus+"/oauth2/handoff?code=") {
		t.Fatalf("rd on port 1: the code went to %s, want %s", handoff, prometheus)
	}
	if back := expectRedirect(t, c, handoff); back != prometheus+"/graph?g0.expr=up" {
		t.Fatalf("rd on port 1: the hand-off went to %s", back)
	}

	// Unknown hosts get 404 and never an upstream, by name or by Host.
	if resp := mustGet(t, c, s.url("unknown")+"/whoami"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown host: %d", resp.StatusCode)
	}
	req, _ = http.NewRequest(http.MethodGet, "http://127.0.0.1:"+s.port+"/whoami", nil)
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("an IP address as Host: %v %v", resp, err)
	}
}

func TestRoutesRedirectTargets(t *testing.T) {
	t.Parallel()
	s := startRoutes(t, "")
	for _, tt := range []struct{ rd, want string }{
		{"http://evil." + routesDomain + ":" + s.port + "/x", "/"}, // not a route host
		{"http://evil.example.net/", "/"},
		{s.url("prometheus") + "/graph", s.url("prometheus") + "/graph"},
		{"http://PROMETHEUS." + routesDomain + ":1/graph", "http://PROMETHEUS." + routesDomain + ":1/graph"}, // any port
	} {
		c := routesClient(t)
		start := expectRedirect(t, c, s.url("auth")+"/oauth2/start?provider=corp&rd="+url.QueryEscape(tt.rd))
		if got := expectRedirect(t, c, logInAtProvider(t, c, start, alice)); got != tt.want && got != s.url("auth")+tt.want {
			t.Errorf("rd=%s: sent to %s, want %s", tt.rd, got, tt.want)
		}
	}
}

func TestRoutesSharedCookieDomain(t *testing.T) {
	t.Parallel()
	s := startRoutes(t, `  cookie_domain: ".`+routesDomain+`"`)
	c := routesClient(t)
	start := expectRedirect(t, c, s.url("prometheus")+"/whoami")
	if strings.Contains(start, "binding=") {
		t.Fatalf("a hand-off binding with a shared cookie domain: %s", start)
	}
	if back := expectRedirect(t, c, logInAtProvider(t, c, expectRedirect(t, c, start), alice)); back != s.url("prometheus")+"/whoami" {
		t.Fatalf("after sign-in: %s", back)
	}
	// One cookie serves every route host: no hand-off, no second sign-in.
	for _, host := range []string{"prometheus", "grafana", "alerts"} {
		resp := mustGet(t, c, s.url(host)+"/whoami")
		if body := readBody(t, resp); resp.StatusCode != 200 || !strings.Contains(body, "alice@example.com") {
			t.Errorf("%s: %d %q", host, resp.StatusCode, body)
		}
	}
}

// routesBrowser is headless Chromium that resolves every name under
// routesDomain to loopback.
func routesBrowser(t *testing.T) context.Context {
	t.Helper()
	return browser(t, chromedp.Flag("host-resolver-rules", "MAP *."+routesDomain+" 127.0.0.1"))
}

// browserText navigates to u and returns the page's text.
func browserText(t *testing.T, ctx context.Context, u string) string {
	t.Helper()
	var body string
	if err := chromedp.Run(ctx, chromedp.Navigate(u), chromedp.Text("body", &body, chromedp.ByQuery)); err != nil {
		t.Fatalf("%s: %v", u, err)
	}
	return strings.TrimSpace(body)
}

// waitForText polls the page until its text contains want: a page in the
// middle of a redirect chain cannot be read, so errors are retried.
func waitForText(t *testing.T, ctx context.Context, want string) string {
	t.Helper()
	var body string
	waitFor(t, 20*time.Second, "a page saying "+want, func() bool {
		err := chromedp.Run(ctx, chromedp.Evaluate(`document.body ? document.body.innerText : ""`, &body))
		return err == nil && strings.Contains(body, want)
	})
	return strings.TrimSpace(body)
}

func signInAtProviderForm(t *testing.T, ctx context.Context, u idp.User) {
	t.Helper()
	if err := chromedp.Run(ctx,
		chromedp.WaitVisible(`#username`, chromedp.ByID),
		chromedp.SendKeys(`#username`, u.Email, chromedp.ByID),
		chromedp.SendKeys(`#password`, u.Password, chromedp.ByID),
		chromedp.Click(`#login`, chromedp.ByID),
	); err != nil {
		t.Fatalf("signing in as %s: %v", u.Email, err)
	}
}

func TestBrowserRoutesOneSignInForEveryHost(t *testing.T) {
	t.Parallel()
	s := startRoutes(t, "")
	ctx := routesBrowser(t)
	if err := chromedp.Run(ctx, chromedp.Navigate(s.url("grafana")+"/whoami?x=1")); err != nil {
		t.Fatal(err)
	}
	signInAtProviderForm(t, ctx, alice)
	want := "grafana alice@example.com authorization=true"
	if body := waitForText(t, ctx, "grafana "); body != want {
		t.Fatalf("after sign-in: %q, want %q", body, want)
	}
	if loc := location(t, ctx); loc != s.url("grafana")+"/whoami?x=1" {
		t.Errorf("landed on %s", loc)
	}
	// The other hosts: no second sign-in, each its own upstream.
	for host, want := range map[string]string{
		"prometheus": "prometheus alice@example.com authorization=false",
		"alerts":     "alertmanager alice@example.com authorization=false",
	} {
		if body := browserText(t, ctx, s.url(host)+"/whoami"); body != want {
			t.Errorf("%s: %q, want %q", host, body, want)
		}
	}
	// An unknown host: 404, never an upstream.
	if body := browserText(t, ctx, s.url("unknown")+"/whoami"); !strings.Contains(body, "There is no service at this address") {
		t.Errorf("unknown host: %q", body)
	}
}

func TestBrowserRouteFilterRefusesWhomGlobalFilterAdmits(t *testing.T) {
	t.Parallel()
	s := startRoutes(t, "")
	ctx := routesBrowser(t)
	// carol (example.com, not in ops) passes the global filter...
	if err := chromedp.Run(ctx, chromedp.Navigate(s.url("prometheus")+"/whoami")); err != nil {
		t.Fatal(err)
	}
	signInAtProviderForm(t, ctx, carol)
	waitForText(t, ctx, "prometheus carol@example.com")
	// ...but not alertmanager's.
	if err := chromedp.Run(ctx, chromedp.Navigate(s.url("alerts")+"/whoami")); err != nil {
		t.Fatal(err)
	}
	if got := text(t, ctx, "#denied"); got != "Access denied" {
		t.Fatalf("heading = %q", got)
	}
	if got := text(t, ctx, "#reason"); !strings.Contains(got, "group") || strings.Contains(got, "ops") {
		t.Fatalf("reason = %q", got)
	}
}
