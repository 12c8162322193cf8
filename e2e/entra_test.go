package e2e

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse/gatehouse/demo/idp"
	"github.com/gatehouse/gatehouse/internal/fakeentra"
)

const (
	entraClientID     = "5d1c0a3e-8f7b-4c2d-9e6a-0b1c2d3e4f50"
	entraClientSecret = "e2e~entra.secret"
	// contoso owns example.com; fabrikam is another organization.
	tenantContoso  = "6e3a1c2b-4f5d-4e6a-8b7c-9d0e1f2a3b4c"
	tenantFabrikam = "0f9e8d7c-6b5a-4c3d-9e2f-1a0b9c8d7e6f"
	// opsGroup gates /ops. It is the 241st of its members' groups: past
	// Entra's limit for the token and on Graph's third page of 100.
	opsGroup       = "c0ffee00-0000-4000-8000-000000000241"
	entraOpsPolicy = `GATEHOUSE_POLICIES=[{"path":"^/+ops(/|$)","allowed_groups":["` + opsGroup + `"]}]`
)

// entraGroups returns n group object ids, distinct per seed, with
// opsGroup at index 240 when inOps.
func entraGroups(seed, n int, inOps bool) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%08x-1111-4111-8111-%012x", seed, i)
	}
	if inOps {
		ids[240] = opsGroup
	}
	return ids
}

var (
	// dana and omar are in 250 groups each, so their tokens carry the
	// overage claim instead of groups; only dana is in ops.
	eDana = fakeentra.User{TenantID: tenantContoso, OID: "a1a1a1a1-0000-4000-8000-000000000001", UserPrincipalName: "dana@example.com",
		Name: "Dana", Email: "dana@example.com", EmailDomainVerified: true, Groups: entraGroups(1, 250, true), Password: password}
	eOmar = fakeentra.User{TenantID: tenantContoso, OID: "a1a1a1a1-0000-4000-8000-000000000002", UserPrincipalName: "omar@example.com",
		Name: "Omar", Email: "omar@example.com", EmailDomainVerified: true, Groups: entraGroups(2, 250, false), Password: password}
	// erin's mail attribute is at example.com, but Entra does not say the
	// domain is verified (no xms_edov, or false).
	eErin = fakeentra.User{TenantID: tenantContoso, OID: "a1a1a1a1-0000-4000-8000-000000000003", UserPrincipalName: "erin@example.com",
		Name: "Erin", Email: "erin@example.com", Password: password}
	// bert belongs to another organization.
	eBert = fakeentra.User{TenantID: tenantFabrikam, OID: "b2b2b2b2-0000-4000-8000-000000000001", UserPrincipalName: "bert@fabrikam.example",
		Name: "Bert", Email: "bert@fabrikam.example", EmailDomainVerified: true, Password: password}
)

// entraStack starts gatehouse with auth.microsoft against a fake Entra ID
// (authority and Graph on one listener), next to the harness's "corp"
// provider. As for Google, the fake is made in start's idp hook, the one
// place gatehouse's public URL (its redirect URI) is known before launch.
// tenant is auth.microsoft.tenant; env adds settings.
func entraStack(t *testing.T, cfg fakeentra.Config, tenant string, env []string, users ...fakeentra.User) (*stack, *fakeentra.Server) {
	t.Helper()
	var current atomic.Pointer[fakeentra.Server]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		current.Load().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	env = append([]string{
		"GATEHOUSE_AUTH_MICROSOFT_ENABLED=true",
		"GATEHOUSE_AUTH_MICROSOFT_URL=" + srv.URL,
		"GATEHOUSE_AUTH_MICROSOFT_GRAPH_URL=" + srv.URL,
		"GATEHOUSE_AUTH_MICROSOFT_TENANT=" + tenant,
		"GATEHOUSE_AUTH_MICROSOFT_CLIENT_ID=" + entraClientID,
		"GATEHOUSE_AUTH_MICROSOFT_CLIENT_SECRET=" + entraClientSecret,
	}, env...)
	s := start(t, options{env: env, idp: func(_ *idp.Config, public string) {
		cfg.ClientID, cfg.ClientSecret, cfg.URL = entraClientID, entraClientSecret, srv.URL
		cfg.RedirectURIs = []string{public + "/oauth2/callback/microsoft"}
		e := fakeentra.New(cfg)
		e.AddTenant(fakeentra.Tenant{ID: tenantContoso, Domains: []string{"example.com", "contoso.onmicrosoft.com"}})
		e.AddTenant(fakeentra.Tenant{ID: tenantFabrikam, Domains: []string{"fabrikam.example"}})
		for _, u := range users {
			e.SetUser(u)
		}
		current.Store(e)
	}})
	return s, current.Load()
}

// signInWithEntra clicks Microsoft on the sign-in page reached from path,
// fills in the fake's sign-in form and fails at once unless the page the
// browser ends on (every redirect followed) has status want.
func signInWithEntra(t *testing.T, ctx context.Context, s *stack, path string, u fakeentra.User, want int64) {
	t.Helper()
	err := chromedp.Run(ctx,
		chromedp.Navigate(s.URL+path),
		chromedp.WaitVisible("#provider-microsoft", chromedp.ByID),
		chromedp.Click("#provider-microsoft", chromedp.ByID),
		chromedp.WaitVisible("#i0116", chromedp.ByID),
		chromedp.SendKeys("#i0116", u.UserPrincipalName, chromedp.ByID),
		chromedp.SendKeys("#i0118", u.Password, chromedp.ByID),
	)
	if err != nil {
		t.Fatalf("Entra sign-in as %s: %v\n%s", u.UserPrincipalName, err, s.logs.String())
	}
	resp, err := chromedp.RunResponse(ctx, chromedp.Click("#idSIButton9", chromedp.ByID))
	if err != nil {
		t.Fatalf("Entra sign-in as %s: %v\n%s", u.UserPrincipalName, err, s.logs.String())
	}
	if resp.Status != want {
		t.Fatalf("Entra sign-in as %s from %s: %s answered %d, want %d; the page says %q",
			u.UserPrincipalName, path, resp.URL, resp.Status, want, pageText(ctx))
	}
}

// signInWithEntraClient runs the same flow with plain HTTP and returns
// gatehouse's answer at the callback: the redirect to rd, or a refusal.
func signInWithEntraClient(t *testing.T, c *http.Client, s *stack, rd string, u fakeentra.User) *http.Response {
	t.Helper()
	resp := mustGet(t, c, s.URL+"/oauth2/start?provider=microsoft&rd="+url.QueryEscape(rd))
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("start: %d", resp.StatusCode)
	}
	authorize := mustURL(t, resp.Header.Get("Location"))
	body := readBody(t, mustGet(t, c, authorize.String()))
	m := formAction.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no sign-in form:\n%s", body)
	}
	vals := url.Values{"loginfmt": {u.UserPrincipalName}, "passwd": {u.Password}}
	for _, h := range hiddenInput.FindAllStringSubmatch(body, -1) {
		vals.Set(h[1], html.UnescapeString(h[2]))
	}
	resp, err := c.PostForm(authorize.ResolveReference(mustURL(t, html.UnescapeString(m[1]))).String(), vals)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("Entra sign-in form as %s: %d", u.UserPrincipalName, resp.StatusCode)
	}
	return mustGet(t, c, resp.Header.Get("Location"))
}

// TestEntraGroupOverageFromGraphGatesRoute: 250 groups do not fit in the
// ID token, so they are read from Graph (three pages of 100), and the one
// that gates /ops, on the last page, lets dana in and not omar.
func TestEntraGroupOverageFromGraphGatesRoute(t *testing.T) {
	t.Parallel()
	s, e := entraStack(t, fakeentra.Config{OptionalClaims: []string{"email", "xms_edov"}, GroupMembershipClaims: true, GraphPageSize: 100},
		tenantContoso, []string{entraOpsPolicy}, eDana, eOmar)
	e.AddGroup(fakeentra.Group{ID: opsGroup, DisplayName: "Ops"})

	ctx := browser(t)
	signInWithEntra(t, ctx, s, "/ops/dashboard", eDana, http.StatusOK)
	if got := text(t, ctx, "#x-forwarded-user"); got != "dana@example.com" {
		t.Errorf("X-Forwarded-User = %q", got)
	}
	// xms_edov true: the address counts as verified, so it is forwarded
	// and passed auth.allowed_domains (example.com, set by the harness).
	if got := text(t, ctx, "#x-forwarded-email"); got != eDana.Email {
		t.Errorf("X-Forwarded-Email = %q", got)
	}
	groups := strings.Split(text(t, ctx, "#x-forwarded-groups"), ",")
	if len(groups) != 250 || !slices.Contains(groups, opsGroup) {
		t.Errorf("X-Forwarded-Groups has %d groups (ops among them: %v), want all 250", len(groups), slices.Contains(groups, opsGroup))
	}
	if loc := location(t, ctx); !strings.HasSuffix(loc, "/ops/dashboard") {
		t.Errorf("landed on %s", loc)
	}
	claims := assertionClaims(t, s, text(t, ctx, "#x-gatehouse-assertion"))
	if want := "microsoft:" + tenantContoso + ":" + eDana.OID; claims["sub"] != want {
		t.Errorf("assertion sub = %v, want %s (tid and oid)", claims["sub"], want)
	}
	reqs := e.GraphRequests()
	if len(reqs) != 3 || !strings.Contains(reqs[2], "skiptoken") {
		t.Errorf("Graph requests = %q, want three pages of /me/transitiveMemberOf", reqs)
	}

	// omar has as many groups, none of them ops.
	ctx = browser(t)
	signInWithEntra(t, ctx, s, "/ops/dashboard", eOmar, http.StatusForbidden)
	if got := text(t, ctx, "#reason"); !strings.Contains(got, "group") {
		t.Errorf("omar on /ops: reason = %q, want a group denial", got)
	}
	// The denied page's CSP forbids fetch, so the browser navigates to a
	// route no policy covers: the session is there, only /ops is closed.
	if err := chromedp.Run(ctx, chromedp.Navigate(s.URL+"/")); err != nil {
		t.Fatal(err)
	}
	if got := text(t, ctx, "#x-forwarded-user"); got != "omar@example.com" {
		t.Errorf("omar on /: X-Forwarded-User = %q", got)
	}
}

// TestEntraTenantNotAllowedIsRefused: with the organizations authority any
// work account can sign in at Microsoft; only allowed_tenants get in here.
func TestEntraTenantNotAllowedIsRefused(t *testing.T) {
	t.Parallel()
	// fabrikam.example is an allowed e-mail domain too, so that the only
	// thing keeping bert out is his tenant.
	s, _ := entraStack(t, fakeentra.Config{OptionalClaims: []string{"email", "xms_edov"}}, "organizations",
		[]string{"GATEHOUSE_AUTH_MICROSOFT_ALLOWED_TENANTS=" + tenantContoso, "GATEHOUSE_AUTH_ALLOWED_DOMAINS=example.com,fabrikam.example"},
		eDana, eBert)

	ctx := browser(t)
	signInWithEntra(t, ctx, s, "/", eBert, http.StatusForbidden)
	if got := text(t, ctx, "#error"); got != "Organization not allowed" {
		t.Errorf("bert (fabrikam): heading = %q", got)
	}
	if got := text(t, ctx, "main"); !strings.Contains(got, "organization (tenant) whose accounts may not sign in here") {
		t.Errorf("bert (fabrikam): page says %q", got)
	}
	if err := chromedp.Run(ctx, chromedp.Navigate(s.URL+"/"), chromedp.WaitVisible("#provider-microsoft", chromedp.ByID)); err != nil {
		t.Fatalf("after bert's refusal, / did not lead to sign-in: %v", err)
	}

	// The same authority admits a user of the allowed tenant.
	ctx = browser(t)
	signInWithEntra(t, ctx, s, "/", eDana, http.StatusOK)
	if got := text(t, ctx, "#x-forwarded-user"); got != "dana@example.com" {
		t.Errorf("dana (contoso): X-Forwarded-User = %q", got)
	}
}

// TestEntraEmailClaimAloneFailsAllowedDomains: Entra's email claim is
// whatever a tenant administrator typed; without xms_edov it is no proof,
// and neither is a UPN in the domain, so allowed_domains refuses.
func TestEntraEmailClaimAloneFailsAllowedDomains(t *testing.T) {
	t.Parallel()
	// The app registration has the email optional claim but not xms_edov.
	s, _ := entraStack(t, fakeentra.Config{OptionalClaims: []string{"email"}}, tenantContoso, nil, eErin, eDana)

	ctx := browser(t)
	signInWithEntra(t, ctx, s, "/", eErin, http.StatusForbidden)
	if got := text(t, ctx, "#denied"); got != "Access denied" {
		t.Errorf("erin: heading = %q", got)
	}
	if got := text(t, ctx, "#reason"); !strings.Contains(got, "not verified") {
		t.Errorf("erin: reason = %q, want the unverified e-mail refusal", got)
	}
	if err := chromedp.Run(ctx, chromedp.Navigate(s.URL+"/"), chromedp.WaitVisible("#provider-microsoft", chromedp.ByID)); err != nil {
		t.Fatalf("after erin's refusal, / did not lead to sign-in: %v", err)
	}

	// Without the claim configured, even an account whose domain is
	// verified (dana's) cannot prove it.
	c := httpClient(t)
	resp := signInWithEntraClient(t, c, s, "/", eDana)
	if body := readBody(t, resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "not verified") {
		t.Errorf("dana without xms_edov: %d, want 403 unverified", resp.StatusCode)
	}
	if code, _ := getJSON(t, c, s.URL+"/", nil); code != http.StatusUnauthorized {
		t.Errorf("a session exists after the refusal: %d", code)
	}
}

// TestEntraEmailDomainVerifiedDecides: with xms_edov configured, its value
// decides: true passes allowed_domains, false does not.
func TestEntraEmailDomainVerifiedDecides(t *testing.T) {
	t.Parallel()
	s, _ := entraStack(t, fakeentra.Config{OptionalClaims: []string{"email", "xms_edov"}}, tenantContoso, nil, eErin, eDana)

	c := httpClient(t)
	resp := signInWithEntraClient(t, c, s, "/", eErin)
	if body := readBody(t, resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "not verified") {
		t.Errorf("erin (xms_edov false): %d, want 403 unverified", resp.StatusCode)
	}

	c = httpClient(t)
	resp = signInWithEntraClient(t, c, s, "/", eDana)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("dana (xms_edov true): %d, want the redirect back", resp.StatusCode)
	}
	code, got := getJSON(t, c, s.URL+"/", nil)
	if code != http.StatusOK || strings.Join(got.Headers["X-Forwarded-Email"], ",") != eDana.Email {
		t.Errorf("dana (xms_edov true): %d, X-Forwarded-Email %q", code, got.Headers["X-Forwarded-Email"])
	}
}
