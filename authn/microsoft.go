package authn

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/session"
)

// Microsoft signs people in with Microsoft Entra ID (OpenID Connect on the
// v2.0 endpoint). Generic OIDC does not fit Entra: the multi-tenant
// authorities publish an issuer with a "{tenantid}" placeholder, so the
// issuer is checked per token against the token's own tid; Entra's email
// claim is whatever a tenant administrator typed; and past about 200
// groups the ID token lists none and they must be read from Microsoft
// Graph.
type Microsoft struct {
	cfg         MicrosoftConfig
	rule        filters.Rule
	redirectURL string
	client      *http.Client
	authority   string          // <url>/<tenant>
	graph       *url.URL        // Graph base
	allowed     map[string]bool // allowed_tenants, lower-case
	groupNames  map[string]string

	disc discovered[msDiscovered]
}

type msDiscovered struct {
	verifier *oidc.IDTokenVerifier
	oauth    oauth2.Config // builds authorization URLs; Microsoft.token makes the token requests
	tokenURL string
	// issuer is the discovered issuer: "<url>/{tenantid}/v2.0" for
	// organizations and common, "<url>/<tenant id>/v2.0" for one tenant.
	issuer string
	// tenantID is the one tenant's id (from its issuer); "" when several
	// tenants may sign in.
	tenantID string
}

// NewMicrosoft returns the Microsoft Entra ID provider. global holds the
// filter lists that apply to every provider.
func NewMicrosoft(cfg MicrosoftConfig, global filters.Lists, redirectURL string, client *http.Client) (*Microsoft, error) {
	graph, err := url.Parse(strings.TrimSuffix(cfg.GraphURL, "/"))
	if err != nil || graph.Host == "" {
		return nil, fmt.Errorf("auth.microsoft.graph_url %q is not an absolute URL", cfg.GraphURL)
	}
	cfg.Tenant = identity.LowerASCII(strings.TrimSpace(cfg.Tenant))
	allowed := map[string]bool{}
	for _, t := range cfg.AllowedTenants {
		allowed[identity.LowerASCII(strings.TrimSpace(t))] = true
	}
	// Entra writes object ids lower-case; configuration may not.
	names := map[string]string{}
	for id, name := range cfg.GroupNames {
		names[identity.LowerASCII(strings.TrimSpace(id))] = strings.TrimSpace(name)
	}
	// An allowed group may be given by object id or by its group_names
	// name; identities carry the name where there is one, so an allowed
	// id admits its name too.
	lists := global
	lists.Groups = nil
	for _, g := range cfg.AllowedGroups {
		g = strings.TrimSpace(g)
		if tenantGUID.MatchString(identity.LowerASCII(g)) {
			g = identity.LowerASCII(g)
		}
		lists.Groups = append(lists.Groups, g)
		if name, ok := names[g]; ok {
			lists.Groups = append(lists.Groups, name)
		}
	}
	return &Microsoft{
		cfg: cfg, rule: filters.NewRule(lists), redirectURL: redirectURL, client: client,
		authority: strings.TrimSuffix(cfg.URL, "/") + "/" + url.PathEscape(cfg.Tenant),
		graph:     graph, allowed: allowed, groupNames: names,
	}, nil
}

// Name implements Provider.
func (m *Microsoft) Name() string { return "microsoft" }

// DisplayName implements Provider.
func (m *Microsoft) DisplayName() string { return "Microsoft" }

// Rule implements Provider.
func (m *Microsoft) Rule() filters.Rule { return m.rule }

// Ready implements Provider.
func (m *Microsoft) Ready(ctx context.Context) error {
	_, err := m.discover(ctx)
	return err
}

// discover reads the tenant's OpenID configuration, lazily and retried
// like OIDC's. go-oidc's NewProvider cannot be used: it insists that the
// issuer equal the discovery URL, which Entra's multi-tenant authorities
// and tenants named by domain never satisfy. The issuer is checked here
// instead, and per token in verifyIDToken.
func (m *Microsoft) discover(ctx context.Context) (*msDiscovered, error) {
	return m.disc.get(func() (*msDiscovered, error) {
		d, err := m.fetchDiscovery(ctx)
		if err != nil {
			return nil, fmt.Errorf("microsoft discovery: %w", err)
		}
		return d, nil
	})
}

func (m *Microsoft) fetchDiscovery(ctx context.Context) (*msDiscovered, error) {
	ctx, cancel := context.WithTimeout(ctx, providerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.authority+"/v2.0/.well-known/openid-configuration", nil)
	if err != nil {
		return nil, err
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, redactURLError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	var pc oidc.ProviderConfig
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&pc); err != nil {
		return nil, err
	}
	if pc.AuthURL == "" || pc.TokenURL == "" || pc.JWKSURL == "" {
		return nil, errors.New("discovery document lacks an endpoint")
	}
	// The issuer must be this authority host's, for a tenant id or the
	// multi-tenant placeholder, matching what was configured.
	rest, onHost := strings.CutPrefix(pc.IssuerURL, strings.TrimSuffix(m.cfg.URL, "/")+"/")
	tid, v2 := strings.CutSuffix(rest, "/v2.0")
	if !onHost || !v2 {
		return nil, fmt.Errorf("issuer %q is not a v2.0 issuer of %s", pc.IssuerURL, m.cfg.URL)
	}
	switch {
	case multiTenant(m.cfg.Tenant) && tid != "{tenantid}":
		return nil, fmt.Errorf("issuer %q of a multi-tenant authority lacks the {tenantid} placeholder", pc.IssuerURL)
	case multiTenant(m.cfg.Tenant):
		tid = ""
	case !tenantGUID.MatchString(tid) || (tenantGUID.MatchString(m.cfg.Tenant) && tid != m.cfg.Tenant):
		return nil, fmt.Errorf("issuer %q does not name tenant %q", pc.IssuerURL, m.cfg.Tenant)
	}
	// Entra signs ID tokens with RS256 only; go-oidc checks the signature,
	// the audience and the lifetime, and verifyIDToken the issuer.
	provider := pc.NewProvider(oidc.ClientContext(context.Background(), m.client))
	return &msDiscovered{
		verifier: provider.Verifier(&oidc.Config{ClientID: m.cfg.ClientID, SkipIssuerCheck: true, SupportedSigningAlgs: []string{oidc.RS256}}),
		oauth: oauth2.Config{ClientID: m.cfg.ClientID, Endpoint: oauth2.Endpoint{AuthURL: pc.AuthURL, TokenURL: pc.TokenURL},
			RedirectURL: m.redirectURL, Scopes: m.cfg.Scopes},
		tokenURL: pc.TokenURL,
		issuer:   pc.IssuerURL,
		tenantID: tid,
	}, nil
}

// AuthCodeURL implements Provider.
func (m *Microsoft) AuthCodeURL(ctx context.Context, st *loginState) (string, error) {
	d, err := m.discover(ctx)
	if err != nil {
		return "", providerUnavailable(err)
	}
	opts := []oauth2.AuthCodeOption{oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)}
	if m.cfg.Prompt != "" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", m.cfg.Prompt))
	}
	for k, v := range m.cfg.ExtraAuthParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	return d.oauth.AuthCodeURL(st.State, opts...), nil
}

// Finish implements Provider.
func (m *Microsoft) Finish(ctx context.Context, r *http.Request, st *loginState) (identity.Identity, *session.ProviderToken, error) {
	var none identity.Identity
	d, err := m.discover(ctx)
	if err != nil {
		return none, nil, providerUnavailable(err)
	}
	code := r.URL.Query().Get("code")
	if code == "" {
		return none, nil, signInFailed(errors.New("callback without code"))
	}
	ctx, cancel := context.WithTimeout(ctx, providerTimeout)
	defer cancel()
	tok, err := m.token(ctx, d, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {m.redirectURL}, "code_verifier": {st.Verifier}})
	if err != nil {
		var te *msTokenError
		if errors.As(err, &te) && te.Status < 500 && te.Code != "invalid_client" {
			return none, nil, signInFailed(fmt.Errorf("code exchange refused: %s", te.Code))
		}
		return none, nil, providerUnavailable(fmt.Errorf("code exchange: %w", err))
	}
	if tok.IDToken == "" {
		return none, nil, signInFailed(errors.New("token response without id_token"))
	}
	claims, err := m.verifyIDToken(ctx, d, tok.IDToken, tok.AccessToken)
	if err != nil {
		var bad *msClaimError
		if errors.As(err, &bad) && bad.tenant {
			return none, nil, &LoginError{Status: http.StatusForbidden, Title: "Organization not allowed",
				Message: "Your Microsoft account belongs to an organization (tenant) whose accounts may not sign in here.", Err: err}
		}
		return none, nil, signInFailed(fmt.Errorf("id_token: %w", err))
	}
	// go-oidc does not check the nonce; without this an ID token issued
	// for another sign-in could be replayed here.
	nonce, _ := claims["nonce"].(string)
	if st.Nonce == "" || subtle.ConstantTimeCompare([]byte(nonce), []byte(st.Nonce)) != 1 {
		return none, nil, signInFailed(errors.New("id_token nonce does not match this sign-in"))
	}
	id, err := m.identityFrom(ctx, claims, tok.AccessToken)
	if err != nil {
		// Never a session without its groups: they may be what keeps
		// the person out of somewhere.
		return none, nil, groupsUnavailable(err)
	}
	return id, tok.providerToken(), nil
}

// groupsUnavailable is the sign-in failure when Microsoft Graph cannot
// say which groups the person is in.
func groupsUnavailable(err error) error {
	return &LoginError{Status: http.StatusServiceUnavailable, Title: "Microsoft groups unavailable",
		Message: "You signed in, but your group memberships could not be read from Microsoft, so it cannot be decided what you may reach. Please try again in a moment.",
		Err:     err}
}

// Revalidate implements Provider: the refresh token buys a fresh ID token,
// checked as at sign-in, and the groups are read again (from Graph on
// overage). Without a refresh token nothing can vouch for the user.
func (m *Microsoft) Revalidate(ctx context.Context, tok *session.ProviderToken) (identity.Identity, *session.ProviderToken, error) {
	var none identity.Identity
	if tok == nil || tok.RefreshToken == "" {
		return none, nil, ErrRevoked
	}
	d, err := m.discover(ctx)
	if err != nil {
		return none, nil, providerUnavailable(err)
	}
	ctx, cancel := context.WithTimeout(ctx, providerTimeout)
	defer cancel()
	t, err := m.token(ctx, d, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}})
	if err != nil {
		var te *msTokenError
		if errors.As(err, &te) && te.userRefused() {
			return none, nil, ErrRevoked
		}
		return none, nil, providerUnavailable(fmt.Errorf("token refresh: %w", err))
	}
	if t.IDToken == "" {
		return none, nil, providerUnavailable(errors.New("token refresh answer without id_token"))
	}
	claims, err := m.verifyIDToken(ctx, d, t.IDToken, t.AccessToken)
	if err != nil {
		var bad *msClaimError
		if errors.As(err, &bad) {
			// Signed by Entra but no longer acceptable (a tenant taken off
			// allowed_tenants, say): the session ends.
			return none, nil, fmt.Errorf("%w: refreshed id_token: %v", ErrRevoked, err)
		}
		return none, nil, providerUnavailable(fmt.Errorf("refreshed id_token: %w", err))
	}
	id, err := m.identityFrom(ctx, claims, t.AccessToken)
	if err != nil {
		return none, nil, providerUnavailable(err)
	}
	fresh := t.providerToken()
	if fresh.RefreshToken == "" {
		fresh.RefreshToken = tok.RefreshToken
	}
	return id, fresh, nil
}
