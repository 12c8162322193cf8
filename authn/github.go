package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/session"
)

// githubMaxPages bounds pagination (100 items a page): a runaway or
// hostile Link chain cannot keep a sign-in busy forever.
const githubMaxPages = 50

// GitHub signs people in with GitHub or GitHub Enterprise Server (OAuth
// 2.0, not OIDC) and reads their verified e-mail, organizations and teams
// from the REST API.
type GitHub struct {
	cfg    GitHubConfig
	rule   filters.Rule
	oauth  oauth2.Config
	api    *url.URL
	client *http.Client
}

// NewGitHub returns the GitHub provider. global holds the filter lists
// that apply to every provider.
func NewGitHub(cfg GitHubConfig, global filters.Lists, redirectURL string, client *http.Client) (*GitHub, error) {
	api, err := url.Parse(strings.TrimSuffix(cfg.APIURL, "/"))
	if err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(cfg.URL, "/")
	lists := global
	lists.Organizations, lists.Teams, lists.Users = cfg.AllowedOrganizations, cfg.AllowedTeams, cfg.AllowedUsers
	return &GitHub{
		cfg:  cfg,
		rule: filters.NewRule(lists),
		oauth: oauth2.Config{
			ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, RedirectURL: redirectURL, Scopes: cfg.Scopes,
			Endpoint: oauth2.Endpoint{
				AuthURL: base + "/login/oauth/authorize", TokenURL: base + "/login/oauth/access_token",
				AuthStyle: oauth2.AuthStyleInParams,
			},
		},
		api:    api,
		client: client,
	}, nil
}

// Name implements Provider.
func (g *GitHub) Name() string { return "github" }

// DisplayName implements Provider.
func (g *GitHub) DisplayName() string {
	if g.cfg.URL != "" && !strings.EqualFold(strings.TrimSuffix(g.cfg.URL, "/"), "https://github.com") {
		return "GitHub Enterprise"
	}
	return "GitHub"
}

// Rule implements Provider.
func (g *GitHub) Rule() filters.Rule { return g.rule }

// Ready implements Provider. GitHub has no discovery document to fetch.
func (g *GitHub) Ready(context.Context) error { return nil }

// AuthCodeURL implements Provider.
func (g *GitHub) AuthCodeURL(_ context.Context, st *loginState) (string, error) {
	return g.oauth.AuthCodeURL(st.State, oauth2.S256ChallengeOption(st.Verifier)), nil
}

// Finish implements Provider.
func (g *GitHub) Finish(ctx context.Context, r *http.Request, st *loginState) (identity.Identity, *session.ProviderToken, error) {
	code := r.URL.Query().Get("code")
	if code == "" {
		return identity.Identity{}, nil, signInFailed(errors.New("callback without code"))
	}
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, g.client), providerTimeout)
	defer cancel()
	tok, err := g.oauth.Exchange(ctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && (re.Response == nil || re.Response.StatusCode < 500) {
			return identity.Identity{}, nil, signInFailed(fmt.Errorf("code exchange refused: %s", re.ErrorCode))
		}
		return identity.Identity{}, nil, providerUnavailable(fmt.Errorf("code exchange: %w", err))
	}
	id, err := g.fetchIdentity(ctx, tok.AccessToken)
	if err != nil {
		return identity.Identity{}, nil, err
	}
	return id, tokenFrom(tok), nil
}

// Revalidate implements Provider: the identity is read again with the
// stored token, refreshed first when GitHub issued an expiring one.
func (g *GitHub) Revalidate(ctx context.Context, tok *session.ProviderToken) (identity.Identity, *session.ProviderToken, error) {
	if tok == nil || tok.AccessToken == "" {
		return identity.Identity{}, nil, ErrRevoked
	}
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, g.client), providerTimeout)
	defer cancel()
	fresh, err := refreshIfExpired(ctx, &g.oauth, tok)
	if err != nil {
		return identity.Identity{}, nil, err
	}
	id, err := g.fetchIdentity(ctx, fresh.AccessToken)
	if err != nil {
		return identity.Identity{}, nil, err
	}
	return id, fresh, nil
}

type githubUser struct {
	ID    int64  `json:"id"`
	Login string `json:"login"`
	Name  string `json:"name"`
}

type githubEmail struct {
	Email    string `json:"email"`
	Primary  bool   `json:"primary"`
	Verified bool   `json:"verified"`
}

type githubOrg struct {
	Login string `json:"login"`
}

type githubTeam struct {
	Slug         string    `json:"slug"`
	Organization githubOrg `json:"organization"`
}

func (g *GitHub) fetchIdentity(ctx context.Context, token string) (identity.Identity, error) {
	var none identity.Identity
	var u githubUser
	if err := g.get(ctx, token, "/user", &u); err != nil {
		return none, err
	}
	if u.Login == "" || u.ID == 0 {
		return none, providerUnavailable(errors.New("github /user answer without login or id"))
	}
	var emails []githubEmail
	if err := g.list(ctx, token, "/user/emails", func(page json.RawMessage) error {
		var batch []githubEmail
		err := json.Unmarshal(page, &batch)
		emails = append(emails, batch...)
		return err
	}); err != nil {
		return none, err
	}
	// Only the primary address, and only when GitHub verified it: the
	// profile's public e-mail is whatever the user typed.
	var email string
	for _, e := range emails {
		if e.Primary && e.Verified {
			email = e.Email
		}
	}
	var orgs []string
	if err := g.list(ctx, token, "/user/orgs", func(page json.RawMessage) error {
		var batch []githubOrg
		err := json.Unmarshal(page, &batch)
		for _, o := range batch {
			orgs = append(orgs, o.Login)
		}
		return err
	}); err != nil {
		return none, err
	}
	var teams []string
	if err := g.list(ctx, token, "/user/teams", func(page json.RawMessage) error {
		var batch []githubTeam
		err := json.Unmarshal(page, &batch)
		for _, t := range batch {
			teams = append(teams, t.Organization.Login+"/"+t.Slug)
		}
		return err
	}); err != nil {
		return none, err
	}
	groups := append(append([]string{}, orgs...), teams...)
	return identity.Identity{
		Provider: "github", Subject: strconv.FormatInt(u.ID, 10), User: u.Login, Login: u.Login,
		Email: email, EmailVerified: email != "", Name: u.Name, PreferredUsername: u.Login,
		Groups: groups, Organizations: orgs, Teams: teams,
	}, nil
}

// get fetches one API resource into v.
func (g *GitHub) get(ctx context.Context, token, path string, v any) error {
	body, _, err := g.do(ctx, token, g.api.String()+path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return providerUnavailable(fmt.Errorf("github %s: %w", path, err))
	}
	return nil
}

// list fetches every page of a list endpoint, following Link rel="next".
func (g *GitHub) list(ctx context.Context, token, path string, each func(json.RawMessage) error) error {
	next := g.api.String() + path + "?per_page=100"
	for page := 0; next != ""; page++ {
		if page == githubMaxPages {
			return providerUnavailable(fmt.Errorf("github %s: more than %d pages", path, githubMaxPages))
		}
		body, hdr, err := g.do(ctx, token, next)
		if err != nil {
			return err
		}
		if err := each(body); err != nil {
			return providerUnavailable(fmt.Errorf("github %s: %w", path, err))
		}
		next = nextLink(hdr.Get("Link"))
		// The token goes only to the configured API host, whatever a
		// Link header says.
		if u, err := url.Parse(next); next != "" && (err != nil || u.Scheme != g.api.Scheme || u.Host != g.api.Host) {
			return providerUnavailable(fmt.Errorf("github %s: next page link leaves the API host", path))
		}
	}
	return nil
}

func (g *GitHub) do(ctx context.Context, token, rawURL string) ([]byte, http.Header, error) {
	resp, body, err := getBearer(ctx, g.client, token, rawURL, 4<<20, http.Header{
		"Accept":               {"application/vnd.github+json"},
		"X-Github-Api-Version": {"2022-11-28"},
	})
	if err != nil {
		return nil, nil, providerUnavailable(fmt.Errorf("github API: %w", err))
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, nil, ErrRevoked
	case resp.StatusCode != http.StatusOK:
		return nil, nil, providerUnavailable(fmt.Errorf("github API %s: status %d", resp.Request.URL.Path, resp.StatusCode))
	}
	return body, resp.Header, nil
}

// nextLink returns the rel="next" URL of an RFC 8288 Link header.
func nextLink(h string) string {
	for _, part := range strings.Split(h, ",") {
		target, params, ok := strings.Cut(part, ";")
		if !ok {
			continue
		}
		for _, p := range strings.Split(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(k, "rel") && strings.Trim(v, `"`) == "next" {
				return strings.Trim(strings.TrimSpace(target), "<>")
			}
		}
	}
	return ""
}

// redactURLError drops the URL (and so any query) from a client error.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
