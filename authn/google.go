package authn

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"

	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/session"
)

// Bounds on reading a user's groups, so a runaway or hostile page chain
// cannot keep a sign-in busy or a session record growing without end.
const (
	googleMaxPages  = 50
	googleMaxGroups = 5000
)

// Google signs people in with Google (OpenID Connect), admits only the
// Workspace domains of allowed_hosted_domains by the ID token's hd claim,
// and, with a service account, reads their groups from the directory at
// sign-in and at each revalidation.
type Google struct {
	oidc   *OIDC
	hosted []string         // allowed hd values, lower-case; empty: any account
	dir    *googleDirectory // nil: no service account, no groups
}

// NewGoogle returns the Google provider. global holds the filter lists
// that apply to every provider.
func NewGoogle(cfg GoogleConfig, global filters.Lists, redirectURL string, client *http.Client) (*Google, error) {
	hosted := lowerAllASCII(cfg.AllowedHostedDomains)
	extra := map[string]string{
		// Google issues a refresh token only for offline access, and
		// revalidation needs one to get fresh ID tokens (with hd).
		"access_type": "offline",
	}
	// hd only tailors Google's account chooser ("*": any Workspace
	// account); it is no check, the hd claim is checked at the callback.
	switch len(hosted) {
	case 0:
	case 1:
		extra["hd"] = hosted[0]
	default:
		extra["hd"] = "*"
	}
	for k, v := range cfg.ExtraAuthParams {
		extra[k] = v
	}
	o := NewOIDC("google", OIDCConfig{
		DisplayName: "Google", IssuerURL: strings.TrimSuffix(cfg.URL, "/"), ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
		Scopes: []string{"openid", "email", "profile"}, GroupsClaim: "groups", AllowedGroups: lowerAllASCII(cfg.AllowedGroups),
		UserClaim: "email", Prompt: cfg.Prompt, ExtraAuthParams: extra,
		// Not for RP-initiated logout (Google has no end_session_endpoint,
		// and Google does not offer EndSessionURL): with it the OIDC code
		// hands back the raw ID token it verified, whose hd claim is read
		// here and then dropped.
		EndSession: true,
	}, global, redirectURL, client)
	g := &Google{oidc: o, hosted: hosted}
	if cfg.ServiceAccountFile != "" {
		sa, err := loadGoogleServiceAccount(cfg.ServiceAccountFile)
		if err != nil {
			return nil, fmt.Errorf("auth.google.service_account_file: %w", err)
		}
		g.dir = newGoogleDirectory(cfg, sa, client)
	}
	return g, nil
}

// Name implements Provider.
func (g *Google) Name() string { return "google" }

// DisplayName implements Provider.
func (g *Google) DisplayName() string { return "Google" }

// Rule implements Provider: the global lists and allowed_groups. The
// hosted domain is checked by the provider itself, against hd rather
// than the e-mail address.
func (g *Google) Rule() filters.Rule { return g.oidc.Rule() }

// Ready implements Provider.
func (g *Google) Ready(ctx context.Context) error { return g.oidc.Ready(ctx) }

// AuthCodeURL implements Provider.
func (g *Google) AuthCodeURL(ctx context.Context, st *loginState) (string, error) {
	return g.oidc.AuthCodeURL(ctx, st)
}

// Finish implements Provider: the OpenID Connect checks, then the hosted
// domain, then the groups. Groups that cannot be read refuse the sign-in:
// a session without them would pass for someone in no group.
func (g *Google) Finish(ctx context.Context, r *http.Request, st *loginState) (identity.Identity, *session.ProviderToken, error) {
	var none identity.Identity
	id, tok, err := g.oidc.Finish(ctx, r, st)
	if err != nil {
		return none, nil, err
	}
	hd, err := googleHostedDomain(tok.IDToken)
	tok.IDToken = ""
	if err != nil {
		return none, nil, signInFailed(fmt.Errorf("id_token: %w", err))
	}
	if !g.hostedAllowed(hd) {
		return none, nil, &LoginError{Status: http.StatusForbidden, Title: "Access denied",
			Message: "Your Google account is not in an allowed Workspace domain. Sign in with your work account.",
			Err:     fmt.Errorf("hosted domain %q is not allowed", hd)}
	}
	id = g.shape(id)
	if id.Groups, err = g.readGroups(ctx, id); err != nil {
		return none, nil, &LoginError{Status: http.StatusServiceUnavailable, Title: "Google groups unavailable",
			Message: "Your Google groups could not be read, so access cannot be decided. Please try again in a moment.", Err: err}
	}
	return id, tok, nil
}

// Revalidate implements Provider: a fresh ID token (hd checked again) and
// the groups read again. Groups that cannot be read are an outage, so the
// revalidator's grace applies; an hd no longer allowed ends the session.
func (g *Google) Revalidate(ctx context.Context, tok *session.ProviderToken) (identity.Identity, *session.ProviderToken, error) {
	var none identity.Identity
	if tok == nil {
		return none, nil, ErrRevoked
	}
	in := *tok
	in.IDToken = "" // so that an ID token afterwards is a refreshed one
	id, fresh, err := g.oidc.Revalidate(ctx, &in)
	if err != nil {
		return none, nil, err
	}
	raw := fresh.IDToken
	fresh.IDToken = ""
	if len(g.hosted) > 0 {
		var hd string
		if raw != "" {
			if hd, err = googleHostedDomain(raw); err != nil {
				return none, nil, providerUnavailable(fmt.Errorf("refreshed id_token: %w", err))
			}
		} else if hd, err = g.userInfoHostedDomain(ctx, fresh.AccessToken, id.Subject); err != nil {
			return none, nil, err
		}
		if !g.hostedAllowed(hd) {
			return none, nil, fmt.Errorf("%w: hosted domain %q is not allowed", ErrRevoked, hd)
		}
	}
	id = g.shape(id)
	if id.Groups, err = g.readGroups(ctx, id); err != nil {
		return none, nil, providerUnavailable(err)
	}
	return id, fresh, nil
}

// userInfoHostedDomain reads hd from userinfo, for a revalidation that got
// no new ID token (no refresh token, or a refresh answered without one).
func (g *Google) userInfoHostedDomain(ctx context.Context, accessToken, sub string) (string, error) {
	d, err := g.oidc.discover(ctx)
	if err != nil {
		return "", providerUnavailable(err)
	}
	ctx, cancel := context.WithTimeout(ctx, providerTimeout)
	defer cancel()
	claims, err := g.oidc.userInfo(ctx, d, accessToken)
	if err != nil {
		return "", err
	}
	if s := claimString(claims, "sub"); s == "" || s != sub {
		return "", ErrRevoked
	}
	return claimString(claims, "hd"), nil
}

func (g *Google) hostedAllowed(hd string) bool {
	if len(g.hosted) == 0 {
		return true
	}
	hd = identity.LowerASCII(hd)
	for _, h := range g.hosted {
		if hd != "" && hd == h {
			return true
		}
	}
	return false
}

// shape makes the user name: the e-mail's local part where that is
// unambiguous (one allowed Workspace domain, the address in it), else the
// whole address, lower-cased; an unverified address never names the user.
func (g *Google) shape(id identity.Identity) identity.Identity {
	id.User = id.Subject
	if id.EmailVerified {
		id.User = identity.LowerASCII(id.Email)
		if _, domain, ok := identity.SplitEmail(id.User); ok && len(g.hosted) == 1 && domain == g.hosted[0] {
			id.User = identity.LocalPart(id.Email)
		}
	}
	id.Groups = []string{}
	return id
}

// readGroups returns the user's groups, none without a service account.
// Only a verified address is looked up: an unverified one may name
// somebody else's directory entry.
func (g *Google) readGroups(ctx context.Context, id identity.Identity) ([]string, error) {
	if g.dir == nil || !id.EmailVerified {
		return []string{}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, providerTimeout)
	defer cancel()
	return g.dir.groups(ctx, id.Email)
}

// googleHostedDomain reads hd from an ID token that the OIDC code has just
// verified (signature, issuer, audience, expiry, nonce); "" when absent,
// as for a consumer account.
func googleHostedDomain(raw string) (string, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", errors.New("not a compact JWS")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("payload: %w", err)
	}
	var c struct {
		HD string `json:"hd"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", fmt.Errorf("hd claim: %w", err)
	}
	return strings.TrimSpace(c.HD), nil
}

// googleDirectory reads group memberships as a service account acting for
// a Workspace administrator (domain-wide delegation).
type googleDirectory struct {
	jwt    jwt.Config
	source string
	base   string
	client *http.Client

	mu  sync.Mutex
	tok *oauth2.Token // cached until shortly before it expires
}

func newGoogleDirectory(cfg GoogleConfig, sa *googleServiceAccount, client *http.Client) *googleDirectory {
	d := &googleDirectory{source: cfg.GroupsSource, client: client, jwt: jwt.Config{
		Email: sa.ClientEmail, PrivateKey: []byte(sa.PrivateKey), PrivateKeyID: sa.PrivateKeyID,
		Subject: cfg.AdminEmail, Scopes: []string{googleScopeAdminSDK}, TokenURL: sa.TokenURI,
	}}
	d.base = strings.TrimSuffix(cfg.AdminSDKURL, "/")
	if d.source == googleCloudIdentity {
		d.base = strings.TrimSuffix(cfg.CloudIdentityURL, "/")
		d.jwt.Scopes = []string{googleScopeCloudIdentity}
	}
	return d
}

// accessToken returns the service account's token, minting one with the
// JWT-bearer grant when the cached one is about to expire.
func (d *googleDirectory) accessToken(ctx context.Context) (string, error) {
	d.mu.Lock()
	t := d.tok
	d.mu.Unlock()
	if t.Valid() {
		return t.AccessToken, nil
	}
	base := d.client.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	// jwt.Config posts without a request context, so its client carries
	// this call's deadline and cancellation itself.
	hc := &http.Client{Transport: ctxTransport{ctx: ctx, base: base}, CheckRedirect: d.client.CheckRedirect, Timeout: d.client.Timeout}
	t, err := d.jwt.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, hc)).Token()
	if err != nil {
		return "", fmt.Errorf("service account token: %w", redactURLError(err))
	}
	d.mu.Lock()
	d.tok = t
	d.mu.Unlock()
	return t.AccessToken, nil
}

type ctxTransport struct {
	ctx  context.Context
	base http.RoundTripper
}

func (t ctxTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.base.RoundTrip(r.WithContext(t.ctx))
}

// groups lists the groups of the user with address email, every page:
// lower-cased group addresses, direct groups (admin_sdk) or transitive
// ones (cloud_identity).
func (d *googleDirectory) groups(ctx context.Context, email string) ([]string, error) {
	// The address becomes a CEL string literal in the Cloud Identity query.
	if strings.ContainsAny(email, `'"\`) {
		return nil, fmt.Errorf("google groups: cannot look up the address %q", email)
	}
	token, err := d.accessToken(ctx)
	if err != nil {
		return nil, err
	}
	out, seen := []string{}, map[string]bool{}
	pageToken := ""
	for page := 0; ; page++ {
		if page == googleMaxPages {
			return nil, fmt.Errorf("google groups: more than %d pages", googleMaxPages)
		}
		var resp struct { // groups.list or searchTransitiveGroups
			Groups        []struct{ Email string }
			Memberships   []struct{ GroupKey struct{ ID string } }
			NextPageToken string
		}
		if err := d.get(ctx, token, d.pageURL(email, pageToken), &resp); err != nil {
			return nil, err
		}
		add := func(e string) {
			if e = identity.LowerASCII(strings.TrimSpace(e)); e != "" && !seen[e] {
				seen[e] = true
				out = append(out, e)
			}
		}
		for _, g := range resp.Groups {
			add(g.Email)
		}
		for _, m := range resp.Memberships {
			add(m.GroupKey.ID)
		}
		if len(out) > googleMaxGroups {
			return nil, fmt.Errorf("google groups: more than %d groups", googleMaxGroups)
		}
		if resp.NextPageToken == "" {
			return out, nil
		}
		if resp.NextPageToken == pageToken {
			return nil, errors.New("google groups: the next page token repeats")
		}
		pageToken = resp.NextPageToken
	}
}

func (d *googleDirectory) pageURL(email, pageToken string) string {
	q := url.Values{}
	path := "/admin/directory/v1/groups"
	if d.source == googleCloudIdentity {
		path = "/v1/groups/-/memberships:searchTransitiveGroups"
		q.Set("query", "member_key_id == '"+email+"' && 'cloudidentity.googleapis.com/groups.discussion_forum' in labels")
		q.Set("pageSize", "500")
	} else {
		q.Set("userKey", email)
		q.Set("maxResults", "200")
	}
	if pageToken != "" {
		q.Set("pageToken", pageToken)
	}
	return d.base + path + "?" + q.Encode()
}

// get fetches one page into v. Google's error JSON gives the log its
// reason; a 401 drops the cached token so that the next call mints one.
func (d *googleDirectory) get(ctx context.Context, token, rawURL string, v any) error {
	resp, body, err := getBearer(ctx, d.client, token, rawURL, 4<<20, nil)
	if err != nil {
		return fmt.Errorf("google groups: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		if resp.StatusCode == http.StatusUnauthorized {
			d.mu.Lock()
			d.tok = nil
			d.mu.Unlock()
		}
		var e struct {
			Error struct{ Message, Status string }
		}
		_ = json.Unmarshal(body, &e)
		return fmt.Errorf("google groups %s: status %d %s: %s", resp.Request.URL.Path, resp.StatusCode, truncate(e.Error.Status, 64), truncate(e.Error.Message, 256))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("google groups %s: %w", resp.Request.URL.Path, err)
	}
	return nil
}

func lowerAllASCII(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if s = identity.LowerASCII(strings.TrimSpace(s)); s != "" {
			out = append(out, s)
		}
	}
	return out
}
