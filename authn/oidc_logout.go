package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/confcheck"
	"github.com/gatehouse/gatehouse/session"
)

// protocolParams are the authorization request's own parameters: neither
// prompt nor extra_auth_params may replace them, or a configuration could
// switch off PKCE, the nonce or the state that bind the sign-in.
var protocolParams = map[string]bool{
	"client_id": true, "redirect_uri": true, "response_type": true, "response_mode": true, "scope": true,
	"state": true, "nonce": true, "code_challenge": true, "code_challenge_method": true, "request": true,
	"request_uri": true, "prompt": true,
}

// promptValues are OpenID Connect Core §3.1.2.1's prompt values that
// leave sign-in interactive ("none" would make it impossible).
var promptValues = map[string]bool{"login": true, "consent": true, "select_account": true}

// authParams are the authorization request's options: nonce, PKCE and the
// configured prompt and extra parameters.
func (p *OIDC) authParams(st *loginState) []oauth2.AuthCodeOption {
	opts := []oauth2.AuthCodeOption{oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)}
	if p.cfg.Prompt != "" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", p.cfg.Prompt))
	}
	for k, v := range p.cfg.ExtraAuthParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	return opts
}

// checkAuthParams validates prompt and extra_auth_params.
func checkAuthParams(ps *confcheck.Problems, prompt string, extra map[string]string) {
	for _, v := range strings.Fields(prompt) {
		if !promptValues[v] {
			ps.Addf("prompt", "prompt value %q is not allowed; use login, consent or select_account", v)
		}
	}
	for k := range extra {
		if protocolParams[strings.ToLower(k)] {
			ps.Addf("extra_auth_params."+k, "is a parameter of the protocol itself and cannot be set here")
		}
	}
}

// BackchannelLogout reports whether the provider may end sessions through
// OpenID Connect Back-Channel Logout.
func (p *OIDC) BackchannelLogout() bool { return p.cfg.BackchannelLogout }

// backchannelEvent is the events member every logout token carries.
const backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// LogoutClaims are what a verified logout token says: end the sessions of
// provider session SID, or, without one, of Subject.
type LogoutClaims struct {
	Subject string
	SID     string
	JTI     string
	// Until is when the token stops being acceptable: its jti must stay
	// spent at least that long.
	Until time.Time
}

// logoutTokenAge is how old a logout token without exp may be: the
// specification asks receivers to refuse old ones without fixing an age.
const logoutTokenAge = 10 * time.Minute

// VerifyLogoutToken checks a logout token as OpenID Connect Back-Channel
// Logout 1.0 §2.6 requires: signed by the provider with an asymmetric
// algorithm, iss this provider, aud this client, iat present and not in
// the future, not expired (exp when present, else iat at most
// logoutTokenAge old), the back-channel logout event, a sid or a sub, a
// jti, and no nonce (so an ID token can never pass for one). An error
// wrapping ErrKeysUnavailable means it could not be checked now.
func (p *OIDC) VerifyLogoutToken(ctx context.Context, raw string, now time.Time) (LogoutClaims, error) {
	var none LogoutClaims
	d, err := p.discover(ctx)
	if err != nil {
		return none, fmt.Errorf("%w: %v", ErrKeysUnavailable, err)
	}
	// exp is optional in a logout token, so go-oidc's expiry check (which
	// requires it) is replaced by the one below.
	v := oidc.NewVerifier(p.cfg.IssuerURL, d.logoutKeys, &oidc.Config{
		ClientID: p.cfg.ClientID, SkipExpiryCheck: true, Now: func() time.Time { return now },
		SupportedSigningAlgs: algNames(asymmetricAlgs),
	})
	tok, err := v.Verify(p.clientCtx(ctx), raw)
	if errors.Is(err, ErrKeysUnavailable) {
		return none, err
	}
	if err != nil {
		return none, fmt.Errorf("logout token: %w", err)
	}
	var c struct {
		Sub    *string                    `json:"sub"`
		SID    *string                    `json:"sid"`
		JTI    string                     `json:"jti"`
		IAT    *float64                   `json:"iat"`
		EXP    *float64                   `json:"exp"`
		Nonce  any                        `json:"nonce"`
		Events map[string]json.RawMessage `json:"events"`
	}
	if err := tok.Claims(&c); err != nil {
		return none, fmt.Errorf("logout token claims: %w", err)
	}
	if c.Nonce != nil {
		return none, errors.New("logout token carries a nonce")
	}
	ev, ok := c.Events[backchannelEvent]
	if !ok || !isJSONObject(ev) {
		return none, errors.New("logout token without the back-channel logout event")
	}
	if c.JTI == "" {
		return none, errors.New("logout token without jti")
	}
	if c.IAT == nil {
		return none, errors.New("logout token without iat")
	}
	iat := time.Unix(int64(*c.IAT), 0)
	if iat.After(now.Add(iatLeeway)) {
		return none, errors.New("logout token issued in the future")
	}
	until := iat.Add(logoutTokenAge)
	if c.EXP != nil {
		exp := time.Unix(int64(*c.EXP), 0)
		if !now.Before(exp.Add(time.Minute)) {
			return none, errors.New("logout token expired")
		}
		until = exp.Add(time.Minute)
	} else if !now.Before(until) {
		return none, errors.New("logout token too old")
	}
	out := LogoutClaims{JTI: c.JTI, Until: until}
	if c.Sub != nil {
		out.Subject = *c.Sub
	}
	if c.SID != nil {
		out.SID = *c.SID
	}
	if out.Subject == "" && out.SID == "" {
		return none, errors.New("logout token names neither sid nor sub")
	}
	return out, nil
}

// EndSessionURL is where sign_out continues when the provider is set up
// for RP-initiated logout and advertises an end_session_endpoint: the
// person is signed out there too, and comes back to postLogout.
func (p *OIDC) EndSessionURL(ctx context.Context, tok *session.ProviderToken, postLogout string) (string, bool) {
	if !p.cfg.EndSession {
		return "", false
	}
	d, err := p.discover(ctx)
	if err != nil || d.endSession == "" {
		return "", false
	}
	u, err := url.Parse(d.endSession)
	// The request carries the ID token: never over plain http unless the
	// provider itself is on http (a test or loopback set-up).
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && strings.HasPrefix(p.cfg.IssuerURL, "http://"))) {
		return "", false
	}
	q := u.Query()
	q.Set("client_id", p.cfg.ClientID)
	q.Set("post_logout_redirect_uri", postLogout)
	if tok != nil && tok.IDToken != "" {
		q.Set("id_token_hint", tok.IDToken)
	}
	u.RawQuery = q.Encode()
	return u.String(), true
}

func isJSONObject(m json.RawMessage) bool {
	var o map[string]any
	return json.Unmarshal(m, &o) == nil && o != nil
}

func algNames(algs []jose.SignatureAlgorithm) []string {
	out := make([]string, len(algs))
	for i, a := range algs {
		out[i] = string(a)
	}
	return out
}
