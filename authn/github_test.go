package authn

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/internal/fakegithub"
	"github.com/gatehouse/gatehouse/session"
)

const ghCallback = "https://dash.example.com/oauth2/callback/github"

func bigUser() fakegithub.User {
	u := fakegithub.User{ID: 42, Login: "Octo", Name: "Octo Cat", Email: "public@unverified.example", Password: "pw",
		Emails: []fakegithub.Email{
			{Email: "old@example.com", Primary: false, Verified: true},
			{Email: "octo@example.com", Primary: true, Verified: true},
			{Email: "typo@example.com", Primary: false, Verified: false},
		}}
	for i := 0; i < 150; i++ {
		u.Orgs = append(u.Orgs, fmt.Sprintf("org%03d", i))
	}
	for i := 0; i < 300; i++ {
		u.Teams = append(u.Teams, fakegithub.Team{Org: "acme", Slug: fmt.Sprintf("team-%03d", i), Name: "Team"})
	}
	return u
}

func newGitHubFixture(t *testing.T, enterprise bool, cfg GitHubConfig) (*GitHub, *fakegithub.Server, string) {
	t.Helper()
	fake := fakegithub.New(fakegithub.Config{Enterprise: enterprise, ClientID: "cid", ClientSecret: "csecret", RedirectURIs: []string{ghCallback}})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	cfg.ClientID, cfg.ClientSecret, cfg.URL = "cid", "csecret", srv.URL
	cfg.APIURL = srv.URL
	if enterprise {
		cfg.APIURL = srv.URL + "/api/v3"
	}
	cfg.Scopes = []string{"read:user", "user:email", "read:org"}
	gh, err := NewGitHub(cfg, filters.Lists{}, ghCallback, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return gh, fake, srv.URL
}

var ghHidden = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// githubSignIn runs the web flow against the fake and finishes it.
func githubSignIn(t *testing.T, gh *GitHub, base, login, password string) (*loginState, *http.Request) {
	t.Helper()
	st := newLoginState("github", "/", time.Now())
	authURL, err := gh.AuthCodeURL(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(authURL)
	if u.Query().Get("code_challenge_method") != "S256" || u.Query().Get("state") != st.State {
		t.Fatalf("authorize URL lacks PKCE or state: %s", authURL)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	page := string(raw)
	form := url.Values{"login": {login}, "password": {password}}
	for _, m := range ghHidden.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	resp, err = client.PostForm(base+"/login/oauth/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	return st, httptest.NewRequest(http.MethodGet, resp.Header.Get("Location"), nil)
}

func TestGitHubSignInReadsVerifiedPrimaryEmailAndAllPages(t *testing.T) {
	for _, enterprise := range []bool{false, true} {
		t.Run(fmt.Sprintf("enterprise=%v", enterprise), func(t *testing.T) {
			gh, fake, base := newGitHubFixture(t, enterprise, GitHubConfig{})
			fake.SetUser(bigUser())
			st, cb := githubSignIn(t, gh, base, "octo", "pw")
			id, tok, err := gh.Finish(context.Background(), cb, st)
			if err != nil {
				t.Fatal(err)
			}
			if id.Email != "octo@example.com" || !id.EmailVerified {
				t.Errorf("email = %q verified=%v, want the primary verified address", id.Email, id.EmailVerified)
			}
			if id.User != "Octo" || id.Subject != "42" || id.Provider != "github" {
				t.Errorf("identity = %+v", id)
			}
			if len(id.Organizations) != 150 || len(id.Teams) != 300 {
				t.Fatalf("got %d orgs and %d teams, want 150 and 300", len(id.Organizations), len(id.Teams))
			}
			if id.Teams[299] != "acme/team-299" || len(id.Groups) != 450 {
				t.Errorf("teams/groups wrong: last team %q, %d groups", id.Teams[299], len(id.Groups))
			}
			if tok == nil || !strings.HasPrefix(tok.AccessToken, "gho_") {
				t.Errorf("token = %+v", tok)
			}
			var orgPages, teamPages int
			for _, r := range fake.Requests() {
				if strings.Contains(r, "/user/orgs") {
					orgPages++
					if !strings.Contains(r, "per_page=100") {
						t.Errorf("request without per_page=100: %s", r)
					}
				}
				if strings.Contains(r, "/user/teams") {
					teamPages++
				}
				if enterprise && !strings.Contains(r, " /api/v3/") {
					t.Errorf("GHE request outside /api/v3: %s", r)
				}
			}
			if orgPages != 2 || teamPages != 3 {
				t.Errorf("fetched %d org pages and %d team pages, want 2 and 3", orgPages, teamPages)
			}
		})
	}
}

func TestGitHubUnverifiedPrimaryNeverUsed(t *testing.T) {
	gh, fake, base := newGitHubFixture(t, false, GitHubConfig{})
	u := bigUser()
	u.Emails = []fakegithub.Email{{Email: "boss@example.com", Primary: true, Verified: false}, {Email: "side@example.com", Verified: true}}
	fake.SetUser(u)
	st, cb := githubSignIn(t, gh, base, "octo", "pw")
	id, _, err := gh.Finish(context.Background(), cb, st)
	if err != nil {
		t.Fatal(err)
	}
	if id.Email != "" || id.EmailVerified {
		t.Fatalf("email = %q verified=%v; an unverified primary must not be used", id.Email, id.EmailVerified)
	}
	rule := filters.NewRule(filters.Lists{Domains: []string{"example.com"}})
	if rule.Check(id).Allowed {
		t.Fatal("a user without a verified e-mail passed a domain filter")
	}
}

func TestGitHubFilters(t *testing.T) {
	gh, fake, base := newGitHubFixture(t, false, GitHubConfig{})
	fake.SetUser(bigUser())
	st, cb := githubSignIn(t, gh, base, "octo", "pw")
	id, _, err := gh.Finish(context.Background(), cb, st)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		lists filters.Lists
		want  filters.Kind
	}{
		{"org member", filters.Lists{Organizations: []string{"ORG149"}}, ""},
		{"not an org member", filters.Lists{Organizations: []string{"other"}}, filters.KindOrganization},
		{"team case-insensitive", filters.Lists{Teams: []string{"ACME/Team-250"}}, ""},
		{"team of another org", filters.Lists{Teams: []string{"other/team-250"}}, filters.KindTeam},
		{"user", filters.Lists{Users: []string{"octo"}}, ""},
		{"other user", filters.Lists{Users: []string{"hubot"}}, filters.KindUser},
		{"org and team both needed", filters.Lists{Organizations: []string{"org001"}, Teams: []string{"acme/nope"}}, filters.KindTeam},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := filters.NewRule(tt.lists).Check(id)
			if d.Kind != tt.want || d.Allowed != (tt.want == "") {
				t.Fatalf("decision = %+v, want kind %q", d, tt.want)
			}
		})
	}
}

func TestGitHubRevalidation(t *testing.T) {
	gh, fake, base := newGitHubFixture(t, false, GitHubConfig{})
	u := bigUser()
	fake.SetUser(u)
	st, cb := githubSignIn(t, gh, base, "octo", "pw")
	_, tok, err := gh.Finish(context.Background(), cb, st)
	if err != nil {
		t.Fatal(err)
	}
	// Removed from every org: the next check sees it.
	u.Orgs, u.Teams = nil, nil
	fake.SetUser(u)
	id, _, err := gh.Revalidate(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if filters.NewRule(filters.Lists{Organizations: []string{"org001"}}).Check(id).Allowed {
		t.Fatal("user removed from the org still passes")
	}
	// A transient fault is not a revocation.
	fake.FailAPI(1)
	if _, _, err := gh.Revalidate(context.Background(), tok); err == nil || errors.Is(err, ErrRevoked) {
		t.Fatalf("5xx: err = %v, want a transient error", err)
	}
	// A revoked token is.
	fake.RevokeTokens("octo")
	if _, _, err := gh.Revalidate(context.Background(), tok); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked: err = %v, want ErrRevoked", err)
	}
	if _, _, err := gh.Revalidate(context.Background(), &session.ProviderToken{}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("no token: err = %v", err)
	}
}

func TestGitHubSlowAPIRespectsContext(t *testing.T) {
	gh, fake, base := newGitHubFixture(t, false, GitHubConfig{})
	fake.SetUser(bigUser())
	st, cb := githubSignIn(t, gh, base, "octo", "pw")
	_, tok, err := gh.Finish(context.Background(), cb, st)
	if err != nil {
		t.Fatal(err)
	}
	fake.SlowAPI(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err = gh.Revalidate(ctx, tok)
	if err == nil || errors.Is(err, ErrRevoked) || time.Since(start) > 3*time.Second {
		t.Fatalf("slow API: err = %v after %s, want a prompt transient error", err, time.Since(start))
	}
}

func TestGitHubWrongVerifierFails(t *testing.T) {
	gh, fake, base := newGitHubFixture(t, false, GitHubConfig{})
	fake.SetUser(bigUser())
	st, cb := githubSignIn(t, gh, base, "octo", "pw")
	st.Verifier = randomToken(48) // not the one the challenge was made from
	_, _, err := gh.Finish(context.Background(), cb, st)
	var le *LoginError
	if !errors.As(err, &le) || le.Status != http.StatusBadRequest {
		t.Fatalf("err = %v, want a refused sign-in", err)
	}
}

func TestNextLink(t *testing.T) {
	tests := map[string]string{
		`<https://api.github.com/user/orgs?page=2&per_page=100>; rel="next", <https://api.github.com/user/orgs?page=3&per_page=100>; rel="last"`: "https://api.github.com/user/orgs?page=2&per_page=100",
		`<https://api.github.com/user/orgs?page=1>; rel="first", <https://api.github.com/user/orgs?page=2>; rel="prev"`:                          "",
		``:              "",
		`garbage`:       "",
		`<x>; rel=next`: "x",
	}
	for in, want := range tests {
		if got := nextLink(in); got != want {
			t.Errorf("nextLink(%q) = %q, want %q", in, got, want)
		}
	}
}
