package authn

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/session"
)

// discoveryRetry bounds how often a failed discovery is retried, so a
// provider outage does not turn every request into an outbound call.
const discoveryRetry = 2 * time.Second

// discovered holds a provider's discovery result, fetched on first use.
// A failure is remembered for discoveryRetry and then retried.
type discovered[T any] struct {
	mu      sync.Mutex
	v       *T
	lastTry time.Time
	lastErr error
}

// get returns the result, calling fetch unless it is known or a recent
// attempt failed.
func (d *discovered[T]) get(fetch func() (*T, error)) (*T, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.v != nil {
		return d.v, nil
	}
	if !d.lastTry.IsZero() && time.Since(d.lastTry) < discoveryRetry {
		return nil, d.lastErr
	}
	d.lastTry = time.Now()
	v, err := fetch()
	if err != nil {
		d.lastErr = err
		return nil, err
	}
	d.v = v
	return v, nil
}

// providerTimeout bounds each call to a provider.
const providerTimeout = 15 * time.Second

// OIDC is a generic OpenID Connect provider. Discovery happens lazily and
// is retried, so Gatehouse starts (and reports not-ready) while the
// provider is down, instead of crash-looping.
type OIDC struct {
	name        string
	cfg         OIDCConfig
	rule        filters.Rule
	redirectURL string
	client      *http.Client
	opts        oidcOptions

	disc discovered[oidcDiscovered]
}

type oidcDiscovered struct {
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	oauth    oauth2.Config
	// issParam: the provider promises the RFC 9207 iss response parameter.
	issParam bool
	// logoutKeys verify back-channel logout tokens (see logoutKeys).
	logoutKeys *logoutKeys
	// endSession is the advertised end_session_endpoint, if any.
	endSession string
}

// oidcOptions adapt the generic provider to a particular one (GitLab).
type oidcOptions struct {
	groupsFromUserInfo bool // the ID token lists groups only partly; userinfo has them all
	groupPaths         bool // groups are hierarchical paths: a subgroup passes for its parent
}

// NewOIDC returns the provider called name. global holds the filter lists
// that apply to every provider.
func NewOIDC(name string, cfg OIDCConfig, global filters.Lists, redirectURL string, client *http.Client) *OIDC {
	lists := global
	lists.Groups = cfg.AllowedGroups
	return &OIDC{name: name, cfg: cfg, rule: filters.NewRule(lists), redirectURL: redirectURL, client: client}
}

// Name implements Provider.
func (p *OIDC) Name() string { return p.name }

// DisplayName implements Provider.
func (p *OIDC) DisplayName() string { return p.cfg.DisplayName }

// Rule implements Provider.
func (p *OIDC) Rule() filters.Rule { return p.rule }

// Ready implements Provider.
func (p *OIDC) Ready(ctx context.Context) error {
	_, err := p.discover(ctx)
	return err
}

func (p *OIDC) clientCtx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, p.client)
}

func (p *OIDC) discover(ctx context.Context) (*oidcDiscovered, error) {
	return p.disc.get(func() (*oidcDiscovered, error) { return p.fetchDiscovery(ctx) })
}

func (p *OIDC) fetchDiscovery(ctx context.Context) (*oidcDiscovered, error) {
	ctx, cancel := context.WithTimeout(ctx, providerTimeout)
	defer cancel()
	provider, err := oidc.NewProvider(p.clientCtx(ctx), p.cfg.IssuerURL)
	if err != nil {
		return nil, fmt.Errorf("oidc discovery for %s: %w", p.name, err)
	}
	var extra struct {
		IssParam   bool   `json:"authorization_response_iss_parameter_supported"`
		JWKSURI    string `json:"jwks_uri"`
		EndSession string `json:"end_session_endpoint"`
	}
	_ = provider.Claims(&extra)
	return &oidcDiscovered{
		provider: provider,
		verifier: provider.Verifier(&oidc.Config{ClientID: p.cfg.ClientID}),
		oauth: oauth2.Config{
			ClientID:     p.cfg.ClientID,
			ClientSecret: p.cfg.ClientSecret,
			Endpoint:     provider.Endpoint(),
			RedirectURL:  p.redirectURL,
			Scopes:       p.cfg.Scopes,
		},
		issParam:   extra.IssParam,
		logoutKeys: &logoutKeys{uri: extra.JWKSURI, client: p.client, now: time.Now},
		endSession: extra.EndSession,
	}, nil
}

// AuthCodeURL implements Provider.
func (p *OIDC) AuthCodeURL(ctx context.Context, st *loginState) (string, error) {
	d, err := p.discover(ctx)
	if err != nil {
		return "", providerUnavailable(err)
	}
	return d.oauth.AuthCodeURL(st.State, p.authParams(st)...), nil
}

// Finish implements Provider.
func (p *OIDC) Finish(ctx context.Context, r *http.Request, st *loginState) (identity.Identity, *session.ProviderToken, error) {
	var none identity.Identity
	d, err := p.discover(ctx)
	if err != nil {
		return none, nil, providerUnavailable(err)
	}
	q := r.URL.Query()
	// RFC 9207: where the provider promises iss, it must be there and be
	// this provider; where it sends one anyway, it must still match. This
	// defeats mix-up attacks between several configured providers.
	if iss, ok := q["iss"]; ok || d.issParam {
		if !ok || len(iss) != 1 || iss[0] != p.cfg.IssuerURL {
			return none, nil, signInFailed(errors.New("iss response parameter missing or not this provider's issuer"))
		}
	}
	code := q.Get("code")
	if code == "" {
		return none, nil, signInFailed(errors.New("callback without code"))
	}
	ctx, cancel := context.WithTimeout(p.clientCtx(ctx), providerTimeout)
	defer cancel()
	tok, err := d.oauth.Exchange(ctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			return none, nil, signInFailed(fmt.Errorf("code exchange refused: %s", re.ErrorCode))
		}
		return none, nil, providerUnavailable(fmt.Errorf("code exchange: %w", err))
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return none, nil, signInFailed(errors.New("token response without id_token"))
	}
	idt, err := d.verifier.Verify(ctx, rawID)
	if err != nil {
		return none, nil, signInFailed(fmt.Errorf("id_token: %w", err))
	}
	if err := p.checkIDToken(idt, tok.AccessToken); err != nil {
		return none, nil, signInFailed(fmt.Errorf("id_token: %w", err))
	}
	// go-oidc does not check the nonce; without this an ID token issued
	// for another sign-in could be replayed here (§3.1.3.7 item 11).
	if st.Nonce == "" || subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		return none, nil, signInFailed(errors.New("id_token nonce does not match this sign-in"))
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return none, nil, signInFailed(fmt.Errorf("id_token claims: %w", err))
	}
	if need := p.userInfoNeed(claims, true); need != userInfoNo && d.provider.UserInfoEndpoint() != "" {
		if err := p.mergeUserInfo(ctx, d, tok.AccessToken, idt.Subject, claims, need == userInfoRequired); err != nil {
			return none, nil, err
		}
	}
	id := p.identityFrom(idt.Subject, claims)
	pt := tokenFrom(tok)
	// The provider's session id names this sign-in in back-channel
	// logout tokens; the ID token is the id_token_hint of RP-initiated
	// logout, kept only when that is on (it is large and says who the
	// user is).
	pt.SID = claimString(claims, "sid")
	if p.cfg.EndSession {
		pt.IDToken = rawID
	}
	return id, pt, nil
}

// iatLeeway is how far in the future an ID token's iat may lie (clock
// skew), as go-oidc allows for nbf.
const iatLeeway = 5 * time.Minute

// checkIDToken applies the checks of OpenID Connect Core 1.0 §3.1.3.7 and
// §3.1.3.8 that go-oidc's Verify leaves to the caller. Verify already
// checked the signature and its algorithm (items 6-8), that aud lists the
// client id (item 3), exp and nbf (item 9). The nonce (item 11) belongs to
// the sign-in, so Finish checks it; a refreshed ID token has none to check.
func (p *OIDC) checkIDToken(idt *oidc.IDToken, accessToken string) error {
	// Item 2: iss exactly the issuer. go-oidc lets Google's scheme-less
	// "accounts.google.com" through; NewProvider already made sure the
	// discovered issuer is exactly the configured issuer_url.
	if idt.Issuer != p.cfg.IssuerURL {
		return fmt.Errorf("iss %q is not exactly the issuer %q", idt.Issuer, p.cfg.IssuerURL)
	}
	// §2: sub and iat are REQUIRED. An ID token without a subject names
	// nobody; one without iat cannot say when it was issued.
	if idt.Subject == "" {
		return errors.New("no sub claim")
	}
	if idt.IssuedAt.IsZero() || idt.IssuedAt.Unix() <= 0 {
		return errors.New("no iat claim")
	}
	// Item 10: iat may be used to refuse tokens issued too far from now.
	if idt.IssuedAt.After(time.Now().Add(iatLeeway)) {
		return fmt.Errorf("iat %s is in the future", idt.IssuedAt.UTC().Format(time.RFC3339))
	}
	// Items 3-5: with several audiences, azp must name this client (the
	// token was issued to us, the others are audiences we only accept
	// because the provider issued it to us); wherever azp is present it
	// must be this client.
	var extra struct {
		AZP *string `json:"azp"`
	}
	if err := idt.Claims(&extra); err != nil {
		return fmt.Errorf("claims: %w", err)
	}
	if len(idt.Audience) > 1 && extra.AZP == nil {
		return errors.New("several audiences and no azp claim")
	}
	if extra.AZP != nil && *extra.AZP != p.cfg.ClientID {
		return fmt.Errorf("azp %q is not this client", *extra.AZP)
	}
	// §3.1.3.8: at_hash, when present, must match the access token that
	// came with the ID token.
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(accessToken); err != nil {
			return fmt.Errorf("at_hash: %w", err)
		}
	}
	return nil
}

// userInfoNeed says whether the userinfo endpoint must be asked.
type userInfoNeed int

const (
	userInfoNo       userInfoNeed = iota
	userInfoWanted                // only to learn email_verified; a failure leaves the address unverified
	userInfoRequired              // the claims are incomplete without it
)

// userInfoNeed decides from the ID token's claims (haveSub: there was one)
// whether userinfo must be read: for a subject or e-mail the ID token
// lacks, for the full group list where only userinfo has it, and, worth a
// try, for email_verified when the ID token has an address without it.
func (p *OIDC) userInfoNeed(claims map[string]any, haveSub bool) userInfoNeed {
	_, hasEmail := claims["email"]
	_, hasVerified := claims["email_verified"]
	switch {
	case !haveSub || !hasEmail || p.opts.groupsFromUserInfo:
		return userInfoRequired
	case !hasVerified:
		return userInfoWanted
	}
	return userInfoNo
}

// userInfo fetches the userinfo endpoint's claims with an access token.
// A 401 or 403 means the token is no longer accepted.
func (p *OIDC) userInfo(ctx context.Context, d *oidcDiscovered, accessToken string) (map[string]any, error) {
	resp, body, err := getBearer(ctx, p.client, accessToken, d.provider.UserInfoEndpoint(), 1<<20, nil)
	if err != nil {
		return nil, providerUnavailable(fmt.Errorf("userinfo: %w", err))
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, ErrRevoked
	case resp.StatusCode != http.StatusOK:
		return nil, providerUnavailable(fmt.Errorf("userinfo: status %d", resp.StatusCode))
	}
	claims := map[string]any{}
	if err := json.Unmarshal(body, &claims); err != nil {
		return nil, providerUnavailable(fmt.Errorf("userinfo: %w", err))
	}
	return claims, nil
}

// mergeUserInfo adds the userinfo endpoint's claims to claims, after
// checking it speaks of the same subject (§5.3.2: otherwise its values
// MUST NOT be used, and the sign-in is refused). When the answer is not
// required, a userinfo endpoint that fails is passed over.
func (p *OIDC) mergeUserInfo(ctx context.Context, d *oidcDiscovered, accessToken, sub string, claims map[string]any, required bool) error {
	more, err := p.userInfo(ctx, d, accessToken)
	if err != nil {
		if !required {
			return nil
		}
		return err
	}
	if s, _ := more["sub"].(string); s == "" || s != sub {
		return signInFailed(errors.New("userinfo subject differs from id_token subject"))
	}
	p.mergeClaims(claims, more)
	return nil
}

// mergeClaims adds userinfo's claims (more) to the ID token's. Claims the
// ID token already has win, except groups for providers that only list
// them fully in userinfo. email_verified travels with the address it
// speaks of: it is taken from userinfo only about the same address.
func (p *OIDC) mergeClaims(claims, more map[string]any) {
	for k, v := range more {
		if k == "email" || k == "email_verified" {
			continue
		}
		if _, ok := claims[k]; !ok || (p.opts.groupsFromUserInfo && k == p.cfg.GroupsClaim) {
			claims[k] = v
		}
	}
	if _, ok := claims["email"]; !ok {
		// The address comes from userinfo, so does whether it is verified.
		delete(claims, "email_verified")
		if e, ok := more["email"]; ok {
			claims["email"] = e
			if v, ok := more["email_verified"]; ok {
				claims["email_verified"] = v
			}
		}
		return
	}
	if _, ok := claims["email_verified"]; ok {
		return
	}
	idEmail, _ := claims["email"].(string)
	uiEmail, _ := more["email"].(string)
	if v, ok := more["email_verified"]; ok && idEmail != "" && idEmail == uiEmail {
		claims["email_verified"] = v
	}
}

// Revalidate implements Provider: with a refresh token, a fresh ID token
// (and userinfo where needed); without one, userinfo with the access token.
func (p *OIDC) Revalidate(ctx context.Context, tok *session.ProviderToken) (identity.Identity, *session.ProviderToken, error) {
	var none identity.Identity
	if tok == nil || tok.AccessToken == "" {
		return none, nil, ErrRevoked
	}
	d, err := p.discover(ctx)
	if err != nil {
		return none, nil, providerUnavailable(err)
	}
	ctx, cancel := context.WithTimeout(p.clientCtx(ctx), providerTimeout)
	defer cancel()
	fresh := tok
	claims := map[string]any{}
	var sub string
	if tok.RefreshToken != "" {
		t, err := d.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Unix(1, 0)}).Token()
		if err != nil {
			return none, nil, classifyTokenError(err)
		}
		fresh = tokenFrom(t)
		if fresh.RefreshToken == "" {
			fresh.RefreshToken = tok.RefreshToken
		}
		fresh.SID, fresh.IDToken = tok.SID, tok.IDToken
		if raw, _ := t.Extra("id_token").(string); raw != "" {
			if p.cfg.EndSession {
				fresh.IDToken = raw
			}
			idt, err := d.verifier.Verify(ctx, raw)
			if err != nil {
				return none, nil, providerUnavailable(fmt.Errorf("refreshed id_token: %w", err))
			}
			// The same checks as at sign-in (OIDC Core §12.2). A token that
			// fails them does not vouch for the user: the session ends and
			// the next sign-in is checked in full.
			if err := p.checkIDToken(idt, t.AccessToken); err != nil {
				return none, nil, fmt.Errorf("%w: refreshed id_token: %v", ErrRevoked, err)
			}
			if err := idt.Claims(&claims); err != nil {
				return none, nil, providerUnavailable(err)
			}
			sub = idt.Subject
		}
	}
	// As at sign-in: userinfo fills what the ID token lacks (many providers
	// put the e-mail only in the first ID token, not in refreshed ones).
	if need := p.userInfoNeed(claims, sub != ""); need != userInfoNo && d.provider.UserInfoEndpoint() != "" {
		more, err := p.userInfo(ctx, d, fresh.AccessToken)
		switch {
		case err != nil && need == userInfoRequired:
			return none, nil, err
		case err == nil:
			moreSub, _ := more["sub"].(string)
			if moreSub == "" || (sub != "" && moreSub != sub) {
				return none, nil, ErrRevoked
			}
			sub = moreSub
			p.mergeClaims(claims, more)
		}
	}
	if sub == "" {
		// Neither a refresh token nor a userinfo endpoint: nothing can
		// confirm the user, so the session ends and they sign in again.
		return none, nil, ErrRevoked
	}
	return p.identityFrom(sub, claims), fresh, nil
}

func (p *OIDC) identityFrom(sub string, claims map[string]any) identity.Identity {
	email := claimString(claims, "email")
	verified := p.emailVerified(claims)
	user := claimString(claims, p.cfg.UserClaim)
	if user == "" {
		user = identity.LocalPart(email)
	}
	if user == "" {
		user = sub
	}
	return identity.Identity{
		GroupsArePaths:    p.opts.groupPaths,
		Provider:          p.name,
		Subject:           sub,
		User:              user,
		Email:             email,
		EmailVerified:     verified && email != "",
		Name:              claimString(claims, "name"),
		PreferredUsername: claimString(claims, "preferred_username"),
		Groups:            claimStrings(claims, p.cfg.GroupsClaim),
	}
}

// emailVerified reads email_verified. Only true (or the string "true",
// which some providers send) verifies the address. An absent (or null)
// claim leaves it unverified, since the e-mail claim is often a field the
// user can set to anything; insecure_skip_email_verified makes an absent
// claim count as verified, but never overrides an explicit false.
func (p *OIDC) emailVerified(claims map[string]any) bool {
	switch v := claims["email_verified"].(type) {
	case bool:
		return v
	case string:
		return strings.EqualFold(strings.TrimSpace(v), "true")
	case nil:
		return p.cfg.InsecureSkipEmailVerified
	}
	return false
}

func claimString(claims map[string]any, name string) string {
	s, _ := claims[name].(string)
	return strings.TrimSpace(s)
}

// claimStrings reads a claim that providers send as an array of strings
// or, for a single value, as a plain string.
func claimStrings(claims map[string]any, name string) []string {
	out := []string{}
	switch v := claims[name].(type) {
	case string:
		if v != "" {
			out = append(out, v)
		}
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// NewGitLab returns the GitLab provider (gitlab.com or self-hosted), which
// speaks OIDC with the issuer at cfg.URL. Its groups are full paths taken
// from userinfo (the ID token carries only direct memberships), and an
// allowed group admits its subgroups.
func NewGitLab(cfg GitLabConfig, global filters.Lists, redirectURL string, client *http.Client) *OIDC {
	p := NewOIDC("gitlab", OIDCConfig{
		DisplayName: "GitLab", IssuerURL: strings.TrimSuffix(cfg.URL, "/"), ClientID: cfg.ClientID,
		ClientSecret: cfg.ClientSecret, Scopes: cfg.Scopes, GroupsClaim: "groups",
		AllowedGroups: cfg.AllowedGroups, UserClaim: "nickname",
	}, global, redirectURL, client)
	p.opts = oidcOptions{groupsFromUserInfo: true, groupPaths: true}
	return p
}
