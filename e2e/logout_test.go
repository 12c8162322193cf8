package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse/gatehouse/demo/idp"
)

// An administrator signs alice out at the provider: the provider tells one
// replica, and her cookie stops working on every replica within a second,
// while another person's session goes on.
func TestBackchannelLogoutEndsSessionOnEveryReplica(t *testing.T) {
	t.Parallel()
	mc, _ := startMemcached(t)
	s := start(t, options{
		users: []idp.User{alice, bystander},
		env: []string{
			"GATEHOUSE_SESSION_STORE_TYPE=memcache",
			"GATEHOUSE_SESSION_STORE_MEMCACHE_SERVERS=" + mc,
			"GATEHOUSE_AUTH_OIDC_CORP_BACKCHANNEL_LOGOUT=true",
		},
		idp: func(c *idp.Config, public string) {
			// Only the first replica hears from the provider, as behind a
			// load balancer only one would.
			c.Clients[0].BackchannelLogoutURI = public + "/oauth2/backchannel_logout/corp"
		},
	})
	second := s.replica()

	ca, cb := httpClient(t), httpClient(t)
	signInFor(t, ca, s, "corp", alice)
	signInFor(t, cb, s, "corp", bystander)
	aliceTicket, bobTicket := sessionTicket(t, ca, s.URL), sessionTicket(t, cb, s.URL)
	// The same cookie works through both replicas before the logout, so
	// a refusal afterwards is the logout's doing.
	for _, base := range []string{s.URL, second} {
		signedInAs(t, base, aliceTicket, alice.Email)
		signedInAs(t, base, bobTicket, bystander.Email)
	}

	if err := s.IdP.SignOutSubject(alice.Subject); err != nil {
		t.Fatalf("provider's back-channel delivery: %v", err)
	}
	var delivered int
	for _, r := range s.IdP.BackchannelResults() {
		if r.Subject != alice.Subject {
			t.Errorf("logout token for subject %q, want only alice's", r.Subject)
			continue
		}
		if r.Err != nil || r.Status != http.StatusOK || r.URL != s.URL+"/oauth2/backchannel_logout/corp" {
			t.Errorf("delivery to %s: status %d, err %v; want 200 from the first replica", r.URL, r.Status, r.Err)
		}
		delivered++
	}
	if delivered == 0 {
		t.Fatal("the provider sent no logout token: alice's sign-in was not seen as a session of client gatehouse")
	}

	var last []string
	defer func() {
		if t.Failed() {
			t.Logf("last answers to alice's cookie: %s", strings.Join(last, "; "))
		}
	}()
	waitFor(t, time.Second, "alice's cookie to be refused on both replicas", func() bool {
		last = last[:0]
		done := true
		for _, base := range []string{s.URL, second} {
			ok, seen := signedOut(t, base, aliceTicket)
			last = append(last, seen)
			done = done && ok
		}
		return done
	})
	for _, base := range []string{s.URL, second} {
		signedInAs(t, base, bobTicket, bystander.Email)
	}
}

// A logout token is used once: replayed later, it must not end a session
// begun since. A token for another client ends nothing either.
func TestBackchannelLogoutRefusesReplayAndForeignTokens(t *testing.T) {
	t.Parallel()
	s := start(t, options{env: []string{"GATEHOUSE_AUTH_OIDC_CORP_BACKCHANNEL_LOGOUT=true"}})
	endpoint := s.URL + "/oauth2/backchannel_logout/corp"

	first := httpClient(t)
	signInFor(t, first, s, "corp", alice)
	firstTicket := sessionTicket(t, first, s.URL)
	signedInAs(t, s.URL, firstTicket, alice.Email)

	// A sid names one provider session; alice's is another one, so this
	// accepted token ends nothing of hers.
	if a := postLogoutToken(t, s.URL, "corp", logoutToken(t, s.IdP, "gatehouse", alice.Subject, "another-idp-session")); a.status != http.StatusOK {
		t.Fatalf("token naming another provider session: %d %s, want 200", a.status, a.body)
	}
	signedInAs(t, s.URL, firstTicket, alice.Email)

	// sub alone: every session of alice from corp ends.
	tok := logoutToken(t, s.IdP, "gatehouse", alice.Subject, "")
	a := postLogoutToken(t, s.URL, "corp", tok)
	if a.status != http.StatusOK || a.cacheControl != "no-store" {
		t.Fatalf("POST %s: %d, Cache-Control %q, %s; want 200 no-store", endpoint, a.status, a.cacheControl, a.body)
	}
	if ok, seen := signedOut(t, s.URL, firstTicket); !ok {
		t.Fatalf("alice still signed in after the logout token: %s", seen)
	}

	// Alice signs in again; someone who captured the token replays it.
	again := httpClient(t)
	signInFor(t, again, s, "corp", alice)
	againTicket := sessionTicket(t, again, s.URL)
	a = postLogoutToken(t, s.URL, "corp", tok)
	if a.status != http.StatusBadRequest || a.errorCode != "invalid_request" || a.cacheControl != "no-store" {
		t.Fatalf("replayed token: %d, Cache-Control %q, %s; want 400 invalid_request no-store", a.status, a.cacheControl, a.body)
	}
	signedInAs(t, s.URL, againTicket, alice.Email)

	// Signed by the same provider but for another client (aud).
	a = postLogoutToken(t, s.URL, "corp", logoutToken(t, s.IdP, "another-client", alice.Subject, ""))
	if a.status != http.StatusBadRequest || a.errorCode != "invalid_request" || a.cacheControl != "no-store" {
		t.Fatalf("token for another client: %d, Cache-Control %q, %s; want 400 invalid_request no-store", a.status, a.cacheControl, a.body)
	}
	signedInAs(t, s.URL, againTicket, alice.Email)
}

// Without backchannel_logout, a provider cannot end sessions, not even
// with a token that would otherwise be accepted.
func TestBackchannelLogoutOffForProvider(t *testing.T) {
	t.Parallel()
	s := start(t, options{})
	c := httpClient(t)
	signInFor(t, c, s, "corp", alice)
	ticket := sessionTicket(t, c, s.URL)
	a := postLogoutToken(t, s.URL, "corp", logoutToken(t, s.IdP, "gatehouse", alice.Subject, ""))
	// The endpoint does not exist for it (404 today); any refusal will
	// do, as long as the provider is not told it worked.
	if a.status < 400 || a.status > 499 {
		t.Fatalf("back-channel logout for a provider without backchannel_logout: %d, want a 4xx refusal", a.status)
	}
	signedInAs(t, s.URL, ticket, alice.Email)
}

// rememberingIdP makes the provider keep a browser session (so a new
// sign-in skips its form) and accept Gatehouse's signed-out page as the
// place to return to after logging out there.
func rememberingIdP(c *idp.Config, public string) {
	c.RememberSessions = true
	c.Clients[0].PostLogoutRedirectURIs = []string{public + "/oauth2/signed_out"}
}

// With end_session, signing out of Gatehouse signs the person out at the
// provider too: the next sign-in asks for credentials again, so someone
// else at the same computer cannot walk back in.
func TestSignOutEndsProviderSession(t *testing.T) {
	t.Parallel()
	s := start(t, options{env: []string{"GATEHOUSE_AUTH_OIDC_CORP_END_SESSION=true"}, idp: rememberingIdP})
	ctx := browser(t)
	signInWithBrowser(t, ctx, s, "/private", alice)
	if got := text(t, ctx, logoutUpstream); got != "alice" {
		t.Fatalf("X-Forwarded-User = %q, want alice", got)
	}
	if n := s.IdP.Sessions(alice.Subject); n != 1 {
		t.Fatalf("provider sessions of alice after sign-in: %d, want 1", n)
	}

	if err := chromedp.Run(ctx, chromedp.Navigate(s.URL+"/oauth2/sign_out")); err != nil {
		t.Fatal(err)
	}
	if got := text(t, ctx, "#signed-out"); got != "Signed out" {
		t.Fatalf("after sign-out the page says %q", got)
	}
	// The browser went through the provider and came back to the
	// registered post-logout page.
	if loc := location(t, ctx); !strings.HasPrefix(loc, s.URL+"/oauth2/signed_out") {
		t.Fatalf("after sign-out the browser is on %s, want %s/oauth2/signed_out", loc, s.URL)
	}
	if n := s.IdP.Sessions(alice.Subject); n != 0 {
		t.Fatalf("provider sessions of alice after sign-out: %d, want 0", n)
	}
	if got := clickProvider(t, ctx, s, "/private"); got != logoutIdPForm {
		t.Fatalf("signing in again went straight through: the provider still remembered alice")
	}
	// The form is the real thing: signing in through it works.
	if err := chromedp.Run(ctx,
		chromedp.SendKeys("#username", alice.Email, chromedp.ByID),
		chromedp.SendKeys("#password", alice.Password, chromedp.ByID),
		chromedp.Click("#login", chromedp.ByID),
	); err != nil {
		t.Fatal(err)
	}
	if got := text(t, ctx, logoutUpstream); got != "alice" {
		t.Fatalf("after signing in again X-Forwarded-User = %q", got)
	}
}

// The contrast: without end_session, sign-out ends only Gatehouse's
// session; the provider still remembers the person, and the next sign-in
// goes through without asking for credentials.
func TestSignOutWithoutEndSessionKeepsProviderSession(t *testing.T) {
	t.Parallel()
	s := start(t, options{idp: rememberingIdP})
	ctx := browser(t)
	signInWithBrowser(t, ctx, s, "/private", alice)
	if got := text(t, ctx, logoutUpstream); got != "alice" {
		t.Fatalf("X-Forwarded-User = %q, want alice", got)
	}
	if err := chromedp.Run(ctx, chromedp.Navigate(s.URL+"/oauth2/sign_out")); err != nil {
		t.Fatal(err)
	}
	if got := text(t, ctx, "#signed-out"); got != "Signed out" {
		t.Fatalf("after sign-out the page says %q", got)
	}
	if loc := location(t, ctx); !strings.HasPrefix(loc, s.URL+"/oauth2/") {
		t.Fatalf("after sign-out the browser is on %s, want Gatehouse's page", loc)
	}
	if n := s.IdP.Sessions(alice.Subject); n != 1 {
		t.Fatalf("provider sessions of alice after sign-out: %d, want 1 (kept)", n)
	}
	// Gatehouse's own session did end: the sign-in page comes first.
	if got := clickProvider(t, ctx, s, "/private"); got != logoutUpstream {
		t.Fatal("the provider asked for credentials although it remembered alice")
	}
	if got := text(t, ctx, logoutUpstream); got != "alice" {
		t.Fatalf("X-Forwarded-User = %q, want alice", got)
	}
}
