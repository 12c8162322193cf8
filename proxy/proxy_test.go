package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/authn"
	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/metrics"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
	"github.com/gatehouse/gatehouse/tokens"
)

// fixture is a proxy in front of a recording upstream, with a provider
// whose discovery never succeeds (sessions are made directly).
type fixture struct {
	h        http.Handler
	sessions *session.Manager
	seen     chan *http.Request
	upstream *httptest.Server
}

type fixtureOpts struct {
	skipAuth, api []string
	paths         [2]string // upstream.encoded_slashes, upstream.path_parameters
	tokens        *tokens.Config
	policies      []filters.PolicyConfig
	trusted       []string
	upstream      http.Handler
	timeout       time.Duration // upstream.timeout; 0 for 5s
}

func newFixture(t testing.TB, o fixtureOpts) *fixture {
	t.Helper()
	f := &fixture{seen: make(chan *http.Request, 10)}
	up := o.upstream
	if up == nil {
		up = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f.seen <- r.Clone(context.Background())
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(r.Header)
		})
	}
	f.upstream = httptest.NewServer(up)
	t.Cleanup(f.upstream.Close)

	server := ServerConfig{Listen: ":0", PublicURL: "https://dash.example.com", PathPrefix: "/oauth2", TrustedProxies: o.trusted}
	public, trusted, ps := server.Validate()
	if o.timeout == 0 {
		o.timeout = 5 * time.Second
	}
	upCfg := UpstreamConfig{URL: f.upstream.URL, PassHostHeader: true, Timeout: o.timeout, SkipAuthRoutes: o.skipAuth, APIRoutes: o.api,
		EncodedSlashes: o.paths[0], PathParameters: o.paths[1]}
	target, routes, ps2 := upCfg.Validate()
	policies, ps3 := filters.CompilePolicies(o.policies)
	if len(ps)+len(ps2)+len(ps3) > 0 {
		t.Fatal(ps, ps2, ps3)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := sessionstore.NewMemory(nil)
	f.sessions = session.NewManager(session.Config{CookieName: "_gatehouse", CookieSameSite: "lax", Lifetime: time.Hour, IdleTimeout: time.Hour},
		store, nil)
	var toks *tokens.Store
	if o.tokens != nil {
		scopes, statics, ps := o.tokens.Compile()
		if len(ps) > 0 {
			t.Fatal(ps)
		}
		toks = tokens.NewStore(store, scopes, statics, nil)
	}
	prov := authn.NewOIDC("corp", authn.OIDCConfig{DisplayName: "Corp", IssuerURL: "http://127.0.0.1:1", ClientID: "x", Scopes: []string{"openid"}},
		filters.Lists{Domains: []string{"example.com"}}, "https://dash.example.com/oauth2/callback/corp", &http.Client{Timeout: time.Second})
	pg := pages.New()
	login := authn.NewLogin(authn.LoginConfig{Providers: []authn.Provider{prov}, Sessions: f.sessions, Pages: pg, PublicURL: public,
		Prefix: "/oauth2", Secret: strings.Repeat("s", 32), Cookie: "_gatehouse", Logger: log})
	f.h = New(Options{
		Server: server, Upstream: upCfg,
		Headers:   HeadersConfig{User: "X-Forwarded-User", Email: "X-Forwarded-Email", Groups: "X-Forwarded-Groups", PreferredUsername: "X-Forwarded-Preferred-Username"},
		PublicURL: public, Target: target, Trusted: trusted, Routes: routes, Policies: policies,
		Login: login, Revalid: authn.NewRevalidator(login, f.sessions, time.Hour, nil), Sessions: f.sessions,
		Cookie: "_gatehouse", Pages: pg, Logger: log, Tokens: toks,
	})
	return f
}

func (f *fixture) signIn(t testing.TB, id identity.Identity) *http.Cookie {
	t.Helper()
	rec := httptest.NewRecorder()
	if _, err := f.sessions.Create(context.Background(), rec, id, &session.ProviderToken{AccessToken: "at"}); err != nil {
		t.Fatal(err)
	}
	return rec.Result().Cookies()[0]
}

func (f *fixture) do(r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, r)
	return rec
}

func (f *fixture) upstreamSaw(t *testing.T) *http.Request {
	t.Helper()
	select {
	case r := <-f.seen:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream was not called")
		return nil
	}
}

func (f *fixture) upstreamNotCalled(t *testing.T) {
	t.Helper()
	select {
	case r := <-f.seen:
		t.Fatalf("the upstream was called for %s", r.URL)
	default:
	}
}

var aliceID = identity.Identity{Provider: "corp", Subject: "1", User: "alice", Email: "alice@example.com", EmailVerified: true,
	PreferredUsername: "alice", Groups: []string{"ops", "staff"}}

func TestUnauthenticated(t *testing.T) {
	f := newFixture(t, fixtureOpts{api: []string{"^/api/"}})
	tests := []struct {
		name, path, accept string
		hdr                map[string]string
		wantCode           int
		wantLocation       string
	}{
		{"browser is redirected with rd", "/page?x=1", "text/html", nil, 302, "/oauth2/sign_in?rd=%2Fpage%3Fx%3D1"},
		{"JSON client gets 401", "/page", "application/json", nil, 401, ""},
		{"api route gets 401", "/api/things", "text/html", nil, 401, ""},
		{"Authorization header gets 401", "/page", "text/html", map[string]string{"Authorization": "Basic eDp5"}, 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tt.path, nil)
			r.Header.Set("Accept", tt.accept)
			for k, v := range tt.hdr {
				r.Header.Set(k, v)
			}
			rec := f.do(r)
			if rec.Code != tt.wantCode {
				t.Fatalf("code = %d, want %d", rec.Code, tt.wantCode)
			}
			if tt.wantLocation != "" && rec.Header().Get("Location") != tt.wantLocation {
				t.Fatalf("Location = %q, want %q", rec.Header().Get("Location"), tt.wantLocation)
			}
			if rec.Code == 401 {
				if !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") || !strings.Contains(rec.Body.String(), `"error"`) {
					t.Fatalf("401 without Bearer challenge or JSON body: %v %s", rec.Header(), rec.Body)
				}
			}
			f.upstreamNotCalled(t)
		})
	}
}

// observed wraps f's handler in Observe, as the server does: the gate
// then hands the identity to the upstream on the request's note rather
// than in a context value of its own.
func (f *fixture) observed() *fixture {
	f.h = Observe(f.h, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, metrics.New())
	return f
}

func TestIdentityHeadersScrubbedAndSet(t *testing.T) {
	t.Run("bare", func(t *testing.T) {
		testIdentityHeadersScrubbedAndSet(t, newFixture(t, fixtureOpts{skipAuth: []string{"^/public/"}}))
	})
	t.Run("observed", func(t *testing.T) {
		testIdentityHeadersScrubbedAndSet(t, newFixture(t, fixtureOpts{skipAuth: []string{"^/public/"}}).observed())
	})
}

func testIdentityHeadersScrubbedAndSet(t *testing.T, f *fixture) {
	cookie := f.signIn(t, aliceID)
	r := httptest.NewRequest(http.MethodGet, "/app", nil)
	r.AddCookie(cookie)
	r.AddCookie(&http.Cookie{Name: "theme", Value: "dark"})
	r.Header["X-Forwarded-Email"] = []string{"ceo@example.com"}
	r.Header["X_Forwarded_Email"] = []string{"ceo@example.com"}
	r.Header["x-forwarded-user"] = []string{"ceo"}
	r.Header["X-Auth-Request-Whatever"] = []string{"ceo"}
	r.Header["X-Gatehouse-Assertion"] = []string{"forged"}
	r.Header["X-Forwarded-For"] = []string{"6.6.6.6"}
	if rec := f.do(r); rec.Code != 200 {
		t.Fatalf("code = %d: %s", rec.Code, rec.Body)
	}
	up := f.upstreamSaw(t)
	for name, vals := range up.Header {
		for _, v := range vals {
			if strings.Contains(v, "ceo") || v == "forged" || strings.Contains(v, "6.6.6.6") {
				t.Errorf("spoofed %s: %s reached the upstream", name, v)
			}
		}
	}
	if up.Header.Get("X-Forwarded-Email") != "alice@example.com" || up.Header.Get("X-Forwarded-User") != "alice" ||
		up.Header.Get("X-Forwarded-Groups") != "ops,staff" || up.Header.Get("X-Forwarded-Preferred-Username") != "alice" {
		t.Errorf("identity headers upstream: %v", up.Header)
	}
	if c := up.Header.Get("Cookie"); strings.Contains(c, "_gatehouse") || !strings.Contains(c, "theme=dark") {
		t.Errorf("Cookie upstream = %q: want the session cookie removed, others kept", c)
	}

	// A skip-auth route passes without a session, scrubbed all the same.
	r = httptest.NewRequest(http.MethodGet, "/public/logo.png", nil)
	r.Header["X_Forwarded_Email"] = []string{"ceo@example.com"}
	if rec := f.do(r); rec.Code != 200 {
		t.Fatalf("skip-auth: %d", rec.Code)
	}
	up = f.upstreamSaw(t)
	for name := range up.Header {
		if normalizeHeader(name) == "x-forwarded-email" {
			t.Errorf("skip-auth route forwarded a spoofed identity: %s: %v", name, up.Header[name])
		}
	}
}

func TestRouteMatchingUsesCanonicalPath(t *testing.T) {
	f := newFixture(t, fixtureOpts{skipAuth: []string{"^/public/", "POST=^/hook$"}})
	tests := []struct {
		method, target string
		want           int
	}{
		{"GET", "/public/a", 200},
		{"GET", "/public/../admin", 308},      // to /admin, where sign-in is needed
		{"GET", "/public/%2e%2e/admin", 308},  // the same, encoded
		{"POST", "/public/%2e%2e/admin", 400}, // a redirect would lose the body
		{"GET", "/public%2F..%2Fadmin", 400},  // encoded slashes are refused
		{"GET", "//public/a", 401},            // "//" is not merged: not the public route
		{"get", "/public/a", 200},             // methods are upper-cased
		{"post", "/hook", 200},
		{"GET", "/admin?x=/public/", 401},
		{"POST", "/hook", 200},
		{"GET", "/hook", 401},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "http://dash.example.com"+tt.target, nil)
			r.Header.Set("Accept", "application/json")
			r.Header.Set("X-Forwarded-Uri", "/public/x") // never believed
			if rec := f.do(r); rec.Code != tt.want {
				t.Fatalf("code = %d, want %d", rec.Code, tt.want)
			}
			if tt.want == 200 {
				f.upstreamSaw(t)
			}
		})
	}
}

func TestPolicies(t *testing.T) {
	f := newFixture(t, fixtureOpts{policies: []filters.PolicyConfig{
		{Path: "^/admin(/|$)", AllowedGroups: []string{"ops"}},
		{Path: "^/deploy$", Methods: []string{"POST"}, AllowedGroups: []string{"ops"}},
	}})
	dave := aliceID
	dave.Subject, dave.User, dave.Email, dave.Groups = "2", "dave", "dave@example.com", []string{"staff"}
	withOps, withoutOps := f.signIn(t, aliceID), f.signIn(t, dave)
	tests := []struct {
		method, path string
		cookie       *http.Cookie
		want         int
	}{
		{"GET", "/admin", withOps, 200},
		{"GET", "/admin", withoutOps, 403},
		{"GET", "/admin/users?x=1", withoutOps, 403},
		{"GET", "/x/../admin", withoutOps, 308},
		{"GET", "/public/%2e%2e/admin/", withoutOps, 308},
		{"GET", "/%61dmin", withoutOps, 403}, // unreserved escapes are decoded
		{"GET", "/admin;x", withoutOps, 400},
		{"GET", "/admin%2Fx", withoutOps, 400},
		{"GET", "/administrator", withoutOps, 200}, // not the /admin route
		{"GET", "/?next=/admin", withoutOps, 200},  // the query never counts
		{"POST", "/deploy", withoutOps, 403},
		{"POST", "/deploy", withOps, 200},
		{"post", "/deploy", withoutOps, 403},
		{"Post", "/deploy", withoutOps, 403},
		{"GET", "/deploy", withoutOps, 200}, // the policy is for POST only
		{"GET", "/", withoutOps, 200},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.path, nil)
			r.AddCookie(tt.cookie)
			rec := f.do(r)
			if rec.Code != tt.want {
				t.Fatalf("code = %d, want %d", rec.Code, tt.want)
			}
			if tt.want == 200 {
				f.upstreamSaw(t)
				return
			}
			f.upstreamNotCalled(t)
			if rec.Code != http.StatusForbidden {
				return
			}
			if !strings.Contains(rec.Body.String(), "allowed group") || regexp.MustCompile(`\bops\b`).MatchString(rec.Body.String()) {
				t.Errorf("denied page does not say which check failed, or names the group: %s", rec.Body)
			}
		})
	}
	r := httptest.NewRequest(http.MethodGet, "/admin", nil)
	r.Header.Set("Accept", "application/json")
	r.AddCookie(withoutOps)
	if rec := f.do(r); rec.Code != 403 || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("JSON client denied: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
}

func TestUserWhoNoLongerPassesFiltersIsDenied(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	outsider := aliceID
	outsider.Email = "eve@other.test"
	cookie := f.signIn(t, outsider)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(cookie)
	rec := f.do(r)
	if rec.Code != 403 || !strings.Contains(rec.Body.String(), "e-mail") {
		t.Fatalf("code = %d", rec.Code)
	}
	f.upstreamNotCalled(t)
}

func TestSessionNamingStaticProviderGetsNoBypass(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	id := aliceID
	id.Provider, id.Email = "static", "eve@other.test" // not a configured provider
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(f.signIn(t, id))
	if rec := f.do(r); rec.Code != http.StatusForbidden {
		t.Fatalf("code = %d, want 403", rec.Code)
	}
	f.upstreamNotCalled(t)
}

func TestForwardedHeadersTrustedOnlyFromTrustedProxies(t *testing.T) {
	for _, tt := range []struct {
		name      string
		trusted   []string
		wantFor   string
		wantProto string
	}{
		{"untrusted peer", nil, "192.0.2.1", "http"},
		{"trusted peer", []string{"192.0.2.0/24"}, "203.0.113.9, 192.0.2.1", "https"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{trusted: tt.trusted})
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = "192.0.2.1:5555"
			r.Header.Set("X-Forwarded-For", "203.0.113.9")
			r.Header.Set("X-Forwarded-Proto", "https")
			r.Header.Set("X-Forwarded-Host", "evil.example")
			r.AddCookie(f.signIn(t, aliceID))
			f.do(r)
			up := f.upstreamSaw(t)
			if got := up.Header.Get("X-Forwarded-For"); got != tt.wantFor {
				t.Errorf("X-Forwarded-For = %q, want %q", got, tt.wantFor)
			}
			if got := up.Header.Get("X-Forwarded-Proto"); got != tt.wantProto {
				t.Errorf("X-Forwarded-Proto = %q, want %q", got, tt.wantProto)
			}
			if tt.trusted == nil && up.Header.Get("X-Forwarded-Host") == "evil.example" {
				t.Error("X-Forwarded-Host from an untrusted peer was believed")
			}
		})
	}
}

func TestUpstreamDownIsA502Page(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.upstream.Close()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(f.signIn(t, aliceID))
	start := time.Now()
	rec := f.do(r)
	if rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), "could not be reached") {
		t.Fatalf("code = %d body = %s", rec.Code, rec.Body)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("502 took %s", time.Since(start))
	}
}

func TestServerSentEventsAreFlushed(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	releaseUpstream := func() { once.Do(func() { close(release) }) }
	f := newFixture(t, fixtureOpts{upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release // the second event only after the client saw the first
		io.WriteString(w, "data: second\n\n")
	})})
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	// Registered last, so it runs first: the servers' Close waits for their
	// handlers, and the upstream's must never be left hanging.
	t.Cleanup(releaseUpstream)

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/events", nil)
	req.AddCookie(f.signIn(t, aliceID))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 4)
	go func() {
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				close(lines)
				return
			}
			lines <- line
		}
	}()
	select {
	case line := <-lines:
		if line != "data: first\n" {
			t.Fatalf("first line = %q", line)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first event was not flushed through while the upstream was still streaming")
	}
	releaseUpstream()
	var rest []string
	for line := range lines {
		rest = append(rest, line)
	}
	if strings.Join(rest, "") != "\ndata: second\n\n" {
		t.Fatalf("rest of the stream = %q", rest)
	}
}

func TestWebSocketUpgradePassesThrough(t *testing.T) {
	f := newFixture(t, fixtureOpts{upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" || r.Header.Get("X-Forwarded-User") != "alice" {
			http.Error(w, "no upgrade or no identity", 400)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		rw.Flush()
		// Echo one line: the tunnel carries data both ways.
		line, _ := rw.ReadString('\n')
		rw.WriteString("echo: " + line)
		rw.Flush()
	})})
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	cookie := f.signIn(t, aliceID)

	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"X-Forwarded-User: mallory\r\nCookie: "+cookie.Name+"="+cookie.Value+"\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade status = %d", resp.StatusCode)
	}
	io.WriteString(conn, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "echo: ping\n" {
		t.Fatalf("through the tunnel: %q, %v", line, err)
	}

	// Without a session, no upgrade.
	r := httptest.NewRequest(http.MethodGet, "/ws", nil)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	if rec := f.do(r); rec.Code == http.StatusSwitchingProtocols || rec.Code == 200 {
		t.Fatalf("anonymous upgrade: %d", rec.Code)
	}
}

func TestUpstreamTimeoutIsA504(t *testing.T) {
	hold := make(chan struct{})
	f := newFixture(t, fixtureOpts{timeout: 200 * time.Millisecond, upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-hold
	})})
	t.Cleanup(func() { close(hold) }) // before the upstream server closes
	r := httptest.NewRequest(http.MethodGet, "/slow", nil)
	r.AddCookie(f.signIn(t, aliceID))
	start := time.Now()
	rec := f.do(r)
	if rec.Code != http.StatusGatewayTimeout {
		t.Fatalf("code = %d, want 504", rec.Code)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("504 took %s with a 200ms upstream timeout", d)
	}
}

func TestOwnEndpoints(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	get := func(path string, c *http.Cookie) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		if c != nil {
			r.AddCookie(c)
		}
		return f.do(r)
	}
	if rec := get("/ping", nil); rec.Code != 200 {
		t.Errorf("/ping = %d", rec.Code)
	}
	if rec := get("/ready", nil); rec.Code != 503 || !strings.Contains(rec.Body.String(), `"provider:corp":"unavailable"`) {
		t.Errorf("/ready with an unreachable provider = %d %s", rec.Code, rec.Body)
	}
	if rec := get("/oauth2/userinfo", nil); rec.Code != 401 {
		t.Errorf("userinfo anonymous = %d", rec.Code)
	}
	rec := get("/oauth2/userinfo", f.signIn(t, aliceID))
	var info map[string]any
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &info) != nil || info["email"] != "alice@example.com" {
		t.Errorf("userinfo = %d %s", rec.Code, rec.Body)
	}
	for _, path := range []string{"/oauth2/sign_in", "/oauth2/nonexistent", "/oauth2/userinfo", "/oauth2//sign_in"} {
		rec := get(path, nil)
		h := rec.Header()
		if h.Get("Cache-Control") != "no-store" || h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s lacks security headers: %v", path, h)
		}
	}
	if rec := get("/oauth2/nonexistent", nil); rec.Code != 404 {
		t.Errorf("unknown endpoint = %d", rec.Code)
	}
	if rec := get("/oauth2/signed_out", nil); rec.Code != 200 || !strings.Contains(rec.Body.String(), "/oauth2/sign_in") ||
		rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("signed-out page: %d %q", rec.Code, rec.Header().Get("Cache-Control"))
	}
	// Only the exact path names an endpoint: "//" is not merged.
	if rec := get("/oauth2//sign_in?rd=/x", nil); rec.Code != 404 {
		t.Errorf("sign-in page via //: %d, want 404", rec.Code)
	}
	if rec := get("/oauth2/%73ign_in?rd=/x", nil); rec.Code != 200 || !strings.Contains(rec.Body.String(), "provider-corp") {
		t.Errorf("sign-in page via an unreserved escape: %d", rec.Code)
	}
	// Forward-auth: 401, then 202 with identity headers.
	if rec := get("/oauth2/auth", nil); rec.Code != 401 {
		t.Errorf("auth anonymous = %d", rec.Code)
	}
	rec = get("/oauth2/auth", f.signIn(t, aliceID))
	if rec.Code != 202 || rec.Header().Get("X-Auth-Request-Email") != "alice@example.com" {
		t.Errorf("auth = %d %v", rec.Code, rec.Header())
	}
}

func TestForwardAuthOriginalRouteOnlyFromTrustedProxies(t *testing.T) {
	policies := []filters.PolicyConfig{{Path: "^/admin(/|$)", AllowedGroups: []string{"admins"}}}
	trusted := newFixture(t, fixtureOpts{trusted: []string{"192.0.2.0/24"}, policies: policies})
	untrusted := newFixture(t, fixtureOpts{policies: policies})
	for _, tt := range []struct {
		name   string
		f      *fixture
		method string
		target string
		hdr    map[string]string
		want   int
	}{
		{"nginx style, allowed route", trusted, "GET", "/oauth2/auth", map[string]string{"X-Original-URL": "https://dash.example.com/app"}, 202},
		{"nginx style, admin route", trusted, "GET", "/oauth2/auth", map[string]string{"X-Original-URL": "https://dash.example.com/x/../admin"}, 403},
		{"traefik style", trusted, "GET", "/oauth2/auth", map[string]string{"X-Forwarded-Uri": "/admin", "X-Forwarded-Method": "POST"}, 403},
		{"envoy style, allowed", trusted, "POST", "/oauth2/auth/app/save", nil, 202},
		{"envoy style, admin", trusted, "DELETE", "/oauth2/auth/admin/users", nil, 403},
		{"untrusted peer's URL is ignored: unknown route with policies", untrusted, "GET", "/oauth2/auth", map[string]string{"X-Original-URL": "https://dash.example.com/app"}, 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.target, nil)
			r.RemoteAddr = "192.0.2.10:1234"
			for k, v := range tt.hdr {
				r.Header.Set(k, v)
			}
			r.AddCookie(tt.f.signIn(t, aliceID))
			if rec := tt.f.do(r); rec.Code != tt.want {
				t.Fatalf("code = %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
		})
	}
}

func TestWrongMethodAndDisabledDeviceFlow(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	rec := f.do(httptest.NewRequest(http.MethodPut, "/oauth2/sign_in", nil))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") == "" {
		t.Errorf("PUT sign_in = %d, want 405 with Allow", rec.Code)
	}
	for path, want := range map[string]string{"/oauth2/token": "unsupported_grant_type", "/oauth2/device/code": "unauthorized_client"} {
		rec := f.do(httptest.NewRequest(http.MethodPost, path, strings.NewReader("grant_type=x")))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), want) || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s with the device flow off = %d %s", path, rec.Code, rec.Body)
		}
	}
}

func TestSignInRedirectKeepsOnlySafeRD(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	r := httptest.NewRequest(http.MethodGet, "/oauth2/start?provider=corp&rd="+url.QueryEscape("https://evil.example/"), nil)
	rec := f.do(r)
	// Discovery fails for the unreachable provider: a clear error page, no redirect anywhere.
	if rec.Code != http.StatusBadGateway || rec.Header().Get("Location") != "" {
		t.Fatalf("start with unreachable provider = %d %v", rec.Code, rec.Header())
	}
	if strings.Contains(rec.Body.String(), "127.0.0.1:1") {
		t.Fatal("error page reveals internal addresses")
	}
}

func TestUpstreamCannotSetGatehouseCookies(t *testing.T) {
	f := newFixture(t, fixtureOpts{upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "_gatehouse=planted; Path=/")
		w.Header().Add("Set-Cookie", "_gatehouse_state_abcdefghijkl=x; Path=/")
		w.Header().Add("Set-Cookie", "app=1; Path=/")
	})})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(f.signIn(t, aliceID))
	rec := f.do(r)
	got := rec.Header().Values("Set-Cookie")
	if len(got) != 1 || !strings.HasPrefix(got[0], "app=1") {
		t.Fatalf("Set-Cookie passed to the browser: %q", got)
	}
}

func TestBrowserPostWithoutSessionIsNotRedirected(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	r := httptest.NewRequest(http.MethodPost, "/form?x=1", strings.NewReader("a=b"))
	r.Header.Set("Accept", "text/html")
	rec := f.do(r)
	// A redirect would turn the POST into a GET and lose its body.
	if rec.Code != http.StatusUnauthorized || rec.Header().Get("Location") != "" {
		t.Fatalf("code = %d, Location = %q", rec.Code, rec.Header().Get("Location"))
	}
	if !strings.Contains(rec.Body.String(), "/oauth2/sign_in?rd=%2Fform%3Fx%3D1") {
		t.Fatalf("the page has no sign-in link back to the form: %s", rec.Body)
	}
	f.upstreamNotCalled(t)
}

func TestSkipAuthRouteScrubsEverySpoofedIdentity(t *testing.T) {
	t.Run("bare", func(t *testing.T) {
		testSkipAuthRouteScrubs(t, newFixture(t, fixtureOpts{skipAuth: []string{"^/public/"}}))
	})
	t.Run("observed", func(t *testing.T) {
		testSkipAuthRouteScrubs(t, newFixture(t, fixtureOpts{skipAuth: []string{"^/public/"}}).observed())
	})
}

func testSkipAuthRouteScrubs(t *testing.T, f *fixture) {
	r := httptest.NewRequest(http.MethodGet, "/public/logo.png", nil)
	spoofed := []string{"X-Forwarded-User", "X_Forwarded_User", "x-forwarded-email", "X-Forwarded-Groups",
		"X-Forwarded-Preferred-Username", "X-Gatehouse-Assertion", "X-Auth-Request-User", "X-Forwarded-Access-Token"}
	for _, h := range spoofed {
		r.Header[h] = []string{"mallory"}
	}
	r.AddCookie(&http.Cookie{Name: "theme", Value: "dark"})
	if rec := f.do(r); rec.Code != 200 {
		t.Fatalf("skip-auth route: %d", rec.Code)
	}
	up := f.upstreamSaw(t)
	for name, vals := range up.Header {
		if slices.Contains(vals, "mallory") {
			t.Errorf("%s: mallory reached the upstream", name)
		}
	}
	if up.Header.Get("Cookie") != "theme=dark" {
		t.Errorf("Cookie = %q", up.Header.Get("Cookie"))
	}
}

// TestForwardedPathIsThePathThatWasAuthorized: Gatehouse decides on the
// cleaned path; the upstream must not then receive a raw path that it may
// read as another route. "/admin/../public/x" is decided as the skip-auth
// "/public/x", so an upstream that does not resolve dot segments itself
// (Express, many Java routers) must not see "/admin/..." unauthenticated.
// Either refusing such a request or forwarding the cleaned path passes.
func TestForwardedPathIsThePathThatWasAuthorized(t *testing.T) {
	f := newFixture(t, fixtureOpts{skipAuth: []string{"^/public/"}, policies: []filters.PolicyConfig{{Path: "^/admin(/|$)", AllowedGroups: []string{"admins"}}}})
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	cookie := f.signIn(t, aliceID) // signed in, not in admins
	for _, raw := range []string{
		"/admin/../public/x", "/admin//../public/x", "/admin/%2e%2e/public/x", "/admin%2F..%2Fpublic/x", // anonymous via skip-auth
		"/admin/../x", "/admin/%2E%2E/x", // signed in, around the /admin policy
	} {
		t.Run(raw, func(t *testing.T) {
			conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			// Written by hand: Go's client would not send dot segments as-is, curl --path-as-is does.
			io.WriteString(conn, "GET "+raw+" HTTP/1.1\r\nHost: dash.example.com\r\nAccept: application/json\r\n"+
				"Cookie: "+cookie.Name+"="+cookie.Value+"\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return // refused: fine
			}
			up := f.upstreamSaw(t)
			if strings.Contains(strings.ToLower(up.RequestURI), "admin") {
				t.Fatalf("the upstream received %q", up.RequestURI)
			}
		})
	}
}

// sessionCacheKey is the session's id and validation time, as before it
// was built in a stack buffer.
func TestSessionCacheKey(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	s, err := f.sessions.Create(context.Background(), httptest.NewRecorder(), aliceID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sessionCacheKey(s), s.ID()+"|"+strconv.FormatInt(s.ValidatedAt.UnixNano(), 36); got != want {
		t.Fatalf("sessionCacheKey = %q, want %q", got, want)
	}
}
