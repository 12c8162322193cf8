package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse/gatehouse/demo/idp"
)

// The demo provider stands in for GitLab here: GitLab speaks OIDC and
// lists full group paths in userinfo's "groups" claim.
var (
	dora = idp.User{Subject: "2001", Email: "dora@acme.test", EmailVerified: true, Name: "Dora", PreferredUsername: "dora",
		Groups: []string{"acme", "acme/infra/db"}, Password: password}
	oscar = idp.User{Subject: "2002", Email: "oscar@acme.test", EmailVerified: true, Name: "Oscar", PreferredUsername: "oscar",
		Groups: []string{"acme/infra-old"}, Password: password}
)

func gitlabStack(t *testing.T, env ...string) *stack {
	return start(t, options{gitlab: true, users: []idp.User{dora, oscar},
		env: append([]string{"GATEHOUSE_AUTH_GITLAB_ALLOWED_GROUPS=acme/infra"}, env...)})
}

func TestBrowserGitLabSubgroupPassesLookalikeDoesNot(t *testing.T) {
	t.Parallel()
	s := gitlabStack(t)
	ctx := browser(t)
	signInWithBrowserVia(t, ctx, s, "/", "gitlab", dora)
	if got := text(t, ctx, "#x-forwarded-groups"); got != "acme,acme/infra/db" {
		t.Errorf("X-Forwarded-Groups = %q, want the GitLab group paths", got)
	}

	ctx2 := browser(t)
	signInWithBrowserVia(t, ctx2, s, "/", "gitlab", oscar)
	if got := text(t, ctx2, "#reason"); !strings.Contains(got, "group") {
		t.Errorf("acme/infra-old: reason = %q, want a group denial", got)
	}
}

func TestBrowserAccessEndsAfterRemovalFromGroup(t *testing.T) {
	t.Parallel()
	s := gitlabStack(t, "GATEHOUSE_SESSION_REVALIDATE_INTERVAL=1s")
	ctx := browser(t)
	signInWithBrowserVia(t, ctx, s, "/", "gitlab", dora)
	text(t, ctx, "#x-forwarded-user")

	moved := dora
	moved.Groups = []string{"acme/marketing"}
	s.IdP.SetUser(moved)
	waitFor(t, 20*time.Second, "access to end after the group change", func() bool {
		var heading string
		err := chromedp.Run(ctx, chromedp.Navigate(s.URL+"/"), chromedp.Evaluate(`(document.querySelector("#denied")||{}).textContent||""`, &heading))
		return err == nil && heading == "Access denied"
	})
	if got := text(t, ctx, "#reason"); !strings.Contains(got, "group") {
		t.Errorf("reason = %q, want a group denial", got)
	}

	// API clients get 403 JSON for the same session.
	c := httpClient(t)
	resp := signInWithClient(t, c, s, "/", moved)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("signing in after removal: %d, want 403", resp.StatusCode)
	}
}

func TestRevokedProviderTokenEndsSession(t *testing.T) {
	t.Parallel()
	s := gitlabStack(t, "GATEHOUSE_SESSION_REVALIDATE_INTERVAL=1s")
	c := httpClient(t)
	signInFor(t, c, s, "gitlab", dora)
	if code, _ := getJSON(t, c, s.URL+"/", nil); code != http.StatusOK {
		t.Fatalf("before revocation: %d", code)
	}
	s.IdP.RevokeTokens(dora.Subject)
	s.IdP.RemoveUser(dora.Subject) // refresh fails too
	waitFor(t, 20*time.Second, "the revoked session to be refused", func() bool {
		code, _ := getJSON(t, c, s.URL+"/", nil)
		return code == http.StatusForbidden
	})
	// And it stays refused: the session was ended, not just paused.
	if code, _ := getJSON(t, c, s.URL+"/", nil); code != http.StatusUnauthorized {
		t.Fatalf("after revocation the session still exists: %d, want 401", code)
	}
}
