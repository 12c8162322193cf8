package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

func TestBrowserSignInAllowed(t *testing.T) {
	t.Parallel()
	s := start(t, options{})
	ctx := browser(t)
	signInWithBrowser(t, ctx, s, "/some/page?x=1", alice)

	if got := text(t, ctx, "#x-forwarded-user"); got != "alice" {
		t.Errorf("X-Forwarded-User = %q, want alice", got)
	}
	if got := text(t, ctx, "#x-forwarded-email"); got != "alice@example.com" {
		t.Errorf("X-Forwarded-Email = %q", got)
	}
	if got := text(t, ctx, "#x-forwarded-groups"); got != "ops,staff" {
		t.Errorf("X-Forwarded-Groups = %q", got)
	}
	if got := text(t, ctx, "#x-gatehouse-assertion"); strings.Count(got, ".") != 2 {
		t.Errorf("X-Gatehouse-Assertion = %q, want a JWT", got)
	}
	if loc := location(t, ctx); !strings.HasSuffix(loc, "/some/page?x=1") {
		t.Errorf("landed on %s, want the page asked for", loc)
	}
	var body string
	if err := chromedp.Run(ctx, chromedp.Navigate(s.URL+"/oauth2/userinfo"), chromedp.Text("body", &body)); err != nil {
		t.Fatal(err)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(body), &info); err != nil || info["email"] != "alice@example.com" {
		t.Fatalf("userinfo = %s (%v)", body, err)
	}
}

func TestBrowserDeniedUser(t *testing.T) {
	t.Parallel()
	s := start(t, options{})
	ctx := browser(t)
	signInWithBrowser(t, ctx, s, "/", mallory)
	if got := text(t, ctx, "#denied"); got != "Access denied" {
		t.Fatalf("heading = %q", got)
	}
	if got := text(t, ctx, "#reason"); !strings.Contains(got, "e-mail address") {
		t.Fatalf("reason = %q, want it to name the e-mail check", got)
	}
	if got := text(t, ctx, "#reason"); strings.Contains(got, "example.com") {
		t.Fatalf("reason %q reveals the configured domain", got)
	}
	// No session was made: the protected page sends us to sign in again.
	if err := chromedp.Run(ctx, chromedp.Navigate(s.URL+"/"), chromedp.WaitVisible("#provider-corp", chromedp.ByID)); err != nil {
		t.Fatalf("after denial, / did not lead to sign-in: %v", err)
	}
}

func TestBrowserSignOutEndsSessionServerSide(t *testing.T) {
	t.Parallel()
	s := start(t, options{})
	ctx := browser(t)
	signInWithBrowser(t, ctx, s, "/", alice)
	text(t, ctx, "#x-forwarded-user")

	var cookies []*network.Cookie
	if err := chromedp.Run(ctx, chromedp.ActionFunc(func(ctx2 context.Context) error {
		var err error
		cookies, err = network.GetCookies().Do(ctx2)
		return err
	})); err != nil {
		t.Fatal(err)
	}
	var ticket string
	for _, c := range cookies {
		if c.Name == "_gatehouse" {
			ticket = c.Value
			if !c.HTTPOnly {
				t.Error("session cookie is not HttpOnly")
			}
		}
	}
	if ticket == "" || strings.Contains(ticket, "alice") {
		t.Fatalf("session cookie = %q", ticket)
	}

	if err := chromedp.Run(ctx, chromedp.Navigate(s.URL+"/oauth2/sign_out"), chromedp.WaitVisible("#signed-out", chromedp.ByID)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Run(ctx, chromedp.Navigate(s.URL+"/"), chromedp.WaitVisible("#provider-corp", chromedp.ByID)); err != nil {
		t.Fatalf("after sign-out, / did not lead to sign-in: %v", err)
	}
	// Replaying the old cookie does not work: the session ended on the server.
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/", nil)
	req.Header.Set("Accept", "application/json")
	req.AddCookie(&http.Cookie{Name: "_gatehouse", Value: ticket})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("replayed cookie after sign-out: %d, want 401", resp.StatusCode)
	}
}

func TestBrowserSessionExpires(t *testing.T) {
	t.Parallel()
	s := start(t, options{env: []string{"GATEHOUSE_SESSION_LIFETIME=3s"}})
	ctx := browser(t)
	signInWithBrowser(t, ctx, s, "/", alice)
	text(t, ctx, "#x-forwarded-user")
	waitFor(t, 20*time.Second, "the session to expire", func() bool {
		var loc string
		if err := chromedp.Run(ctx, chromedp.Navigate(s.URL+"/"), chromedp.Location(&loc)); err != nil {
			return false
		}
		return strings.Contains(loc, "/oauth2/sign_in")
	})
}

func TestTwoTabsSignInAtOnce(t *testing.T) {
	t.Parallel()
	s := start(t, options{})
	first := browser(t)
	second, cancel := chromedp.NewContext(first) // a second tab of the same browser
	defer cancel()
	// Both tabs start a sign-in and reach the provider's form before either finishes.
	for i, tab := range []context.Context{first, second} {
		path := []string{"/tab-one", "/tab-two"}[i]
		if err := chromedp.Run(tab,
			chromedp.Navigate(s.URL+path),
			chromedp.WaitVisible("#provider-corp", chromedp.ByID),
			chromedp.Click("#provider-corp", chromedp.ByID),
			chromedp.WaitVisible("#username", chromedp.ByID),
		); err != nil {
			t.Fatalf("tab %d: %v", i+1, err)
		}
	}
	for i, tab := range []context.Context{first, second} {
		if err := chromedp.Run(tab,
			chromedp.SendKeys("#username", alice.Email, chromedp.ByID),
			chromedp.SendKeys("#password", alice.Password, chromedp.ByID),
			chromedp.Click("#login", chromedp.ByID),
		); err != nil {
			t.Fatalf("tab %d: %v", i+1, err)
		}
		if got := text(t, tab, "#x-forwarded-user"); got != "alice" {
			t.Fatalf("tab %d: X-Forwarded-User = %q", i+1, got)
		}
		want := []string{"/tab-one", "/tab-two"}[i]
		if loc := location(t, tab); !strings.HasSuffix(loc, want) {
			t.Fatalf("tab %d landed on %s, want %s", i+1, loc, want)
		}
	}
}
