package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/session"
)

// clientAssertionType is RFC 7523's client authentication with a JWT, the
// way Entra takes a federated credential (workload identity federation).
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// msTokenResponse is the v2.0 token endpoint's answer.
type msTokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	// ExpiresIn is a number; json.Number also takes the string some
	// proxies turn it into.
	ExpiresIn json.Number `json:"expires_in"`
	IDToken   string      `json:"id_token"`
}

func (t *msTokenResponse) providerToken() *session.ProviderToken {
	pt := &session.ProviderToken{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken}
	if n, err := t.ExpiresIn.Int64(); err == nil && n > 0 {
		pt.Expiry = time.Now().Add(time.Duration(n) * time.Second)
	}
	return pt
}

// msTokenError is a token request the endpoint refused.
type msTokenError struct {
	Status int
	Code   string // the OAuth error code; Entra's AADSTS detail is not kept (it names the user)
}

func (e *msTokenError) Error() string { return fmt.Sprintf("status %d: %s", e.Status, e.Code) }

// userRefused reports whether the refusal is about the user's grant
// (revoked, expired, needs a fresh interactive sign-in), which ends the
// session, rather than about Gatehouse's own credentials or an outage,
// which must not sign everybody out.
func (e *msTokenError) userRefused() bool {
	switch e.Code {
	case "invalid_grant", "interaction_required", "login_required", "consent_required":
		return e.Status < 500
	}
	return false
}

// token makes a token request (code exchange or refresh) with the client's
// credentials. golang.org/x/oauth2 is not used for it: its refresh can
// carry neither the scope Entra's v2.0 endpoint asks for nor a client
// assertion.
func (m *Microsoft) token(ctx context.Context, d *msDiscovered, form url.Values) (*msTokenResponse, error) {
	form.Set("client_id", m.cfg.ClientID)
	form.Set("scope", strings.Join(m.cfg.Scopes, " "))
	if m.cfg.ClientAssertionFile != "" {
		// Read at every request: the kubelet replaces the projected token
		// well before it expires, and an expired one is refused.
		a, err := readClientAssertion(m.cfg.ClientAssertionFile)
		if err != nil {
			return nil, err
		}
		form.Set("client_assertion_type", clientAssertionType)
		form.Set("client_assertion", a)
	} else {
		form.Set("client_secret", m.cfg.ClientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, redactURLError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		return nil, &msTokenError{Status: resp.StatusCode, Code: truncate(e.Error, 64)}
	}
	var t msTokenResponse
	if err := json.Unmarshal(body, &t); err != nil {
		return nil, fmt.Errorf("token response: %w", err)
	}
	if t.AccessToken == "" {
		return nil, errors.New("token response without access_token")
	}
	return &t, nil
}

func readClientAssertion(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("client assertion: %w", err)
	}
	a := strings.TrimSpace(string(b))
	if a == "" {
		return "", errors.New("client assertion file is empty")
	}
	return a, nil
}

// msClaimError is an ID token, properly signed, whose claims are not
// acceptable here (tenant, issuer, subject). tenant: the token is fine but
// its tenant may not sign in.
type msClaimError struct {
	msg    string
	tenant bool
}

func (e *msClaimError) Error() string { return e.msg }

func claimErrorf(format string, args ...any) error {
	return &msClaimError{msg: fmt.Sprintf(format, args...)}
}

func tenantRefused(format string, args ...any) error {
	return &msClaimError{msg: fmt.Sprintf(format, args...), tenant: true}
}

// verifyIDToken verifies raw and returns its claims. go-oidc checks the
// signature, aud and exp/nbf (its issuer check is off: see discover);
// this adds what Entra needs: tid must be an allowed tenant and iss
// exactly the issuer of that tenant, so a token from any other tenant's
// directory, signed with the same common keys, cannot pass for one.
func (m *Microsoft) verifyIDToken(ctx context.Context, d *msDiscovered, raw, accessToken string) (map[string]any, error) {
	idt, err := d.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return nil, err
	}
	tid := claimString(claims, "tid")
	switch {
	case !tenantGUID.MatchString(tid):
		return nil, claimErrorf("tid %q is not a tenant id", tid)
	case tid == consumersTenantID:
		return nil, tenantRefused("personal Microsoft account (tid %s)", tid)
	case d.tenantID != "" && tid != d.tenantID:
		return nil, tenantRefused("tid %s is not the configured tenant", tid)
	case len(m.allowed) > 0 && !m.allowed[tid]:
		return nil, tenantRefused("tid %s is not in allowed_tenants", tid)
	}
	if want := strings.Replace(d.issuer, "{tenantid}", tid, 1); idt.Issuer != want {
		return nil, claimErrorf("iss %q is not %q, the issuer of the token's tenant", idt.Issuer, want)
	}
	if !tenantGUID.MatchString(claimString(claims, "oid")) {
		return nil, claimErrorf("no oid claim (the profile scope is needed)")
	}
	if idt.IssuedAt.IsZero() || idt.IssuedAt.After(time.Now().Add(iatLeeway)) {
		return nil, claimErrorf("iat missing or in the future")
	}
	// With several audiences, azp must name this client; wherever it is
	// present it must (OpenID Connect Core §3.1.3.7 items 3-5).
	azp, hasAZP := claims["azp"].(string)
	if (len(idt.Audience) > 1 && !hasAZP) || (hasAZP && azp != m.cfg.ClientID) {
		return nil, claimErrorf("azp does not name this client")
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(accessToken); err != nil {
			return nil, claimErrorf("at_hash: %v", err)
		}
	}
	return claims, nil
}
