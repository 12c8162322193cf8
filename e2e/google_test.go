package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse/gatehouse/demo/idp"
	"github.com/gatehouse/gatehouse/internal/fakegoogle"
)

// Google accounts. Subjects are fixed so that the assertion's sub can be
// checked; only admin may be impersonated by the service account.
var (
	gAlice = fakegoogle.User{Subject: "110000000000000000001", Email: "alice@example.com", HostedDomain: "example.com", Name: "Alice Example", Password: password}
	gBob   = fakegoogle.User{Subject: "110000000000000000002", Email: "bob@example.com", HostedDomain: "example.com", Name: "Bob Example", Password: password}
	// A consumer Google account made with a work address: the e-mail is in
	// the domain, verified even, but Google puts no hd in its tokens, since
	// the Workspace does not own the account.
	gCarol = fakegoogle.User{Subject: "110000000000000000003", Email: "carol@example.com", Name: "Carol Consumer", Password: password}
	// A Workspace account of another organization.
	gOtto  = fakegoogle.User{Subject: "110000000000000000004", Email: "otto@other.test", HostedDomain: "other.test", Name: "Otto Other", Password: password}
	gAdmin = fakegoogle.User{Subject: "110000000000000000009", Email: "admin@example.com", HostedDomain: "example.com", Name: "Admin", Password: password, Admin: true}
)

const (
	googleClientID     = "gatehouse-e2e.apps.googleusercontent.com"
	googleClientSecret = "GOCSPX-e2e-secret"
	googleOpsPolicy    = `GATEHOUSE_POLICIES=[{"path":"^/+ops(/|$)","allowed_groups":["ops@example.com"]}]`
)

// googleOptions configure googleStack.
type googleOptions struct {
	groupsSource string // "": no service account; else admin_sdk or cloud_identity
	maxPageSize  int    // the fake's cap on directory page sizes
	env          []string
}

// googleStack starts gatehouse with auth.google against a fake Google,
// next to the harness's "corp" provider, allowing the hosted domain
// example.com. The fake's redirect URI must name gatehouse's public URL,
// which start hands out only to its idp hook, so the fake is made there
// and the listener, started first so that its URL can go into the
// environment, serves whichever fake is current.
func googleStack(t *testing.T, o googleOptions, users ...fakegoogle.User) (*stack, *fakegoogle.Server) {
	t.Helper()
	var current atomic.Pointer[fakegoogle.Server]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		current.Load().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	env := []string{
		"GATEHOUSE_AUTH_GOOGLE_ENABLED=true",
		"GATEHOUSE_AUTH_GOOGLE_URL=" + srv.URL,
		"GATEHOUSE_AUTH_GOOGLE_CLIENT_ID=" + googleClientID,
		"GATEHOUSE_AUTH_GOOGLE_CLIENT_SECRET=" + googleClientSecret,
		"GATEHOUSE_AUTH_GOOGLE_ALLOWED_HOSTED_DOMAINS=example.com",
	}
	keyFile := filepath.Join(t.TempDir(), "service-account.json")
	if o.groupsSource != "" {
		env = append(env,
			"GATEHOUSE_AUTH_GOOGLE_SERVICE_ACCOUNT_FILE="+keyFile,
			"GATEHOUSE_AUTH_GOOGLE_ADMIN_EMAIL="+gAdmin.Email,
			"GATEHOUSE_AUTH_GOOGLE_GROUPS_SOURCE="+o.groupsSource,
			"GATEHOUSE_AUTH_GOOGLE_ADMIN_SDK_URL="+srv.URL,
			"GATEHOUSE_AUTH_GOOGLE_CLOUD_IDENTITY_URL="+srv.URL,
		)
	}
	s := start(t, options{env: append(env, o.env...), idp: func(_ *idp.Config, public string) {
		g := fakegoogle.New(fakegoogle.Config{ClientID: googleClientID, ClientSecret: googleClientSecret,
			RedirectURIs: []string{public + "/oauth2/callback/google"}, MaxPageSize: o.maxPageSize})
		for _, u := range users {
			g.SetUser(u)
		}
		if o.groupsSource != "" {
			// Domain-wide delegation of the one read-only scope each
			// source needs, as an administrator sets it up.
			key, err := g.ServiceAccount("gatehouse@fake-project.iam.gserviceaccount.com", srv.URL+fakegoogle.TokenPath,
				fakegoogle.ScopeDirectoryGroupReadonly, fakegoogle.ScopeCloudIdentityReadonly)
			if err != nil {
				t.Fatal(err)
			}
			// gatehouse reads the key at start-up, which comes after this hook.
			if err := os.WriteFile(keyFile, key, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		current.Store(g)
	}})
	return s, current.Load()
}

// signInWithGoogle clicks Google on the sign-in page reached from path,
// fills in the fake Google's form and fails at once unless the page the
// browser ends on (every redirect followed) has status want, rather than
// leaving later lookups to wait out the browser's deadline.
func signInWithGoogle(t *testing.T, ctx context.Context, s *stack, path string, u fakegoogle.User, want int64) {
	t.Helper()
	err := chromedp.Run(ctx,
		chromedp.Navigate(s.URL+path),
		chromedp.WaitVisible("#provider-google", chromedp.ByID),
		chromedp.Click("#provider-google", chromedp.ByID),
		chromedp.WaitVisible("#identifierId", chromedp.ByID),
		chromedp.SendKeys("#identifierId", u.Email, chromedp.ByID),
		chromedp.SendKeys("#password", u.Password, chromedp.ByID),
	)
	if err != nil {
		t.Fatalf("Google sign-in as %s: %v\n%s", u.Email, err, s.logs.String())
	}
	resp, err := chromedp.RunResponse(ctx, chromedp.Click("#signin", chromedp.ByID))
	if err != nil {
		t.Fatalf("Google sign-in as %s: %v\n%s", u.Email, err, s.logs.String())
	}
	if resp.Status != want {
		t.Fatalf("Google sign-in as %s from %s: %s answered %d, want %d; the page says %q",
			u.Email, path, resp.URL, resp.Status, want, pageText(ctx))
	}
}

// pageText is the text the browser shows now, for failure messages.
func pageText(ctx context.Context) string {
	var out string
	_ = chromedp.Run(ctx, chromedp.Evaluate(`document.body ? document.body.innerText : ""`, &out))
	return out
}

// signInWithGoogleClient runs the same flow with plain HTTP and returns
// gatehouse's answer at the callback: the redirect to rd, or a refusal.
func signInWithGoogleClient(t *testing.T, c *http.Client, s *stack, rd string, u fakegoogle.User) *http.Response {
	t.Helper()
	resp := mustGet(t, c, s.URL+"/oauth2/start?provider=google&rd="+url.QueryEscape(rd))
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("start: %d", resp.StatusCode)
	}
	back, err := fakegoogle.SignIn(c, resp.Header.Get("Location"), u.Email, u.Password)
	if err != nil {
		t.Fatalf("Google sign-in as %s: %v", u.Email, err)
	}
	return mustGet(t, c, back)
}

// TestGoogleHostedDomain: only accounts whose ID token carries an allowed
// hd get in; an address in the domain is not enough.
func TestGoogleHostedDomain(t *testing.T) {
	t.Parallel()
	// other.test is an allowed e-mail domain too, so that the only thing
	// keeping otto out is his token's hd.
	s, g := googleStack(t, googleOptions{env: []string{"GATEHOUSE_AUTH_ALLOWED_DOMAINS=example.com,other.test"}}, gAlice, gCarol, gOtto)

	ctx := browser(t)
	signInWithGoogle(t, ctx, s, "/reports?q=1", gAlice, http.StatusOK)
	if got := text(t, ctx, "#x-forwarded-user"); got != "alice" {
		t.Errorf("X-Forwarded-User = %q, want alice (the local part in the one hosted domain)", got)
	}
	if got := text(t, ctx, "#x-forwarded-email"); got != gAlice.Email {
		t.Errorf("X-Forwarded-Email = %q", got)
	}
	if loc := location(t, ctx); !strings.HasSuffix(loc, "/reports?q=1") {
		t.Errorf("landed on %s, want the page asked for", loc)
	}
	claims := assertionClaims(t, s, text(t, ctx, "#x-gatehouse-assertion"))
	if claims["sub"] != "google:"+gAlice.Subject || claims["email"] != gAlice.Email {
		t.Errorf("assertion sub/email = %v/%v, want google:%s/%s", claims["sub"], claims["email"], gAlice.Subject, gAlice.Email)
	}
	// One allowed domain: the account chooser is told to offer it (hd),
	// which is only a hint; the callback's hd check is what the rest of
	// this test is about.
	if reqs := g.AuthRequests(); len(reqs) == 0 || reqs[0].Get("hd") != "example.com" {
		t.Errorf("authorization request hd = %v, want example.com", reqs)
	}

	// carol's address is at example.com and verified, but her token has no hd.
	ctx = browser(t)
	signInWithGoogle(t, ctx, s, "/", gCarol, http.StatusForbidden)
	if got := text(t, ctx, "#error"); got != "Access denied" {
		t.Errorf("carol (no hd): heading = %q", got)
	}
	if got := text(t, ctx, "main"); !strings.Contains(got, "not in an allowed Workspace domain") {
		t.Errorf("carol (no hd): page says %q, want the hosted-domain refusal", got)
	}
	// No session was made: the protected page leads to sign-in again.
	if err := chromedp.Run(ctx, chromedp.Navigate(s.URL+"/"), chromedp.WaitVisible("#provider-google", chromedp.ByID)); err != nil {
		t.Fatalf("after carol's refusal, / did not lead to sign-in: %v", err)
	}

	// otto's Workspace is another one: hd other.test.
	c := httpClient(t)
	resp := signInWithGoogleClient(t, c, s, "/", gOtto)
	if body := readBody(t, resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "not in an allowed Workspace domain") {
		t.Errorf("otto (hd other.test): %d, want 403 with the hosted-domain refusal", resp.StatusCode)
	}
	if code, _ := getJSON(t, c, s.URL+"/", nil); code != http.StatusUnauthorized {
		t.Errorf("otto has a session after the refusal: %d", code)
	}
}

// TestGoogleGroupsAdminSDKGateRoute: groups read from the Directory API
// (groups.list, every page) with the service account acting as the
// administrator decide a route policy.
func TestGoogleGroupsAdminSDKGateRoute(t *testing.T) {
	t.Parallel()
	// Pages of one group, so alice's two groups take two requests.
	s, g := googleStack(t, googleOptions{groupsSource: "admin_sdk", maxPageSize: 1, env: []string{googleOpsPolicy}},
		gAlice, gBob, gAdmin)
	g.SetGroup(fakegoogle.Group{Email: "ops@example.com", Name: "Ops", Members: []string{gAlice.Email}})
	g.SetGroup(fakegoogle.Group{Email: "staff@example.com", Name: "Staff", Members: []string{gAlice.Email, gBob.Email}})

	ctx := browser(t)
	signInWithGoogle(t, ctx, s, "/ops/dashboard", gAlice, http.StatusOK)
	if got := text(t, ctx, "#x-forwarded-groups"); got != "ops@example.com,staff@example.com" {
		t.Errorf("X-Forwarded-Groups = %q, want both of alice's groups (two pages)", got)
	}
	if loc := location(t, ctx); !strings.HasSuffix(loc, "/ops/dashboard") {
		t.Errorf("landed on %s", loc)
	}
	var paged bool
	for _, r := range g.Requests() {
		paged = paged || (strings.Contains(r, "userKey=alice%40example.com") && strings.Contains(r, "pageToken="))
	}
	if !paged {
		t.Errorf("directory requests %q: no second page for alice", g.Requests())
	}
	as := g.Assertions()
	if len(as) == 0 || as[0].Subject != gAdmin.Email || as[0].Scope != fakegoogle.ScopeDirectoryGroupReadonly {
		t.Errorf("JWT-bearer assertions = %+v, want one acting as %s with the directory read-only scope", as, gAdmin.Email)
	}

	// bob is in staff only: signed in, but not into /ops.
	ctx = browser(t)
	signInWithGoogle(t, ctx, s, "/ops/dashboard", gBob, http.StatusForbidden)
	if got := text(t, ctx, "#reason"); !strings.Contains(got, "group") {
		t.Errorf("bob on /ops: reason = %q, want a group denial", got)
	}
	// The denied page's CSP forbids fetch, so the browser navigates to a
	// route no policy covers: the session is there, only /ops is closed.
	if err := chromedp.Run(ctx, chromedp.Navigate(s.URL+"/")); err != nil {
		t.Fatal(err)
	}
	if got := text(t, ctx, "#x-forwarded-groups"); got != "staff@example.com" {
		t.Errorf("bob on /: X-Forwarded-Groups = %q, want staff@example.com", got)
	}
}

// TestGoogleGroupsCloudIdentityTransitive: with Cloud Identity, a group
// reached through a nested group counts, and a directory API failure at
// sign-in refuses the sign-in instead of making a session without groups.
func TestGoogleGroupsCloudIdentityTransitive(t *testing.T) {
	t.Parallel()
	s, g := googleStack(t, googleOptions{groupsSource: "cloud_identity", env: []string{googleOpsPolicy}}, gAlice, gBob, gAdmin)
	// alice is in sre, and sre is a member of ops.
	g.SetGroup(fakegoogle.Group{Email: "sre@example.com", Name: "SRE", Members: []string{gAlice.Email}})
	g.SetGroup(fakegoogle.Group{Email: "ops@example.com", Name: "Ops", Members: []string{"sre@example.com"}})

	ctx := browser(t)
	signInWithGoogle(t, ctx, s, "/ops", gAlice, http.StatusOK)
	if got := text(t, ctx, "#x-forwarded-groups"); got != "ops@example.com,sre@example.com" {
		t.Errorf("X-Forwarded-Groups = %q, want sre and, through it, ops", got)
	}
	var transitive bool
	for _, r := range g.Requests() {
		transitive = transitive || strings.Contains(r, "/v1/groups/-/memberships:searchTransitiveGroups?")
	}
	if !transitive {
		t.Errorf("directory requests %q: Cloud Identity was not asked", g.Requests())
	}

	c := httpClient(t)
	resp := signInWithGoogleClient(t, c, s, "/", gBob)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("bob: sign-in %d", resp.StatusCode)
	}
	if code, _ := getJSON(t, c, s.URL+"/ops", nil); code != http.StatusForbidden {
		t.Errorf("bob (no groups) on /ops: %d, want 403", code)
	}
	if code, _ := getJSON(t, c, s.URL+"/", nil); code != http.StatusOK {
		t.Errorf("bob on /: %d, want 200", code)
	}

	// Fail closed: the API answers 503, so alice's sign-in is refused.
	g.FailAPI(1, http.StatusServiceUnavailable)
	c = httpClient(t)
	resp = signInWithGoogleClient(t, c, s, "/ops", gAlice)
	if body := readBody(t, resp); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "Google groups unavailable") {
		t.Errorf("sign-in during a directory outage: %d, want 503 with the groups-unavailable page", resp.StatusCode)
	}
	if code, _ := getJSON(t, c, s.URL+"/", nil); code != http.StatusUnauthorized {
		t.Errorf("a session exists after the refused sign-in: %d", code)
	}
}
