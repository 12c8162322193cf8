package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/internal/fakegoogle"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
)

const (
	googleCallback = "https://dash.example.com/oauth2/callback/google"
	googleSA       = "groups-reader@fake-project.iam.gserviceaccount.com"
	googleAdmin    = "admin@example.com"
)

// googleFixture is a Gatehouse sign-in (Login, sessions in memory, a
// clock for the revalidator) in front of the Google provider talking to
// the fake Google.
type googleFixture struct {
	fake     *fakegoogle.Server
	srv      *httptest.Server
	p        *Google
	login    *Login
	sessions *session.Manager
	store    *sessionstore.Memory
	clk      *clock
}

type googleOpts struct {
	hosted  []string
	source  string   // admin_sdk or cloud_identity: groups with a service account; "": none
	dwd     []string // scopes delegated to the service account; nil: the source's own
	maxPage int      // the fake's page size cap
	forged  bool     // the key file holds a private key Google does not know for its key id
	edit    func(*GoogleConfig)
}

func newGoogleFixture(t *testing.T, o googleOpts) *googleFixture {
	t.Helper()
	fake := fakegoogle.New(fakegoogle.Config{ClientID: "gid", ClientSecret: "gsecret", RedirectURIs: []string{googleCallback}, MaxPageSize: o.maxPage})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	for _, u := range []fakegoogle.User{
		{Email: "alice@example.com", HostedDomain: "example.com", Name: "Alice Doe"},
		{Email: "alice@example.com.evil", HostedDomain: "example.com.evil"},
		{Email: "bob@other.com", HostedDomain: "other.com"},
		{Email: "carol@example.com"}, // a consumer account with an address in the domain
		{Email: "dave@example.com", HostedDomain: "example.com", EmailUnverified: true},
		{Email: googleAdmin, HostedDomain: "example.com", Admin: true},
	} {
		u.Password = "pw"
		fake.SetUser(u)
	}
	cfg := DefaultGoogle()
	cfg.Enabled, cfg.URL, cfg.ClientID, cfg.ClientSecret = true, srv.URL, "gid", "gsecret"
	cfg.AdminSDKURL, cfg.CloudIdentityURL, cfg.AllowedHostedDomains = srv.URL, srv.URL, o.hosted
	f := &googleFixture{fake: fake, srv: srv, clk: &clock{t: time.Now()}}
	if o.source != "" {
		dwd := o.dwd
		if dwd == nil {
			dwd = []string{map[string]string{googleAdminSDK: googleScopeAdminSDK, googleCloudIdentity: googleScopeCloudIdentity}[o.source]}
		}
		key, err := fake.ServiceAccount(googleSA, srv.URL+fakegoogle.TokenPath, dwd...)
		if err != nil {
			t.Fatal(err)
		}
		if o.forged {
			// A new key replaces the account's; the file keeps the old
			// private key under the new key's id.
			other, err := fake.ServiceAccount(googleSA, srv.URL+fakegoogle.TokenPath, dwd...)
			var a, b map[string]string
			if err != nil || json.Unmarshal(key, &a) != nil || json.Unmarshal(other, &b) != nil {
				t.Fatal(err)
			}
			a["private_key_id"] = b["private_key_id"]
			key, _ = json.Marshal(a)
		}
		file := filepath.Join(t.TempDir(), "sa.json")
		if err := os.WriteFile(file, key, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.ServiceAccountFile, cfg.AdminEmail, cfg.GroupsSource = file, googleAdmin, o.source
	}
	if o.edit != nil {
		o.edit(&cfg)
	}
	p, err := NewGoogle(cfg, filters.Lists{}, googleCallback, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	f.p = p
	f.store = sessionstore.NewMemory(f.clk.now)
	f.sessions = session.NewManager(session.Config{CookieName: "_gatehouse", CookieSameSite: "lax", Lifetime: 100 * time.Hour,
		IdleTimeout: 100 * time.Hour}, f.store, f.clk.now)
	f.login = NewLogin(LoginConfig{Providers: []Provider{p}, Sessions: f.sessions, Pages: pages.New(), PublicURL: harnessPublic,
		Prefix: "/oauth2", Secret: "0123456789abcdef0123456789abcdef", Cookie: "_gatehouse",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: f.clk.now})
	return f
}

// signIn runs a browser through /start, Google's sign-in form as email and
// the callback, and returns the callback's response.
func (f *googleFixture) signIn(t *testing.T, email string) *http.Response {
	t.Helper()
	start := httptest.NewRecorder()
	f.login.Start(start, httptest.NewRequest(http.MethodGet, "https://dash.example.com/oauth2/start?rd=/app", nil))
	back, err := fakegoogle.SignIn(f.srv.Client(), start.Header().Get("Location"), email, "pw")
	if err != nil {
		t.Fatal(err)
	}
	cb := httptest.NewRequest(http.MethodGet, back, nil)
	for _, c := range start.Result().Cookies() {
		cb.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	f.login.Callback(f.p).ServeHTTP(rec, cb)
	return rec.Result()
}

// session signs in as email and returns the session created.
func (f *googleFixture) session(t *testing.T, email string) *session.Session {
	t.Helper()
	resp := f.signIn(t, email)
	c := sessionCookie(resp)
	if resp.StatusCode != http.StatusFound || c == nil {
		t.Fatalf("sign-in as %s: %d %s", email, resp.StatusCode, bodyOf(t, resp))
	}
	r := httptest.NewRequest(http.MethodGet, "https://dash.example.com/app", nil)
	r.AddCookie(c)
	s, err := f.sessions.Load(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// apiRequests counts the directory API requests for path.
func (f *googleFixture) apiRequests(path string) int {
	return strings.Count(strings.Join(f.fake.Requests(), "\n"), path)
}

func TestGoogleHostedDomain(t *testing.T) {
	for _, tc := range []struct {
		name, email string
		hosted      []string
		want        int
	}{
		{"allowed hd", "alice@example.com", []string{"Example.com"}, http.StatusFound},
		{"one of several", "bob@other.com", []string{"example.com", "other.com"}, http.StatusFound},
		{"consumer account with an address in the domain", "carol@example.com", []string{"example.com"}, http.StatusForbidden},
		{"another hd", "bob@other.com", []string{"example.com"}, http.StatusForbidden},
		{"hd extending an allowed one", "alice@example.com.evil", []string{"example.com"}, http.StatusForbidden},
		{"no hosted domains configured", "carol@example.com", nil, http.StatusFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newGoogleFixture(t, googleOpts{hosted: tc.hosted})
			resp := f.signIn(t, tc.email)
			body := bodyOf(t, resp)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if tc.want == http.StatusForbidden {
				if sessionCookie(resp) != nil || !strings.Contains(body, "not in an allowed Workspace domain") {
					t.Fatalf("refusal set a session or does not say why: %s", body)
				}
			}
		})
	}
}

func TestGoogleIdentity(t *testing.T) {
	f := newGoogleFixture(t, googleOpts{hosted: []string{"example.com"}})
	id := f.session(t, "alice@example.com").Identity
	if id.Provider != "google" || id.User != "alice" || id.Email != "alice@example.com" || !id.EmailVerified || id.Name != "Alice Doe" {
		t.Errorf("identity = %+v", id)
	}
	if len(id.Subject) != 21 || id.Groups == nil || len(id.Groups) != 0 {
		t.Errorf("subject %q groups %v", id.Subject, id.Groups)
	}
	// email_verified: false leaves the address unverified; it names nobody.
	id = f.session(t, "dave@example.com").Identity
	if id.EmailVerified || id.User != id.Subject {
		t.Errorf("unverified address: verified=%v user=%q", id.EmailVerified, id.User)
	}
	// With several domains the local part would be ambiguous.
	f = newGoogleFixture(t, googleOpts{hosted: []string{"example.com", "other.com"}})
	if id := f.session(t, "bob@other.com").Identity; id.User != "bob@other.com" {
		t.Errorf("user = %q, want the whole address", id.User)
	}
}

func TestGoogleAuthorizationParameters(t *testing.T) {
	for _, tc := range []struct {
		hosted []string
		hd     string
	}{{[]string{"example.com"}, "example.com"}, {[]string{"example.com", "other.com"}, "*"}, {nil, ""}} {
		t.Run(fmt.Sprint(tc.hosted), func(t *testing.T) {
			f := newGoogleFixture(t, googleOpts{hosted: tc.hosted, edit: func(c *GoogleConfig) {
				c.Prompt, c.ExtraAuthParams = "select_account", map[string]string{"login_hint": "alice@example.com"}
			}})
			raw, err := f.p.AuthCodeURL(context.Background(), newLoginState("google", "/", time.Now()))
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(raw)
			q := u.Query()
			if u.Path != fakegoogle.AuthPath || q.Get("hd") != tc.hd || q.Has("hd") != (tc.hd != "") || q.Get("access_type") != "offline" ||
				q.Get("prompt") != "select_account" || q.Get("login_hint") != "alice@example.com" || q.Get("nonce") == "" ||
				q.Get("code_challenge_method") != "S256" || q.Get("scope") != "openid email profile" {
				t.Fatalf("authorization URL %s", raw)
			}
		})
	}
}

func TestGoogleGroupsAdminSDK(t *testing.T) {
	f := newGoogleFixture(t, googleOpts{hosted: []string{"example.com"}, source: googleAdminSDK,
		edit: func(c *GoogleConfig) { c.AllowedGroups = []string{"Team-249@example.com"} }})
	for i := 0; i < 250; i++ {
		f.fake.SetGroup(fakegoogle.Group{Email: fmt.Sprintf("Team-%03d@example.com", i), Members: []string{"alice@example.com"}})
	}
	f.fake.SetGroup(fakegoogle.Group{Email: "outer@example.com", Members: []string{"team-000@example.com"}}) // nested: not direct
	id := f.session(t, "alice@example.com").Identity
	if len(id.Groups) != 250 || id.Groups[0] != "team-000@example.com" || id.Groups[249] != "team-249@example.com" {
		t.Fatalf("got %d groups (%v...), want the 250 direct ones lower-cased", len(id.Groups), id.Groups[:min(3, len(id.Groups))])
	}
	if n := f.apiRequests("/admin/directory/v1/groups?"); n != 2 {
		t.Fatalf("%d groups.list requests, want 2 pages: %v", n, f.fake.Requests())
	}
	if r := f.fake.Requests()[0]; !strings.Contains(r, "userKey=alice%40example.com") || !strings.Contains(r, "maxResults=200") {
		t.Errorf("request %s", r)
	}
	// The fake verified the assertion's signature with the key's public
	// half; these are its claims.
	a := f.fake.Assertions()
	if len(a) != 1 || a[0].Issuer != googleSA || a[0].Subject != googleAdmin || a[0].Scope != googleScopeAdminSDK ||
		a[0].Audience != f.srv.URL+fakegoogle.TokenPath || a[0].KeyID == "" {
		t.Fatalf("assertions = %+v", a)
	}
	// The service account's token is reused while it lasts.
	f.session(t, "alice@example.com")
	if n := len(f.fake.Assertions()); n != 1 {
		t.Errorf("%d assertions for two sign-ins, want the token reused", n)
	}
	// An allowed group gates the sign-in.
	if resp := f.signIn(t, googleAdmin); resp.StatusCode != http.StatusForbidden || sessionCookie(resp) != nil {
		t.Errorf("user outside allowed_groups: %d", resp.StatusCode)
	}
}

func TestGoogleGroupsCloudIdentityTransitive(t *testing.T) {
	f := newGoogleFixture(t, googleOpts{hosted: []string{"example.com"}, source: googleCloudIdentity, maxPage: 2})
	f.fake.SetGroup(fakegoogle.Group{Email: "db@example.com", Members: []string{"alice@example.com"}})
	f.fake.SetGroup(fakegoogle.Group{Email: "infra@example.com", Members: []string{"db@example.com"}})
	f.fake.SetGroup(fakegoogle.Group{Email: "Eng@example.com", Members: []string{"infra@example.com", "alice@example.com"}})
	f.fake.SetGroup(fakegoogle.Group{Email: "sales@example.com", Members: []string{"bob@other.com"}})
	id := f.session(t, "alice@example.com").Identity
	if got := strings.Join(id.Groups, ","); got != "db@example.com,eng@example.com,infra@example.com" {
		t.Fatalf("groups = %s, want direct and nested ones", got)
	}
	if n := f.apiRequests("memberships:searchTransitiveGroups?"); n != 2 {
		t.Fatalf("%d searchTransitiveGroups requests, want 2 pages", n)
	}
	q, _ := url.ParseQuery(strings.SplitN(f.fake.Requests()[0], "?", 2)[1])
	if q.Get("query") != "member_key_id == 'alice@example.com' && 'cloudidentity.googleapis.com/groups.discussion_forum' in labels" {
		t.Errorf("query = %q", q.Get("query"))
	}
	if a := f.fake.Assertions(); len(a) != 1 || a[0].Scope != googleScopeCloudIdentity || a[0].Subject != googleAdmin {
		t.Errorf("assertions = %+v", a)
	}
}

func TestGoogleGroupsUnavailableAtSignIn(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  googleOpts
		setup func(*fakegoogle.Server)
	}{
		{"directory answers 500", googleOpts{source: googleAdminSDK}, func(s *fakegoogle.Server) { s.FailAPI(1, http.StatusInternalServerError) }},
		{"cloud identity answers 503", googleOpts{source: googleCloudIdentity}, func(s *fakegoogle.Server) { s.FailAPI(1, http.StatusServiceUnavailable) }},
		{"assertion signed with another key", googleOpts{source: googleAdminSDK, forged: true}, func(*fakegoogle.Server) {}},
		{"scope not delegated", googleOpts{source: googleCloudIdentity, dwd: []string{googleScopeAdminSDK}}, func(*fakegoogle.Server) {}},
		{"admin_email no administrator", googleOpts{source: googleAdminSDK, edit: func(c *GoogleConfig) { c.AdminEmail = "alice@example.com" }}, func(*fakegoogle.Server) {}},
		{"admin_email unknown", googleOpts{source: googleAdminSDK, edit: func(c *GoogleConfig) { c.AdminEmail = "nobody@example.com" }}, func(*fakegoogle.Server) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newGoogleFixture(t, tc.opts)
			tc.setup(f.fake)
			resp := f.signIn(t, "alice@example.com")
			body := bodyOf(t, resp)
			if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "Google groups unavailable") {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if sessionCookie(resp) != nil {
				t.Fatal("a session was created without groups")
			}
			for _, k := range f.store.Keys() {
				if strings.HasPrefix(k, "s1:") {
					t.Fatalf("session record %s stored", k)
				}
			}
		})
	}
}

func TestGoogleRevalidate(t *testing.T) {
	f := newGoogleFixture(t, googleOpts{hosted: []string{"example.com"}, source: googleAdminSDK})
	f.fake.SetGroup(fakegoogle.Group{Email: "ops@example.com", Members: []string{"alice@example.com"}})
	s := f.session(t, "alice@example.com")
	if s.Token.RefreshToken == "" || s.Token.IDToken != "" {
		t.Fatalf("stored token: refresh %v, id token kept %v", s.Token.RefreshToken != "", s.Token.IDToken != "")
	}
	// Groups are read again.
	f.fake.SetGroup(fakegoogle.Group{Email: "dev@example.com", Members: []string{"alice@example.com"}})
	id, tok, err := f.p.Revalidate(context.Background(), s.Token)
	if err != nil || strings.Join(id.Groups, ",") != "dev@example.com,ops@example.com" || tok.IDToken != "" || tok.RefreshToken != s.Token.RefreshToken {
		t.Fatalf("revalidate: %v groups %v", err, id.Groups)
	}
	// A groups API outage is not a revocation: the grace rule applies.
	f.fake.FailAPI(1, http.StatusInternalServerError)
	_, _, err = f.p.Revalidate(context.Background(), s.Token)
	var le *LoginError
	if err == nil || errors.Is(err, ErrRevoked) || !errors.As(err, &le) || le.Status != http.StatusBadGateway {
		t.Fatalf("groups outage at revalidation: %v", err)
	}
	rv := NewRevalidator(f.login, f.sessions, time.Hour, f.clk.now)
	f.clk.advance(61 * time.Minute)
	f.fake.FailAPI(100, http.StatusInternalServerError)
	if got, err := rv.Check(context.Background(), s); err != nil || got == nil {
		t.Fatalf("within grace: %v", err)
	}
	f.clk.advance(60 * time.Minute)
	if _, err := rv.Check(context.Background(), s); !errors.Is(err, ErrProviderDown) {
		t.Fatalf("after grace: %v, want ErrProviderDown", err)
	}
	f.fake.FailAPI(0, 0)
	// The account leaves the allowed Workspace domain: the session ends.
	f.fake.SetUser(fakegoogle.User{Email: "alice@example.com", HostedDomain: "other.com", Password: "pw"})
	if _, _, err := f.p.Revalidate(context.Background(), s.Token); !errors.Is(err, ErrRevoked) {
		t.Fatalf("hd changed: %v, want ErrRevoked", err)
	}
	// Revoked at Google: the session ends.
	f.fake.RevokeTokens("alice@example.com")
	if _, _, err := f.p.Revalidate(context.Background(), s.Token); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked: %v, want ErrRevoked", err)
	}
}

// A second sign-in without prompt=consent gets no refresh token from
// Google; hd then comes from userinfo.
func TestGoogleRevalidateWithoutRefreshToken(t *testing.T) {
	f := newGoogleFixture(t, googleOpts{hosted: []string{"example.com"}})
	f.session(t, "alice@example.com")
	s := f.session(t, "alice@example.com")
	if s.Token.RefreshToken != "" {
		t.Fatal("the fake gave a refresh token without consent")
	}
	if id, _, err := f.p.Revalidate(context.Background(), s.Token); err != nil || id.User != "alice" {
		t.Fatalf("revalidate by userinfo: %v %+v", err, id)
	}
	f.fake.SetUser(fakegoogle.User{Email: "alice@example.com", Password: "pw"}) // hd gone
	if _, _, err := f.p.Revalidate(context.Background(), s.Token); !errors.Is(err, ErrRevoked) {
		t.Fatalf("hd gone: %v, want ErrRevoked", err)
	}
}

func TestGoogleConfigValidate(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, content []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key, err := fakegoogle.New(fakegoogle.Config{}).ServiceAccount(googleSA, "https://oauth2.googleapis.com/token")
	if err != nil {
		t.Fatal(err)
	}
	good := write("good.json", key)
	variant := func(name string, edit func(map[string]string)) string {
		m := map[string]string{}
		if err := json.Unmarshal(key, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		b, _ := json.Marshal(m)
		return write(name, b)
	}
	withKey := func(path string) func(*GoogleConfig) {
		return func(c *GoogleConfig) { c.ServiceAccountFile, c.AdminEmail = path, googleAdmin }
	}
	for _, tc := range []struct {
		name      string
		edit      func(*GoogleConfig)
		key, want string
	}{
		{"minimal", func(*GoogleConfig) {}, "", ""},
		{"groups with a service account", func(c *GoogleConfig) {
			withKey(good)(c)
			c.AllowedGroups, c.AllowedHostedDomains, c.GroupsSource = []string{"Ops@Example.com"}, []string{"Example.com"}, googleCloudIdentity
		}, "", ""},
		{"groups without a service account", func(c *GoogleConfig) { c.AllowedGroups = []string{"ops@example.com"} }, "allowed_groups", "without a service account"},
		{"service account without admin_email", func(c *GoogleConfig) { c.ServiceAccountFile = good }, "admin_email", "required"},
		// Groups are read by address: only hd proves the address is the
		// Workspace user's, not a consumer account opened under it.
		{"service account without hosted domains", withKey(good), "allowed_hosted_domains", "required with service_account_file"},
		{"admin_email not an address", func(c *GoogleConfig) { withKey(good)(c); c.AdminEmail = "admin" }, "admin_email", "not an e-mail"},
		{"key file missing", withKey(filepath.Join(dir, "missing.json")), "service_account_file", "cannot read"},
		{"key file not JSON", withKey(write("bad.json", []byte("{"))), "service_account_file", "not a JSON"},
		{"key of another type", withKey(variant("user.json", func(m map[string]string) { m["type"] = "authorized_user" })), "service_account_file", "type"},
		{"key without private_key", withKey(variant("nokey.json", func(m map[string]string) { delete(m, "private_key") })), "service_account_file", "lacks private_key"},
		{"key not PEM", withKey(variant("junk.json", func(m map[string]string) { m["private_key"] = "junk" })), "service_account_file", "private_key: not a PEM"},
		{"token_uri not a URL", withKey(variant("uri.json", func(m map[string]string) { m["token_uri"] = "oauth2.googleapis.com/token" })), "service_account_file", "token_uri"},
		{"unknown groups_source", func(c *GoogleConfig) { c.GroupsSource = "ldap" }, "groups_source", "admin_sdk or cloud_identity"},
		{"bad admin_sdk_url", func(c *GoogleConfig) { c.AdminSDKURL = "admin.googleapis.com" }, "admin_sdk_url", "absolute"},
		{"hosted domain with @", func(c *GoogleConfig) { c.AllowedHostedDomains = []string{"@example.com"} }, "allowed_hosted_domains[0]", "bare domain"},
		{"hosted domain with a scheme", func(c *GoogleConfig) { c.AllowedHostedDomains = []string{"https://example.com"} }, "allowed_hosted_domains[0]", "bare domain"},
		{"group not an address", func(c *GoogleConfig) { withKey(good)(c); c.AllowedGroups = []string{"ops"} }, "allowed_groups[0]", "e-mail address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultGoogle()
			cfg.Enabled, cfg.ClientID, cfg.ClientSecret = true, "id", "secret"
			tc.edit(&cfg)
			ps := cfg.validate()
			if tc.want == "" {
				if len(ps) != 0 {
					t.Fatalf("problems: %v", ps)
				}
				if len(cfg.AllowedGroups) > 0 && (cfg.AllowedGroups[0] != "ops@example.com" || cfg.AllowedHostedDomains[0] != "example.com") {
					t.Errorf("lists not lower-cased: %v %v", cfg.AllowedGroups, cfg.AllowedHostedDomains)
				}
				return
			}
			for _, p := range ps {
				if p.Key == tc.key && strings.Contains(p.Message, tc.want) {
					return
				}
			}
			t.Fatalf("problems %v, want %s: ...%s...", ps, tc.key, tc.want)
		})
	}
}

func TestGoogleWithoutConsentPromptWarns(t *testing.T) {
	for _, prompt := range []string{"", "select_account", "consent", "select_account consent"} {
		c := Config{Google: DefaultGoogle()}
		c.AllowAllUsers = true
		c.Google.Enabled, c.Google.ClientID, c.Google.ClientSecret, c.Google.Prompt = true, "id", "secret", prompt
		_, warnings, ps := c.Validate()
		if len(ps) != 0 {
			t.Fatalf("prompt %q: %v", prompt, ps)
		}
		warned := strings.Contains(strings.Join(warnings, "\n"), "auth.google.prompt")
		if want := !strings.Contains(prompt, "consent"); warned != want {
			t.Errorf("prompt %q: warned %v, want %v", prompt, warned, want)
		}
	}
}
