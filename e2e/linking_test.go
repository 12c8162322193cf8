package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/gatehouse/gatehouse/demo/idp"
	"github.com/gatehouse/gatehouse/internal/fakegithub"
)

// aliceOnGitHub is alice's GitHub account: another login and id than her
// corporate account, and the same address as its verified primary e-mail
// (next to a verified private one, which must not be the one linked).
var aliceOnGitHub = fakegithub.User{ID: 5150, Login: "alice-gh", Name: "Alice", Password: password,
	Emails: []fakegithub.Email{
		{Email: "alice@personal.test", Verified: true},
		{Email: "alice@example.com", Primary: true, Verified: true},
	},
	Orgs: []string{"acme"}}

// bob may sign in (example.com) but is not on the /team list.
var bob = idp.User{Subject: "1003", Email: "bob@example.com", EmailVerified: true, Name: "Bob", PreferredUsername: "bob", Password: password}

// TestLinkedAccountsMatchAllowedUsersByEmail: with
// auth.link_accounts_by_verified_email, a person is one account whichever
// provider she signs in with, named by her verified address; allowed_users
// lists her by that address and the assertion's sub is it. Without the
// option, the address in allowed_users matches no provider's user name, so
// neither sign-in reaches /team.
func TestLinkedAccountsMatchAllowedUsersByEmail(t *testing.T) {
	t.Parallel()
	for _, linked := range []bool{true, false} {
		t.Run("linked="+strconv.FormatBool(linked), func(t *testing.T) {
			t.Parallel()
			s := start(t, options{github: true, users: []idp.User{alice, bob}, env: []string{
				"GATEHOUSE_AUTH_LINK_ACCOUNTS_BY_VERIFIED_EMAIL=" + strconv.FormatBool(linked),
				`GATEHOUSE_POLICIES=[{"path":"^/team(/|$)","allowed_users":["alice@example.com"]}]`,
			}})
			s.GitHub.SetUser(aliceOnGitHub)

			// Through GitHub, in Chromium.
			ctx := browser(t)
			signInWithGitHubAs(t, ctx, s, "/", aliceOnGitHub)
			text(t, ctx, "#x-forwarded-user") // signed in and landed upstream
			checkTeam(t, s, "GitHub", linked, func(path string) (int, echoed) { return fetchInBrowser(t, ctx, path) }, "github", "github:5150")

			// Through the OIDC provider "corp", over plain HTTP.
			c := httpClient(t)
			signInFor(t, c, s, "corp", alice)
			checkTeam(t, s, "corp", linked, func(path string) (int, echoed) { return getJSON(t, c, s.URL+path, nil) }, "corp", "corp:1001")

			// Linking names bob's account by his address; it does not
			// put him on alice's list.
			c = httpClient(t)
			signInFor(t, c, s, "corp", bob)
			if code, _ := getJSON(t, c, s.URL+"/team", nil); code != http.StatusForbidden {
				t.Errorf("bob on /team: %d, want 403", code)
			}
			if code, _ := getJSON(t, c, s.URL+"/", nil); code != http.StatusOK {
				t.Errorf("bob on /: %d, want 200 (only /team has a policy)", code)
			}
		})
	}
}

// checkTeam checks what alice gets, signed in with provider, on /team:
// with linking, the upstream, as the linked account (sub
// email:alice@example.com, provider still the one she used); without, 403,
// while on / (no policy) she is provider:id.
func checkTeam(t *testing.T, s *stack, via string, linked bool, get func(path string) (int, echoed), provider, unlinkedSub string) {
	t.Helper()
	code, e := get("/team")
	if !linked {
		if code != http.StatusForbidden {
			t.Errorf("%s: /team without linking: %d, want 403", via, code)
		}
		code, e := get("/")
		if code != http.StatusOK || len(e.Headers["X-Gatehouse-Assertion"]) != 1 {
			t.Fatalf("%s: / without linking: %d, want 200 with an assertion", via, code)
		}
		if sub := assertionClaims(t, s, e.Headers["X-Gatehouse-Assertion"][0])["sub"]; sub != unlinkedSub {
			t.Errorf("%s: assertion sub without linking = %v, want %s", via, sub, unlinkedSub)
		}
		return
	}
	if code != http.StatusOK {
		t.Fatalf("%s: /team with linking: %d, want 200", via, code)
	}
	if got := e.Headers["X-Forwarded-Email"]; len(got) != 1 || got[0] != "alice@example.com" {
		t.Errorf("%s: X-Forwarded-Email = %q", via, got)
	}
	a := e.Headers["X-Gatehouse-Assertion"]
	if len(a) != 1 {
		t.Fatalf("%s: X-Gatehouse-Assertion = %q, want one", via, a)
	}
	claims := assertionClaims(t, s, a[0])
	if claims["sub"] != "email:alice@example.com" || claims["provider"] != provider || claims["email"] != "alice@example.com" {
		t.Errorf("%s: assertion sub/provider/email = %v/%v/%v, want email:alice@example.com/%s/alice@example.com (not %s)",
			via, claims["sub"], claims["provider"], claims["email"], provider, unlinkedSub)
	}
}

// signInWithGitHubAs signs in through the fake GitHub's form as u.
func signInWithGitHubAs(t *testing.T, ctx context.Context, s *stack, path string, u fakegithub.User) {
	t.Helper()
	err := chromedp.Run(ctx,
		chromedp.Navigate(s.URL+path),
		chromedp.WaitVisible("#provider-github", chromedp.ByID),
		chromedp.Click("#provider-github", chromedp.ByID),
		chromedp.WaitVisible("#login_field", chromedp.ByID),
		chromedp.SendKeys("#login_field", u.Login, chromedp.ByID),
		chromedp.SendKeys("#password", u.Password, chromedp.ByID),
		chromedp.Click("#signin", chromedp.ByID),
	)
	if err != nil {
		t.Fatalf("GitHub sign-in as %s: %v\n%s", u.Login, err, s.logs.String())
	}
}

// fetchInBrowser GETs path from the page the browser is on, with its
// cookies, and returns the status and, on 200, what the upstream received.
// A navigation would not tell a 403 page from a 200 one.
func fetchInBrowser(t *testing.T, ctx context.Context, path string) (int, echoed) {
	t.Helper()
	var res struct {
		Status int    `json:"status"`
		Body   string `json:"body"`
	}
	js := `fetch(` + strconv.Quote(path) + `, {headers: {Accept: "application/json"}, redirect: "manual"})` +
		`.then(async r => ({status: r.status, body: await r.text()}))`
	if err := chromedp.Run(ctx, chromedp.Evaluate(js, &res, func(p *runtime.EvaluateParams) *runtime.EvaluateParams {
		return p.WithAwaitPromise(true)
	})); err != nil {
		t.Fatalf("fetch %s in the browser: %v", path, err)
	}
	var e echoed
	if res.Status == http.StatusOK {
		if err := json.Unmarshal([]byte(res.Body), &e); err != nil {
			t.Fatalf("upstream answer %q: %v", res.Body, err)
		}
	}
	return res.Status, e
}
