package authn

import (
	"context"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/internal/fakeentra"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
)

const (
	msTenantA  = "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa"
	msTenantB  = "bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb"
	msTenantC  = "cccccccc-3333-4333-8333-cccccccccccc"
	msClientID = "6731de76-14a6-49ae-97bc-6eba6914391e"
	msSecret   = "entra-client-secret"
	msGroupOps = "0e4b1c2d-0000-4000-8000-00000000a0b5"
	msCallback = "https://dash.example.com/oauth2/callback/microsoft"
)

// msOID makes a recognizable object id.
func msOID(n int) string { return fmt.Sprintf("%08d-0000-4000-8000-%012d", n, n) }

// msFixture is a Gatehouse sign-in in front of the Microsoft provider
// talking to a fake Entra ID (and fake Graph on the same server).
type msFixture struct {
	fake     *fakeentra.Server
	srv      *httptest.Server
	p        *Microsoft
	login    *Login
	sessions *session.Manager
	store    *sessionstore.Memory
}

// newMSFixture builds the fixture; fakeCfg and edit adjust the fake's app
// registration and auth.microsoft (nil: defaults). The configuration goes
// through validate, as at start-up.
func newMSFixture(t *testing.T, lists filters.Lists, fakeCfg func(*fakeentra.Config), edit func(*MicrosoftConfig)) *msFixture {
	t.Helper()
	fc := fakeentra.Config{ClientID: msClientID, ClientSecret: msSecret, RedirectURIs: []string{msCallback},
		OptionalClaims: []string{"email", "xms_edov"}, GroupMembershipClaims: true, GraphPageSize: 100}
	if fakeCfg != nil {
		fakeCfg(&fc)
	}
	fake := fakeentra.New(fc)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	fake.AddTenant(fakeentra.Tenant{ID: msTenantA, Domains: []string{"a.example", "contoso.onmicrosoft.com"}})
	fake.AddTenant(fakeentra.Tenant{ID: msTenantB, Domains: []string{"b.example"}})
	fake.AddTenant(fakeentra.Tenant{ID: msTenantC, Domains: []string{"c.example"}})
	fake.AddGroup(fakeentra.Group{ID: msGroupOps, DisplayName: "Ops"})
	fake.SetUser(fakeentra.User{TenantID: msTenantA, OID: msOID(1), UserPrincipalName: "Alice@A.example", Name: "Alice",
		Email: "alice@a.example", EmailDomainVerified: true, Groups: []string{msGroupOps}, Roles: []string{"Dashboard.Reader"}, Password: "pw"})
	fake.SetUser(fakeentra.User{TenantID: msTenantB, OID: msOID(2), UserPrincipalName: "bob@b.example", Name: "Bob",
		Email: "bob@b.example", EmailDomainVerified: true, Password: "pw"})
	fake.SetUser(fakeentra.User{TenantID: msTenantC, OID: msOID(3), UserPrincipalName: "carol@c.example", Name: "Carol",
		Email: "carol@c.example", EmailDomainVerified: true, Password: "pw"})
	// A tenant's administrator can set mail to any address; Entra does
	// not check it, and the token says so by leaving xms_edov false.
	fake.SetUser(fakeentra.User{TenantID: msTenantC, OID: msOID(4), UserPrincipalName: "mallory@c.example", Name: "Mallory",
		Email: "ceo@a.example", Password: "pw"})

	cfg := DefaultMicrosoft()
	cfg.Enabled, cfg.URL, cfg.GraphURL, cfg.Tenant = true, srv.URL, srv.URL, msTenantA
	cfg.ClientID, cfg.ClientSecret = msClientID, msSecret
	if edit != nil {
		edit(&cfg)
	}
	if ps := cfg.validate(); len(ps) > 0 {
		t.Fatalf("configuration problems: %v", ps)
	}
	p, err := NewMicrosoft(cfg, lists, msCallback, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	store := sessionstore.NewMemory(nil)
	sessions := session.NewManager(session.Config{
		CookieName: "_gatehouse", CookieSameSite: "lax", Lifetime: 100 * time.Hour, IdleTimeout: 100 * time.Hour,
	}, store, nil)
	login := NewLogin(LoginConfig{
		Providers: []Provider{p}, Sessions: sessions, Pages: pages.New(), PublicURL: harnessPublic,
		Prefix: "/oauth2", Secret: "0123456789abcdef0123456789abcdef", Cookie: "_gatehouse",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	return &msFixture{fake: fake, srv: srv, p: p, login: login, sessions: sessions, store: store}
}

var msHidden = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// signIn runs a browser through /start, the fake's sign-in form and the
// callback, and returns the callback's response.
func (f *msFixture) signIn(t *testing.T, upn string) *http.Response {
	t.Helper()
	resp, status := f.tryLogin(t, upn)
	if resp == nil {
		t.Fatalf("the fake's sign-in form refused %s: %d", upn, status)
	}
	return resp
}

// tryLogin is signIn, returning instead (nil, status) when the fake's
// sign-in form refuses upn.
func (f *msFixture) tryLogin(t *testing.T, upn string) (*http.Response, int) {
	t.Helper()
	start := httptest.NewRecorder()
	f.login.Start(start, httptest.NewRequest(http.MethodGet, "https://dash.example.com/oauth2/start?rd=/app", nil))
	if start.Code != http.StatusFound {
		t.Fatalf("start: %d %s", start.Code, start.Body)
	}
	authURL, _ := url.Parse(start.Header().Get("Location"))
	if q := authURL.Query(); q.Get("code_challenge_method") != "S256" || q.Get("nonce") == "" || q.Get("client_id") != msClientID {
		t.Fatalf("authorization request lacks PKCE, nonce or client_id: %s", authURL)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(authURL.String())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("authorize: %d %s", resp.StatusCode, page)
	}
	form := url.Values{"loginfmt": {upn}, "passwd": {"pw"}}
	for _, m := range msHidden.FindAllStringSubmatch(string(page), -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	tenant := strings.Split(strings.TrimPrefix(authURL.Path, "/"), "/")[0]
	resp, err = client.PostForm(f.srv.URL+"/"+tenant+"/login", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return nil, resp.StatusCode
	}
	cb := httptest.NewRequest(http.MethodGet, resp.Header.Get("Location"), nil)
	for _, c := range start.Result().Cookies() {
		cb.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	f.login.Callback(f.p).ServeHTTP(rec, cb)
	return rec.Result(), http.StatusFound
}

// session signs upn in, expects success and returns the session.
func (f *msFixture) session(t *testing.T, upn string) *session.Session {
	t.Helper()
	resp := f.signIn(t, upn)
	c := sessionCookie(resp)
	if resp.StatusCode != http.StatusFound || c == nil {
		t.Fatalf("sign-in of %s: %d %s", upn, resp.StatusCode, bodyOf(t, resp))
	}
	r := httptest.NewRequest(http.MethodGet, "https://dash.example.com/app", nil)
	r.AddCookie(c)
	s, err := f.sessions.Load(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// refused signs upn in and expects status without a session.
func (f *msFixture) refused(t *testing.T, upn string, status int, text string) {
	t.Helper()
	resp := f.signIn(t, upn)
	body := bodyOf(t, resp)
	if resp.StatusCode != status || sessionCookie(resp) != nil || !strings.Contains(body, text) {
		t.Fatalf("sign-in of %s: %d (cookie %v), want %d and %q:\n%s", upn, resp.StatusCode, sessionCookie(resp) != nil, status, text, body)
	}
}

func TestMicrosoftSingleTenantSignIn(t *testing.T) {
	for _, tenant := range []string{msTenantA, strings.ToUpper(msTenantA), "contoso.onmicrosoft.com"} {
		t.Run(tenant, func(t *testing.T) {
			f := newMSFixture(t, filters.Lists{}, nil, func(c *MicrosoftConfig) {
				c.Tenant, c.AllowedGroups = tenant, []string{msGroupOps}
			})
			id := f.session(t, "alice@a.example").Identity
			want := identity.Identity{Provider: "microsoft", Subject: msTenantA + ":" + msOID(1), User: "alice@a.example",
				Email: "alice@a.example", EmailVerified: true, Name: "Alice", PreferredUsername: "Alice@A.example",
				Groups: []string{msGroupOps}}
			if fmt.Sprint(id) != fmt.Sprint(want) {
				t.Errorf("identity\n got %+v\nwant %+v", id, want)
			}
			// Another tenant's user never gets a code from this authority.
			if resp, status := f.tryLogin(t, "bob@b.example"); resp != nil || status != http.StatusBadRequest {
				t.Errorf("another tenant's user at the tenant's authority: %d", status)
			}
			reqs := f.fake.TokenRequests()
			if len(reqs) != 1 || reqs[0].Get("grant_type") != "authorization_code" || reqs[0].Get("code_verifier") == "" ||
				!strings.Contains(reqs[0].Get("scope"), "offline_access") {
				t.Errorf("token requests: %v", reqs)
			}
			if len(f.fake.GraphRequests()) != 0 {
				t.Errorf("Graph asked without overage: %v", f.fake.GraphRequests())
			}
		})
	}
}

func TestMicrosoftMultiTenantAllowedTenants(t *testing.T) {
	f := newMSFixture(t, filters.Lists{}, nil, func(c *MicrosoftConfig) {
		c.Tenant, c.AllowedTenants = "organizations", []string{msTenantA, strings.ToUpper(msTenantB)}
	})
	for upn, tid := range map[string]string{"alice@a.example": msTenantA, "bob@b.example": msTenantB} {
		if id := f.session(t, upn).Identity; !strings.HasPrefix(id.Subject, tid+":") {
			t.Errorf("%s: subject %q, want it in tenant %s", upn, id.Subject, tid)
		}
	}
	f.refused(t, "carol@c.example", http.StatusForbidden, "Organization not allowed")
}

func TestMicrosoftIssuerMustBeTheTokensTenant(t *testing.T) {
	tests := []struct {
		name string
		edit func(c map[string]any, base string)
	}{
		{"iss of another allowed tenant", func(c map[string]any, base string) { c["iss"] = base + "/" + msTenantB + "/v2.0" }},
		{"tid of another allowed tenant", func(c map[string]any, _ string) { c["tid"] = msTenantB }},
		{"placeholder issuer", func(c map[string]any, base string) { c["iss"] = base + "/{tenantid}/v2.0" }},
		{"v1.0 issuer", func(c map[string]any, _ string) { c["iss"] = "https://sts.windows.net/" + msTenantA + "/" }},
		{"other authority host", func(c map[string]any, _ string) { c["iss"] = "https://login.evil.example/" + msTenantA + "/v2.0" }},
		{"no tid", func(c map[string]any, _ string) { delete(c, "tid") }},
		{"no oid", func(c map[string]any, _ string) { delete(c, "oid") }},
		{"another audience", func(c map[string]any, _ string) { c["aud"] = "00000003-0000-0000-c000-000000000000" }},
		{"nonce of another sign-in", func(c map[string]any, _ string) { c["nonce"] = "replayed" }},
		{"single tenant: token of another tenant", func(c map[string]any, base string) {
			c["tid"], c["iss"] = msTenantB, base+"/"+msTenantB+"/v2.0"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newMSFixture(t, filters.Lists{}, nil, func(c *MicrosoftConfig) {
				c.Tenant, c.AllowedTenants = "organizations", []string{msTenantA, msTenantB}
				if strings.HasPrefix(tt.name, "single tenant") {
					c.Tenant, c.AllowedTenants = msTenantA, nil
				}
			})
			f.fake.EditIDToken(func(c map[string]any) { tt.edit(c, f.srv.URL) })
			if strings.HasPrefix(tt.name, "single tenant") {
				f.refused(t, "alice@a.example", http.StatusForbidden, "Organization not allowed")
				return
			}
			f.refused(t, "alice@a.example", http.StatusBadRequest, "could not be verified")
		})
	}
}

func TestMicrosoftEmailVerifiedOnlyWithXmsEdov(t *testing.T) {
	tests := []struct {
		name     string
		optional []string
		upn      string
		edit     func(map[string]any)
		verified bool
	}{
		{"xms_edov true", []string{"email", "xms_edov"}, "alice@a.example", nil, true},
		{"xms_edov as the string 1", []string{"email", "xms_edov"}, "alice@a.example", func(c map[string]any) { c["xms_edov"] = "1" }, true},
		{"xms_edov as the string true", []string{"email", "xms_edov"}, "alice@a.example", func(c map[string]any) { c["xms_edov"] = "true" }, true},
		{"only email, xms_edov not configured", []string{"email"}, "alice@a.example", nil, false},
		{"xms_edov false: mail set by another tenant's admin", []string{"email", "xms_edov"}, "mallory@c.example", nil, false},
		{"xms_edov false as a string", []string{"email", "xms_edov"}, "alice@a.example", func(c map[string]any) { c["xms_edov"] = "false" }, false},
		{"preferred_username in the domain, no email", []string{"xms_edov"}, "alice@a.example", func(c map[string]any) { delete(c, "email") }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newMSFixture(t, filters.Lists{Domains: []string{"a.example"}},
				func(c *fakeentra.Config) { c.OptionalClaims = tt.optional },
				func(c *MicrosoftConfig) {
					c.Tenant, c.AllowedTenants = "organizations", []string{msTenantA, msTenantC}
					c.Scopes = []string{"openid", "profile", "offline_access", "User.Read"} // no email scope: optional claims only
				})
			f.fake.EditIDToken(tt.edit)
			if tt.verified {
				if id := f.session(t, tt.upn).Identity; !id.EmailVerified || !strings.HasSuffix(id.Email, "@a.example") {
					t.Fatalf("identity %+v, want a verified address at a.example", id)
				}
				return
			}
			f.refused(t, tt.upn, http.StatusForbidden, "not verified")
		})
	}
}

// groupIDs makes n group object ids.
func groupIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("9a9a9a9a-0000-4000-8000-%012d", i)
	}
	return ids
}

func TestMicrosoftGroupOverageReadsGraph(t *testing.T) {
	many := groupIDs(250)
	tests := []struct {
		name      string
		groups    []string
		edit      func(map[string]any)
		wantPages int
	}{
		{"250 groups: _claim_names overage, 3 pages", many, nil, 3},
		{"hasgroups (implicit flow overage)", many[:3], func(c map[string]any) { delete(c, "groups"); c["hasgroups"] = true }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			last := tt.groups[len(tt.groups)-1]
			f := newMSFixture(t, filters.Lists{}, nil, func(c *MicrosoftConfig) { c.AllowedGroups = []string{last} })
			f.fake.SetUser(fakeentra.User{TenantID: msTenantA, OID: msOID(1), UserPrincipalName: "alice@a.example",
				Email: "alice@a.example", EmailDomainVerified: true, Groups: tt.groups, Password: "pw",
				DirectoryRoles: []string{"88d8e3e3-8f55-4a1e-953a-9b9898b8876b"}})
			f.fake.EditIDToken(tt.edit)
			id := f.session(t, "alice@a.example").Identity
			if len(id.Groups) != len(tt.groups) || !slices.Contains(id.Groups, last) || slices.Contains(id.Groups, "88d8e3e3-8f55-4a1e-953a-9b9898b8876b") {
				t.Fatalf("%d groups (last present: %v), want the %d groups and no directory role", len(id.Groups), slices.Contains(id.Groups, last), len(tt.groups))
			}
			reqs := f.fake.GraphRequests()
			if len(reqs) != tt.wantPages || !strings.HasPrefix(reqs[0], "GET /v1.0/me/transitiveMemberOf?") {
				t.Errorf("Graph requests %q, want %d pages of /me/transitiveMemberOf", reqs, tt.wantPages)
			}
		})
	}
}

func TestMicrosoftGraphFailureRefusesSignIn(t *testing.T) {
	// A next link that leaves graph_url must not get the user's token.
	var leaked atomic.Int32
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Add(1)
		http.Error(w, "{}", http.StatusOK)
	}))
	t.Cleanup(evil.Close)
	tests := []struct {
		name   string
		break_ func(f *fakeentra.Server)
	}{
		{"500", func(f *fakeentra.Server) { f.FailGraph(0, 1, http.StatusInternalServerError) }},
		{"503 on the second page", func(f *fakeentra.Server) { f.FailGraph(1, 1, http.StatusServiceUnavailable) }},
		{"401", func(f *fakeentra.Server) { f.FailGraph(0, 1, http.StatusUnauthorized) }},
		{"next link to another host", func(f *fakeentra.Server) { f.SetGraphNextLinkBase(evil.URL) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newMSFixture(t, filters.Lists{}, nil, func(c *MicrosoftConfig) { c.AllowedGroups = []string{msGroupOps} })
			f.fake.SetUser(fakeentra.User{TenantID: msTenantA, OID: msOID(1), UserPrincipalName: "alice@a.example",
				Groups: append(groupIDs(249), msGroupOps), Password: "pw"})
			tt.break_(f.fake)
			f.refused(t, "alice@a.example", http.StatusServiceUnavailable, "Microsoft groups unavailable")
			if leaked.Load() != 0 {
				t.Error("the user's access token followed a next link off graph_url")
			}
		})
	}
}

// What reaches the upstream is what Entra vouches for: an address only
// with xms_edov, groups only by object id, and app roles never as a group.
func TestMicrosoftOnlyVouchedClaimsShapeTheIdentity(t *testing.T) {
	const other = "7b7b7b7b-0000-4000-8000-000000000001"
	tests := []struct {
		name  string
		user  fakeentra.User
		edit  func(map[string]any)
		email string
		pass  bool // allowed_groups: [msGroupOps], named "ops"
	}{
		{"member of ops, verified address", fakeentra.User{Email: "dora@a.example", EmailDomainVerified: true, Groups: []string{msGroupOps}}, nil, "dora@a.example", true},
		{"address not vouched for is dropped", fakeentra.User{Email: "ceo@a.example", Groups: []string{msGroupOps}}, nil, "", true},
		{"a role named like the allowed group", fakeentra.User{Email: "dora@a.example", EmailDomainVerified: true, Groups: []string{other}, Roles: []string{"ops"}}, nil, "dora@a.example", false},
		{"a role that is the group's object id", fakeentra.User{Email: "dora@a.example", EmailDomainVerified: true, Roles: []string{msGroupOps}}, nil, "dora@a.example", false},
		{"a group name in the groups claim", fakeentra.User{Email: "dora@a.example", EmailDomainVerified: true}, func(c map[string]any) { c["groups"] = []any{"ops"} }, "dora@a.example", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newMSFixture(t, filters.Lists{}, nil, func(c *MicrosoftConfig) {
				c.AllowedGroups = []string{msGroupOps}
				c.GroupNames = map[string]string{msGroupOps: "ops"}
				c.RolesAsGroups = true
			})
			u := tt.user
			u.TenantID, u.OID, u.UserPrincipalName, u.Name, u.Password = msTenantA, msOID(9), "dora@a.example", "Dora", "pw"
			f.fake.SetUser(u)
			f.fake.EditIDToken(tt.edit)
			if !tt.pass {
				f.refused(t, "dora@a.example", http.StatusForbidden, "")
				return
			}
			id := f.session(t, "dora@a.example").Identity
			if id.Email != tt.email || !slices.Contains(id.Groups, "ops") {
				t.Fatalf("identity %+v, want e-mail %q and group ops", id, tt.email)
			}
		})
	}
}

func TestMicrosoftGroupNamesMustBeUnique(t *testing.T) {
	c := DefaultMicrosoft()
	c.Enabled, c.Tenant, c.ClientID, c.ClientSecret = true, msTenantA, "id", "secret"
	c.AllowedTenants = []string{msTenantA}
	c.GroupNames = map[string]string{
		msGroupOps: "ops", "7b7b7b7b-0000-4000-8000-000000000001": "ops", "7b7b7b7b-0000-4000-8000-000000000002": msGroupOps,
	}
	ps := c.validate()
	if len(ps) != 2 {
		t.Fatalf("problems %v, want the duplicate name and the id-shaped name", ps)
	}
}
