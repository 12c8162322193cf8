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
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
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
	f.h = New(Options{
		Server: server, Upstream: upCfg,
		Headers: HeadersConfig{User: "X-Forwarded-User", Email: "X-Forwarded-Email", Groups: "X-Forwarded-Groups",
			PreferredUsername: "X-Forwarded-Preferred-Username", Assertion: assertion.Config{Enabled: true, Header: "X-Gatehouse-Assertion"}},
		PublicURL: public, Trusted: trusted, Routes: lists, Policies: compiled,
		Login: login, Revalid: authn.NewRevalidator(login, f.sessions, time.Hour, nil), Sessions: f.sessions,
		Cookie: "_gatehouse", Pages: pg, Logger: log, Assertion: f.signer,
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
	// Hand-off and account endpoints are wired, on every host.
	if rec := f.get(t, "http://grafana.example.com/oauth2/handoff?code=x", nil); rec.Code != http.StatusTeapot || f.ho.served != 1 {
		t.Fatalf("handoff: %d", rec.Code)
	}
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		r := httptest.NewRequest(m, "http://grafana.example.com/oauth2/sessions", nil)
		if rec := f.do(r); rec.Code != 299 {
			t.Fatalf("%s sessions: %d", m, rec.Code)
		}
	}
}
