package proxy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse/gatehouse/assertion"
	"github.com/gatehouse/gatehouse/authn"
	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/oauthserver"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
	"github.com/gatehouse/gatehouse/tokens"
)

// routesFixture is a proxy with routes in front of one recording upstream:
// each route's to is the upstream's URL plus "/<route name>", so the path
// the upstream sees says which route the request took.
type routesFixture struct {
	fixture
	signer *assertion.Signer
	ho     *fakeHandoff
}

// fakeHandoff stands in for package handoff: it binds with a fixed value.
type fakeHandoff struct{ served int }

func (f *fakeHandoff) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.served++
	w.WriteHeader(http.StatusTeapot)
}

func (f *fakeHandoff) Bind(w http.ResponseWriter) (string, error) {
	http.SetCookie(w, &http.Cookie{Name: "_gatehouse_state_handoff", Value: "nonce", Path: "/oauth2/handoff"})
	return "bound", nil
}

func newRoutesFixture(t testing.TB, upCfg UpstreamConfig, cfgs []RouteConfig, policies []filters.PolicyConfig) *routesFixture {
	t.Helper()
	f := &routesFixture{fixture: fixture{seen: make(chan *http.Request, 10)}, ho: &fakeHandoff{}}
	f.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.seen <- r.Clone(context.Background())
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(f.upstream.Close)
	for i := range cfgs {
		cfgs[i].To = f.upstream.URL + "/" + cfgs[i].Name
	}
	server := ServerConfig{Listen: ":0", PublicURL: "https://auth.example.com", PathPrefix: "/oauth2"}
	public, trusted, ps := server.Validate()
	if upCfg.Timeout == 0 {
		upCfg.Timeout = 5 * time.Second
	}
	upCfg.URL = DefaultUpstreamURL
	_, lists, ps2 := upCfg.Validate()
	table, ps3 := CompileRoutes(cfgs, RouteDefaults{Upstream: upCfg, PathPrefix: "/oauth2", Assertion: true})
	compiled, ps4 := filters.CompilePolicies(policies)
	if len(ps)+len(ps2)+len(ps3)+len(ps4) > 0 {
		t.Fatal(ps, ps2, ps3, ps4)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.sessions = session.NewManager(session.Config{CookieName: "_gatehouse", CookieSameSite: "lax", Lifetime: time.Hour, IdleTimeout: time.Hour},
		sessionstore.NewMemory(nil), nil)
	prov := authn.NewOIDC("corp", authn.OIDCConfig{DisplayName: "Corp", IssuerURL: "http://127.0.0.1:1", ClientID: "x", Scopes: []string{"openid"}},
		filters.Lists{Domains: []string{"example.com"}}, "https://auth.example.com/oauth2/callback/corp", &http.Client{Timeout: time.Second})
	pg := pages.New()
	login := authn.NewLogin(authn.LoginConfig{Providers: []authn.Provider{prov}, Sessions: f.sessions, Pages: pg, PublicURL: public,
		Prefix: "/oauth2", Secret: strings.Repeat("s", 32), Cookie: "_gatehouse", Logger: log, RouteHost: table.IsRouteHost})
	key, _ := assertion.GenerateKey()
	f.signer, _ = assertion.NewSigner([]assertion.Key{key}, public.String(), public.Host, time.Minute, nil)
	account := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(299) })
	revalid := authn.NewRevalidator(login, f.sessions, time.Hour, nil)
	toks := tokens.NewStore(f.sessions.Store(), nil, nil, nil)
	device := oauthserver.NewDevice(oauthserver.DeviceConfig{
		Flow:  oauthserver.DeviceFlowConfig{Enabled: true, CodeLifetime: 10 * time.Minute, PollInterval: 5 * time.Second, TokenLifetime: time.Hour},
		Store: f.sessions.Store(), Tokens: toks, Sessions: f.sessions, People: authn.People{Login: login, Revalidator: revalid},
		PublicURL: public, Prefix: "/oauth2", Pages: pg, Secret: strings.Repeat("s", 32), Logger: log,
	})
	f.h = New(Options{
		Server: server, Upstream: upCfg,
		Headers: HeadersConfig{User: "X-Forwarded-User", Email: "X-Forwarded-Email", Groups: "X-Forwarded-Groups",
			PreferredUsername: "X-Forwarded-Preferred-Username", Assertion: assertion.Config{Enabled: true, Header: "X-Gatehouse-Assertion"}},
		PublicURL: public, Trusted: trusted, Routes: lists, Policies: compiled,
		Login: login, Revalid: revalid, Sessions: f.sessions,
		Cookie: "_gatehouse", Pages: pg, Logger: log, Assertion: f.signer, Tokens: toks,
		OAuth:      oauthserver.New(oauthserver.Config{Device: device}),
		RouteTable: table, Handoff: f.ho, Account: account,
	})
	return f
}

func (f *routesFixture) get(t *testing.T, rawURL string, cookie *http.Cookie, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, rawURL, nil)
	r.Header.Set("Accept", "text/html")
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	if cookie != nil {
		r.AddCookie(cookie)
	}
	return f.do(r)
}

func estate() []RouteConfig {
	return []RouteConfig{
		{Name: "grafana", From: RouteFromConfig{Host: "grafana.example.com"}, SetAuthorization: "assertion"},
		{Name: "prometheus", From: RouteFromConfig{Host: "ops.example.com", PathPrefix: "/prometheus"}, StripPrefix: true,
			SkipAuthRoutes: []string{"^/prometheus/-/healthy$"}},
		{Name: "alertmanager", From: RouteFromConfig{Host: "ops.example.com", PathPrefix: "/alertmanager"}, AllowedGroups: []string{"ops"}},
		{Name: "ops", From: RouteFromConfig{Host: "ops.example.com"}},
		{Name: "wild", From: RouteFromConfig{Host: "*.apps.example.com"}, APIRoutes: []string{"^/api/"}},
		{Name: "exact", From: RouteFromConfig{Host: "special.apps.example.com", PathPrefix: "/only"}},
	}
}

func TestRoutesMatchByHostThenLongestPrefix(t *testing.T) {
	f := newRoutesFixture(t, UpstreamConfig{PassHostHeader: true}, estate(), nil)
	cookie := f.signIn(t, aliceID)
	tests := []struct {
		name, url string
		want      int
		wantPath  string // as the upstream saw it
	}{
		{"exact host", "http://grafana.example.com/d/abc?x=1", 200, "/grafana/d/abc"},
		{"host in another case, with port and a trailing dot", "http://GRAFANA.example.com.:8443/", 200, "/grafana/"},
		{"longest prefix, stripped", "http://ops.example.com/prometheus/graph", 200, "/prometheus/graph"},
		{"the prefix itself", "http://ops.example.com/prometheus", 200, "/prometheus/"},
		{"not on a segment boundary", "http://ops.example.com/prometheusx", 200, "/ops/prometheusx"},
		{"prefix kept when not stripped", "http://ops.example.com/alertmanager/x", 200, "/alertmanager/alertmanager/x"},
		{"shorter prefix", "http://ops.example.com/", 200, "/ops/"},
		{"wildcard", "http://a.apps.example.com/x", 200, "/wild/x"},
		{"exact host beats wildcard", "http://special.apps.example.com/only/x", 200, "/exact/only/x"},
		{"exact host never falls through to a wildcard", "http://special.apps.example.com/other", 404, ""},
		{"wildcard takes one label only", "http://a.b.apps.example.com/", 404, ""},
		{"wildcard needs a label", "http://apps.example.com/", 404, ""},
		{"unknown host", "http://evil.example.net/", 404, ""},
		{"the auth host is no route here", "http://auth.example.com/", 404, ""},
		{"routing is on the canonical path", "http://ops.example.com/%70rometheus/graph", 200, "/prometheus/graph"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := f.get(t, tt.url, cookie)
			if rec.Code != tt.want {
				t.Fatalf("code = %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
			if tt.want != 200 {
				f.upstreamNotCalled(t)
				return
			}
			if got := f.upstreamSaw(t).URL.Path; got != tt.wantPath {
				t.Fatalf("upstream saw %q, want %q", got, tt.wantPath)
			}
		})
	}
	// Probes and Gatehouse's own endpoints answer on any host.
	for _, u := range []string{"http://evil.example.net/ping", "http://10.0.0.7/ping", "http://grafana.example.com/oauth2/jwks.json"} {
		if rec := f.get(t, u, nil); rec.Code != 200 {
			t.Errorf("%s: %d", u, rec.Code)
		}
	}
	if rec := f.get(t, "http://evil.example.net/", nil, "Accept", "application/json"); rec.Code != 404 || !strings.Contains(rec.Body.String(), `"not_found"`) {
		t.Errorf("unknown host, JSON: %d %s", rec.Code, rec.Body)
	}
}

func TestRouteRulesOnCanonicalPathBeforeStrip(t *testing.T) {
	f := newRoutesFixture(t, UpstreamConfig{}, estate(), []filters.PolicyConfig{{Path: "^/alertmanager/silences", AllowedUsers: []string{"root"}}})
	dave := aliceID
	dave.Subject, dave.User, dave.Email, dave.Groups = "2", "dave", "dave@example.com", []string{"staff"}
	alice, daveCookie := f.signIn(t, aliceID), f.signIn(t, dave)
	tests := []struct {
		name, url string
		cookie    *http.Cookie
		want      int
	}{
		{"skip-auth before strip", "http://ops.example.com/prometheus/-/healthy", nil, 200},
		{"skip-auth does not match the stripped path", "http://ops.example.com/-/healthy", nil, 302},
		{"route filter admits ops", "http://ops.example.com/alertmanager/", alice, 200},
		{"route filter refuses whom the global filter admits", "http://ops.example.com/alertmanager/", daveCookie, 403},
		{"other routes admit dave", "http://ops.example.com/prometheus/graph", daveCookie, 200},
		{"global policies hold on routes", "http://ops.example.com/alertmanager/silences", alice, 403},
		{"api route gets 401", "http://x.apps.example.com/api/v1", nil, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := f.get(t, tt.url, tt.cookie)
			if rec.Code != tt.want {
				t.Fatalf("code = %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
			if tt.want == 200 {
				f.upstreamSaw(t)
			} else {
				f.upstreamNotCalled(t)
			}
		})
	}
}

func TestRouteAssertionAudienceAndAuthorization(t *testing.T) {
	cfgs := []RouteConfig{
		{Name: "grafana", From: RouteFromConfig{Host: "grafana.example.com"}, SetAuthorization: "assertion",
			Headers: &RouteHeadersConfig{User: "X-WEBAUTH-USER"}},
		{Name: "kibana", From: RouteFromConfig{Host: "kibana.example.com"}, SetAuthorization: "access_token", SkipAuthRoutes: []string{"^/public"}},
		{Name: "plain", From: RouteFromConfig{Host: "plain.example.com"}},
	}
	f := newRoutesFixture(t, UpstreamConfig{}, cfgs, nil)
	cookie := f.signIn(t, aliceID) // provider access token "at"
	audOf := func(raw string) []string {
		tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		var set jose.JSONWebKeySet
		_ = json.Unmarshal(f.signer.JWKS(), &set)
		var c assertion.Claims
		if err := tok.Claims(set.Keys[0].Key, &c); err != nil {
			t.Fatal(err)
		}
		return c.Audience
	}

	rec := f.get(t, "http://grafana.example.com/", cookie, "Authorization", "Basic c3Bvb2Y6eA==", "X-WEBAUTH-USER", "root", "X-Forwarded-Email", "ceo@example.com")
	if rec.Code != 200 {
		t.Fatalf("grafana: %d %s", rec.Code, rec.Body)
	}
	up := f.upstreamSaw(t)
	bearer, ok := strings.CutPrefix(up.Header.Get("Authorization"), "Bearer ")
	if !ok || bearer != up.Header.Get("X-Gatehouse-Assertion") {
		t.Fatalf("Authorization = %q, want the assertion", up.Header.Get("Authorization"))
	}
	if aud := audOf(bearer); len(aud) != 1 || aud[0] != "grafana.example.com" {
		t.Fatalf("aud = %v, want the route's host", aud)
	}
	if up.Header.Get("X-WEBAUTH-USER") != "alice" || up.Header.Get("X-Forwarded-Email") != "" || up.Header.Get("X-Forwarded-User") != "" {
		t.Fatalf("route headers: %v", up.Header)
	}

	// Another route of the same session gets an assertion of its own.
	if rec := f.get(t, "http://kibana.example.com/", cookie, "Authorization", "Bearer forged"); rec.Code != 401 {
		// A client's own bearer is a token to Gatehouse, and unknown.
		t.Fatalf("kibana with a bearer: %d", rec.Code)
	}
	if rec := f.get(t, "http://kibana.example.com/", cookie); rec.Code != 200 {
		t.Fatalf("kibana: %d", rec.Code)
	}
	up = f.upstreamSaw(t)
	if up.Header.Get("Authorization") != "Bearer at" {
		t.Fatalf("Authorization = %q, want the provider's access token", up.Header.Get("Authorization"))
	}
	if aud := audOf(up.Header.Get("X-Gatehouse-Assertion")); aud[0] != "kibana.example.com" {
		t.Fatalf("aud = %v", aud)
	}
	if up.Header.Get("X-Forwarded-User") != "alice" || up.Header.Get("X-WEBAUTH-USER") != "" {
		t.Fatalf("a route without headers of its own gets the global ones, and none of another route's: %v", up.Header)
	}
	// On a skip-auth route a client's Authorization never reaches an
	// upstream that trusts it as Gatehouse's.
	if rec := f.get(t, "http://kibana.example.com/public", nil, "Authorization", "Basic c3Bvb2Y6eA==", "X-WEBAUTH-USER", "root"); rec.Code != 200 {
		t.Fatalf("kibana public: %d", rec.Code)
	}
	if up = f.upstreamSaw(t); up.Header.Get("Authorization") != "" || up.Header.Get("X-WEBAUTH-USER") != "" {
		t.Fatalf("skip-auth route forwarded %v", up.Header)
	}
	// set_authorization none: a Basic header passes as it always did.
	if rec := f.get(t, "http://plain.example.com/", cookie, "Authorization", "Basic c3Bvb2Y6eA=="); rec.Code != 200 {
		t.Fatalf("plain with Basic: %d", rec.Code)
	}
	if up = f.upstreamSaw(t); up.Header.Get("Authorization") != "Basic c3Bvb2Y6eA==" {
		t.Fatalf("Authorization = %q", up.Header.Get("Authorization"))
	}
}

func TestSingleUpstreamSetAuthorization(t *testing.T) {
	for _, mode := range []string{"none", "assertion", "access_token"} {
		t.Run(mode, func(t *testing.T) {
			f := newRoutesFixture(t, UpstreamConfig{SetAuthorization: mode}, []RouteConfig{{Name: "app", From: RouteFromConfig{Host: "app.example.com"}}}, nil)
			cookie := f.signIn(t, aliceID)
			if rec := f.get(t, "http://app.example.com/", cookie); rec.Code != 200 {
				t.Fatalf("code %d", rec.Code)
			}
			got := f.upstreamSaw(t).Header.Get("Authorization")
			switch mode {
			case "none":
				if got != "" {
					t.Fatalf("Authorization = %q", got)
				}
			case "assertion":
				if !strings.HasPrefix(got, "Bearer ey") {
					t.Fatalf("Authorization = %q", got)
				}
			case "access_token":
				if got != "Bearer at" {
					t.Fatalf("Authorization = %q", got)
				}
			}
		})
	}
}

func TestRouteHostSendsSignInToAuthHost(t *testing.T) {
	f := newRoutesFixture(t, UpstreamConfig{}, estate(), nil)
	tests := []struct {
		name, url  string
		wantLoc    string
		wantCookie bool
	}{
		{"unauthenticated on a route host", "http://grafana.example.com/d/x?orgId=1",
			"https://auth.example.com/oauth2/start?rd=" + url.QueryEscape("http://grafana.example.com/d/x?orgId=1") + "&binding=bound", true},
		{"sign_in on a route host", "http://grafana.example.com/oauth2/sign_in?rd=/d/x",
			"https://auth.example.com/oauth2/sign_in?rd=" + url.QueryEscape("http://grafana.example.com/d/x"), false},
		{"start without rd", "http://grafana.example.com/oauth2/start?provider=corp",
			"https://auth.example.com/oauth2/start?provider=corp&rd=" + url.QueryEscape("http://grafana.example.com/"), false},
		{"our own endpoints become /", "http://grafana.example.com/oauth2/sign_in?rd=/oauth2/sign_in",
			"https://auth.example.com/oauth2/sign_in?rd=" + url.QueryEscape("http://grafana.example.com/"), false},
		{"an unsafe path becomes /", "http://grafana.example.com/oauth2/sign_in?rd=//evil.example.net/",
			"https://auth.example.com/oauth2/sign_in?rd=" + url.QueryEscape("http://grafana.example.com/"), false},
		{"an absolute rd is left for the auth host to judge", "http://grafana.example.com/oauth2/sign_in?rd=https://evil.example.net/",
			"https://auth.example.com/oauth2/sign_in?rd=" + url.QueryEscape("https://evil.example.net/"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := f.get(t, tt.url, nil)
			if rec.Code != http.StatusFound || rec.Header().Get("Location") != tt.wantLoc {
				t.Fatalf("%d Location = %q\nwant %q", rec.Code, rec.Header().Get("Location"), tt.wantLoc)
			}
			if got := strings.Contains(rec.Header().Get("Set-Cookie"), "_gatehouse_state_handoff=nonce"); got != tt.wantCookie {
				t.Fatalf("binding cookie set: %v, want %v", got, tt.wantCookie)
			}
		})
	}
	// The auth host's own sign-in page is served there.
	if rec := f.get(t, "https://auth.example.com/oauth2/sign_in?rd=https://grafana.example.com/", nil); rec.Code != 200 ||
		!strings.Contains(rec.Body.String(), url.QueryEscape("https://grafana.example.com/")) {
		t.Fatalf("auth host sign_in: %d %s", rec.Code, rec.Body)
	}
	// The hand-off is wired on route hosts.
	if rec := f.get(t, "http://grafana.example.com/oauth2/handoff?code=x", nil); rec.Code != http.StatusTeapot || f.ho.served != 1 {
		t.Fatalf("handoff: %d", rec.Code)
	}
}

// The pages where a person acts with their session (approving a device
// code, ending sessions) answer on the auth host only: on a route host
// they would be in the upstream's origin, where its scripts could use
// them as the person. A GET goes to the auth host; anything else is 404.
// The other endpoints keep working on route hosts.
func TestPersonalEndpointsOnlyOnAuthHost(t *testing.T) {
	f := newRoutesFixture(t, UpstreamConfig{}, estate(), nil)
	cookie := f.signIn(t, aliceID)
	tests := []struct {
		name, method, url string
		want              int
		wantLoc           string
	}{
		{"sessions page on a route host", "GET", "http://grafana.example.com/oauth2/sessions", 302, "https://auth.example.com/oauth2/sessions"},
		{"sessions page, escaped, on a wildcard host", "GET", "http://a.apps.example.com/oauth2/%73essions", 302, "https://auth.example.com/oauth2/sessions"},
		{"ending sessions on a route host", "POST", "http://grafana.example.com/oauth2/sessions", 404, ""},
		{"device page on a route host", "GET", "http://grafana.example.com/oauth2/device?user_code=ABCD-EFGH", 302, "https://auth.example.com/oauth2/device?user_code=ABCD-EFGH"},
		{"HEAD of the device page", "HEAD", "http://ops.example.com/oauth2/device", 302, "https://auth.example.com/oauth2/device"},
		{"approving a device on a route host", "POST", "http://grafana.example.com/oauth2/device", 404, ""},
		{"sessions page on the auth host", "GET", "https://auth.example.com/oauth2/sessions", 299, ""},
		{"ending sessions on the auth host", "POST", "https://auth.example.com/oauth2/sessions", 299, ""},
		{"device page on the auth host", "GET", "https://auth.example.com/oauth2/device", 200, ""},
		{"auth host on another port", "GET", "https://auth.example.com:8443/oauth2/sessions", 299, ""},
		// Still served on route hosts.
		{"jwks", "GET", "http://grafana.example.com/oauth2/jwks.json", 200, ""},
		{"userinfo", "GET", "http://grafana.example.com/oauth2/userinfo", 200, ""},
		{"forward-auth", "GET", "http://grafana.example.com/oauth2/auth", 202, ""},
		{"sign_out", "GET", "http://grafana.example.com/oauth2/sign_out", 200, ""},
		{"handoff", "GET", "http://grafana.example.com/oauth2/handoff?code=x", http.StatusTeapot, ""},
		{"ping", "GET", "http://grafana.example.com/ping", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.url, strings.NewReader("end=all&csrf_token=x&action=approve"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.AddCookie(cookie)
			rec := f.do(r)
			if rec.Code != tt.want || rec.Header().Get("Location") != tt.wantLoc {
				t.Fatalf("%d to %q, want %d to %q: %s", rec.Code, rec.Header().Get("Location"), tt.want, tt.wantLoc, rec.Body)
			}
		})
	}
}

// A wildcard route's assertions name the host they were made for, so
// that one tenant's assertion is no good at another's; routes on one host
// share it.
func TestRouteAssertionAudience(t *testing.T) {
	f := newRoutesFixture(t, UpstreamConfig{}, estate(), nil)
	cookie := f.signIn(t, aliceID)
	claimsOf := func(t *testing.T, raw string) assertion.Claims {
		tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		var set jose.JSONWebKeySet
		_ = json.Unmarshal(f.signer.JWKS(), &set)
		var c assertion.Claims
		if err := tok.Claims(set.Keys[0].Key, &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct{ url, wantAud string }{
		{"http://tenant-a.apps.example.com/", "tenant-a.apps.example.com"},
		{"http://tenant-b.apps.example.com/", "tenant-b.apps.example.com"},
		{"http://Tenant-B.Apps.example.com.:8443/x", "tenant-b.apps.example.com"},
		{"http://special.apps.example.com/only/x", "special.apps.example.com"},
		{"http://grafana.example.com/", "grafana.example.com"},
		{"http://ops.example.com/prometheus/x", "ops.example.com"},
		{"http://ops.example.com/alertmanager/x", "ops.example.com"},
		{"http://ops.example.com/", "ops.example.com"},
	}
	byAud := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			if rec := f.get(t, tt.url, cookie); rec.Code != 200 {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			raw := f.upstreamSaw(t).Header.Get("X-Gatehouse-Assertion")
			if aud := claimsOf(t, raw).Audience; len(aud) != 1 || aud[0] != tt.wantAud {
				t.Fatalf("aud = %v, want [%s]", aud, tt.wantAud)
			}
			// The cache hands one assertion per audience, never another's.
			if prev, ok := byAud[tt.wantAud]; ok && prev != raw {
				t.Errorf("two assertions for %s within their lifetime", tt.wantAud)
			}
			for aud, other := range byAud {
				if aud != tt.wantAud && other == raw {
					t.Fatalf("the assertion for %s was sent to %s", aud, tt.wantAud)
				}
			}
			byAud[tt.wantAud] = raw
		})
	}
}

// Every reading an upstream may make of a path must choose the same route:
// without its ";" parameters (kept) or with runs of slashes merged,
// "/alertmanager;x/api" and "//alertmanager/api" are alertmanager's paths,
// though the decoded path would fall to the host's catch-all route and
// escape alertmanager's filters.
func TestRouteReadingsMustAgree(t *testing.T) {
	f := newRoutesFixture(t, UpstreamConfig{PathParameters: "keep"}, estate(), nil)
	dave := aliceID
	dave.Subject, dave.User, dave.Email, dave.Groups = "2", "dave", "dave@example.com", []string{"staff"}
	cookie := f.signIn(t, dave) // not in ops: alertmanager refuses him
	tests := []struct {
		name, url string
		want      int
		wantPath  string // as the upstream saw it
	}{
		{"parameters on the prefix", "http://ops.example.com/alertmanager;x/api", 400, ""},
		{"parameters on the prefix, escaped", "http://ops.example.com/alertmanager%3Bx/api/v2", 400, ""},
		{"a leading double slash", "http://ops.example.com//alertmanager/api", 400, ""},
		{"a double slash inside a prefix", "http://ops.example.com/alertmanager//api", 403, ""},
		{"many slashes", "http://ops.example.com///prometheus///graph", 400, ""},
		{"the prefix itself, doubled", "http://ops.example.com//alertmanager", 400, ""},
		{"the route's own filters hold", "http://ops.example.com/alertmanager/api", 403, ""},
		{"parameters after the prefix: one route either way", "http://ops.example.com/prometheus/graph;x=1", 200, "/prometheus/graph;x=1"},
		{"double slash within the catch-all", "http://ops.example.com/other//x", 200, "/ops/other//x"},
		{"a single-route host keeps its double slashes", "http://grafana.example.com//d/x", 200, "/grafana//d/x"},
		{"a parameter that names no prefix", "http://ops.example.com/prometheusx;a/b", 200, "/ops/prometheusx;a/b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := f.get(t, tt.url, cookie)
			if rec.Code != tt.want {
				t.Fatalf("code = %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
			if tt.want == 400 && !strings.Contains(rec.Body.String(), "different routes") {
				t.Fatalf("400 without saying why: %s", rec.Body)
			}
			if tt.want != 200 {
				f.upstreamNotCalled(t)
				return
			}
			if got := f.upstreamSaw(t).URL.Path; got != tt.wantPath {
				t.Fatalf("upstream saw %q, want %q", got, tt.wantPath)
			}
		})
	}
	r := httptest.NewRequest(http.MethodGet, "http://ops.example.com//alertmanager/api", nil)
	r.Header.Set("Accept", "application/json")
	r.AddCookie(cookie)
	if rec := f.do(r); rec.Code != 400 || !strings.Contains(rec.Body.String(), `"invalid_request"`) {
		t.Fatalf("JSON: %d %s", rec.Code, rec.Body)
	}
}

// With encoded slashes kept, %2F is a character of its segment for
// Gatehouse, but many upstreams decode it before routing: a request whose
// %2F-decoded reading falls under another route is refused, so
// "/alertmanager%2Fapi" cannot reach the catch-all while alertmanager's
// filters look away.
func TestKeptEncodedSlashCannotChangeTheRoute(t *testing.T) {
	f := newRoutesFixture(t, UpstreamConfig{EncodedSlashes: "keep"}, estate(), nil)
	dave := aliceID
	dave.Subject, dave.User, dave.Email, dave.Groups = "2", "dave", "dave@example.com", []string{"staff"}
	cookie := f.signIn(t, dave)
	for _, tt := range []struct {
		url  string
		want int
	}{
		{"http://ops.example.com/alertmanager%2Fapi", 400},
		{"http://ops.example.com/other%2Falertmanager", 200}, // stays in the catch-all either way
	} {
		if rec := f.get(t, tt.url, cookie); rec.Code != tt.want {
			t.Errorf("%s: %d, want %d: %s", tt.url, rec.Code, tt.want, rec.Body)
		}
	}
}
