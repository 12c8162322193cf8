package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"

	"github.com/gatehouse/gatehouse/demo/idp"
)

// bystander is a second allowed user (mallory is refused at sign-in by
// allowed_domains, so she never has a session that could survive).
var bystander = idp.User{Subject: "1003", Email: "bob@example.com", EmailVerified: true, Name: "Bob",
	PreferredUsername: "bob", Groups: []string{"staff"}, Password: password}

// sessionTicket returns the session cookie c holds for base.
func sessionTicket(t *testing.T, c *http.Client, base string) string {
	t.Helper()
	for _, ck := range c.Jar.Cookies(mustURL(t, base)) {
		if ck.Name == "_gatehouse" {
			return ck.Value
		}
	}
	t.Fatalf("no session cookie for %s", base)
	return ""
}

// ticketAnswer is what Gatehouse answered a request carrying a ticket.
type ticketAnswer struct {
	status   int
	email    string // X-Forwarded-Email the upstream received (200 only)
	location string // redirect target (3xx only)
}

func (a ticketAnswer) String() string {
	return fmt.Sprintf("%d email=%q location=%q", a.status, a.email, a.location)
}

// askWithTicket sends GET target carrying ticket as the only cookie, as an
// API client (JSON) or a browser (HTML) would. No cookie jar takes part:
// a jar that dropped a cleared cookie would make a live session look
// ended, and the point is what the server does with the ticket itself.
func askWithTicket(t *testing.T, target, ticket string, asJSON bool) ticketAnswer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if asJSON {
		req.Header.Set("Accept", "application/json")
	} else {
		req.Header.Set("Accept", "text/html")
	}
	req.AddCookie(&http.Cookie{Name: "_gatehouse", Value: ticket})
	c := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	a := ticketAnswer{status: resp.StatusCode, location: resp.Header.Get("Location")}
	if resp.StatusCode == http.StatusOK && asJSON {
		var e echoed
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			t.Fatalf("upstream answer %q: %v", body, err)
		}
		if v := e.Headers["X-Forwarded-Email"]; len(v) > 0 {
			a.email = v[0]
		}
	}
	return a
}

// signedInAs fails unless base lets ticket through to the upstream as email.
func signedInAs(t *testing.T, base, ticket, email string) {
	t.Helper()
	if a := askWithTicket(t, base+"/app", ticket, true); a.status != http.StatusOK || a.email != email {
		t.Fatalf("%s with %s's ticket: %s, want 200 for %s", base, email, a, email)
	}
}

// signedOut reports whether base answers ticket as a person who is not
// signed in: 401 for an API request, a redirect to sign-in for a browser.
func signedOut(t *testing.T, base, ticket string) (bool, string) {
	t.Helper()
	api := askWithTicket(t, base+"/app", ticket, true)
	page := askWithTicket(t, base+"/app", ticket, false)
	ok := api.status == http.StatusUnauthorized &&
		page.status == http.StatusFound && strings.Contains(page.location, "/oauth2/sign_in")
	return ok, fmt.Sprintf("%s: api %s, page %s", base, api, page)
}

// backchannelAnswer is Gatehouse's answer to a back-channel logout POST.
type backchannelAnswer struct {
	status       int
	cacheControl string
	errorCode    string // the JSON body's "error", if any
	body         string
}

// postLogoutToken POSTs logout_token=token to base's back-channel logout
// endpoint for provider, as an OpenID provider does.
func postLogoutToken(t *testing.T, base, provider, token string) backchannelAnswer {
	t.Helper()
	resp, err := http.PostForm(base+"/oauth2/backchannel_logout/"+provider, url.Values{"logout_token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := backchannelAnswer{status: resp.StatusCode, cacheControl: resp.Header.Get("Cache-Control"), body: string(b)}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil {
		a.errorCode = e.Error
	}
	return a
}

// logoutToken mints a logout token at the provider or fails the test.
func logoutToken(t *testing.T, p *idp.Provider, clientID, subject, sid string) string {
	t.Helper()
	tok, err := p.LogoutToken(clientID, subject, sid)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// logoutIdPForm is the demo IdP's login form, logoutUpstream the echo
// upstream's page: after the provider button, the browser shows one.
const (
	logoutIdPForm  = "#username"
	logoutUpstream = "#x-forwarded-user"
)

// clickProvider goes from a protected page through Gatehouse's sign-in
// page to the provider and returns what the browser shows next: the
// provider's login form (credentials asked) or the upstream page (the
// provider remembered the person and answered at once).
func clickProvider(t *testing.T, ctx context.Context, s *stack, path string) string {
	t.Helper()
	err := chromedp.Run(ctx,
		chromedp.Navigate(s.URL+path),
		chromedp.WaitVisible("#provider-corp", chromedp.ByID),
		chromedp.Click("#provider-corp", chromedp.ByID),
		chromedp.WaitVisible(logoutIdPForm+", "+logoutUpstream, chromedp.ByQuery),
	)
	if err != nil {
		t.Fatalf("from %s through the sign-in page: %v", path, err)
	}
	var form []*cdp.Node
	if err := chromedp.Run(ctx, chromedp.Nodes(logoutIdPForm, &form, chromedp.ByQuery, chromedp.AtLeast(0))); err != nil {
		t.Fatal(err)
	}
	if len(form) > 0 {
		return logoutIdPForm
	}
	return logoutUpstream
}
