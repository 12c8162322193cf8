package e2e

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse/gatehouse/internal/fakegithub"
)

var octo = fakegithub.User{ID: 77, Login: "octo", Name: "Octo", Password: password,
	Emails: []fakegithub.Email{{Email: "octo@example.com", Primary: true, Verified: true}},
	Orgs:   []string{"acme"}, Teams: []fakegithub.Team{{Org: "acme", Slug: "sre", Name: "SRE"}}}

func signInWithGitHub(t *testing.T, ctx context.Context, s *stack, path string) {
	t.Helper()
	err := chromedp.Run(ctx,
		chromedp.Navigate(s.URL+path),
		chromedp.WaitVisible("#provider-github", chromedp.ByID),
		chromedp.Click("#provider-github", chromedp.ByID),
		chromedp.WaitVisible("#login_field", chromedp.ByID),
		chromedp.SendKeys("#login_field", "octo", chromedp.ByID),
		chromedp.SendKeys("#password", password, chromedp.ByID),
		chromedp.Click("#signin", chromedp.ByID),
	)
	if err != nil {
		t.Fatalf("GitHub sign-in: %v\n%s", err, s.logs.String())
	}
}

func TestBrowserGitHubEnterpriseSignIn(t *testing.T) {
	t.Parallel()
	s := start(t, options{github: true})
	s.GitHub.SetUser(octo)
	ctx := browser(t)
	signInWithGitHub(t, ctx, s, "/repo")
	if got := text(t, ctx, "#x-forwarded-user"); got != "octo" {
		t.Errorf("X-Forwarded-User = %q", got)
	}
	if got := text(t, ctx, "#x-forwarded-email"); got != "octo@example.com" {
		t.Errorf("X-Forwarded-Email = %q", got)
	}
	if got := text(t, ctx, "#x-forwarded-groups"); got != "acme,acme/sre" {
		t.Errorf("X-Forwarded-Groups = %q, want org and org/team", got)
	}
	// Both providers are offered on the sign-in page.
	var buttons int
	if err := chromedp.Run(ctx, chromedp.Navigate(s.URL+"/oauth2/sign_in"),
		chromedp.Evaluate(`document.querySelectorAll("a[id^=provider-]").length`, &buttons)); err != nil {
		t.Fatal(err)
	}
	if buttons != 2 {
		t.Errorf("sign-in page shows %d provider buttons, want 2", buttons)
	}
}

func TestBrowserGitHubRemovedFromOrgLosesAccess(t *testing.T) {
	t.Parallel()
	s := start(t, options{github: true, env: []string{"GATEHOUSE_SESSION_REVALIDATE_INTERVAL=1s"}})
	s.GitHub.SetUser(octo)
	ctx := browser(t)
	signInWithGitHub(t, ctx, s, "/")
	text(t, ctx, "#x-forwarded-user")
	gone := octo
	gone.Orgs, gone.Teams = nil, nil
	s.GitHub.SetUser(gone)
	waitFor(t, 20*time.Second, "access to end after leaving the org", func() bool {
		var reason string
		err := chromedp.Run(ctx, chromedp.Navigate(s.URL+"/"), chromedp.Evaluate(`(document.querySelector("#reason")||{}).textContent||""`, &reason))
		return err == nil && strings.Contains(reason, "organization")
	})
}

func TestCallbackForAnotherProviderIsRefused(t *testing.T) {
	t.Parallel()
	s := start(t, options{github: true})
	c := httpClient(t)
	resp := mustGet(t, c, s.URL+"/oauth2/start?provider=corp&rd=/")
	resp.Body.Close()
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	state := u.Query().Get("state")
	// The state was issued for corp; an answer at GitHub's callback is a mix-up.
	resp = mustGet(t, c, s.URL+"/oauth2/callback/github?code=stolen&state="+url.QueryEscape(state))
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusBadRequest || strings.Contains(body, "stolen") {
		t.Fatalf("cross-provider callback: %d", resp.StatusCode)
	}
	if code, _ := getJSON(t, c, s.URL+"/", nil); code != http.StatusUnauthorized {
		t.Fatalf("a session exists after the refused callback: %d", code)
	}
}
