package idp

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// backchannelEvent is the member of a logout token's events claim that
// makes it one (OIDC Back-Channel Logout 1.0, section 2.4).
const backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// BackchannelResult records one back-channel logout delivery.
type BackchannelResult struct {
	ClientID string
	URL      string // the client's BackchannelLogoutURI
	Subject  string // sub of the logout token
	SID      string // sid of the logout token
	Status   int    // HTTP status of the answer; 0 when Err is set
	Err      error  // transport error, if the request failed
}

// logout is the end_session_endpoint (OIDC RP-Initiated Logout 1.0). It
// checks the request before ending anything: an invalid id_token_hint,
// unknown client or unregistered post_logout_redirect_uri gets an error
// page and no redirect. Then it ends the browser's IdP session and the one
// the hint's sid names, sends back-channel logout tokens, and redirects to
// post_logout_redirect_uri (with state) or shows a signed-out page.
func (p *Provider) logout(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		p.logoutPage(w, http.StatusBadRequest, "The logout request is malformed.")
		return
	}
	v := r.Form
	var hint *hintClaims
	if raw := v.Get("id_token_hint"); raw != "" {
		h, err := p.parseHint(raw)
		if err != nil {
			p.logoutPage(w, http.StatusBadRequest, "The id_token_hint is not valid: "+err.Error())
			return
		}
		hint = &h
	}
	clientID := v.Get("client_id")
	p.mu.Lock()
	client, known := p.clients[clientID]
	if clientID == "" && hint != nil {
		for _, aud := range hint.Audience {
			if client, known = p.clients[aud]; known {
				break
			}
		}
	}
	p.mu.Unlock()
	target := v.Get("post_logout_redirect_uri")
	switch {
	case clientID != "" && !known:
		p.logoutPage(w, http.StatusBadRequest, "Unknown client_id.")
		return
	case clientID != "" && hint != nil && !hint.Audience.Contains(clientID):
		p.logoutPage(w, http.StatusBadRequest, "The client_id does not match the id_token_hint.")
		return
	case target != "" && (!known || !contains(client.PostLogoutRedirectURIs, target)):
		p.logoutPage(w, http.StatusBadRequest, "The post_logout_redirect_uri is not registered for this client.")
		return
	}

	var ended []endedSession
	p.mu.Lock()
	if s := p.cookieSessionLocked(r); s != nil {
		ended = append(ended, p.endLocked(s))
	}
	if hint != nil {
		if s, ok := p.sessions[hint.SID]; ok && s.subject == hint.Subject {
			ended = append(ended, p.endLocked(s))
		}
	}
	p.mu.Unlock()
	p.clearCookie(w, r)
	_ = p.notify(ended) // failures are recorded in BackchannelResults

	if target == "" {
		p.logoutPage(w, http.StatusOK, "")
		return
	}
	u, err := url.Parse(target)
	if err != nil {
		p.logoutPage(w, http.StatusOK, "")
		return
	}
	if state := v.Get("state"); state != "" {
		q := u.Query()
		q.Set("state", state)
		u.RawQuery = q.Encode()
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

type hintClaims struct {
	jwt.Claims
	SID string `json:"sid"`
}

// parseHint accepts an ID token this provider signed for a registered
// client. Its expiry is not checked: RP-Initiated Logout 1.0 (section 2)
// lets the OP accept an expired hint, which is the common case.
func (p *Provider) parseHint(raw string) (hintClaims, error) {
	var c hintClaims
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return c, errors.New("not a signed JWT")
	}
	if len(tok.Headers) != 1 || tok.Headers[0].ExtraHeaders[jose.HeaderType] != "JWT" {
		return c, errors.New("not an ID token")
	}
	if err := tok.Claims(p.publicKey, &c); err != nil {
		return c, errors.New("not signed by this provider")
	}
	if c.Issuer != p.issuer {
		return c, errors.New("wrong issuer")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, aud := range c.Audience {
		if _, ok := p.clients[aud]; ok {
			return c, nil
		}
	}
	return c, errors.New("audience is not a registered client")
}

// LogoutToken mints a logout token (OIDC Back-Channel Logout 1.0, section
// 2.4) for the client without sending it: typ logout+jwt; claims iss, aud,
// iat, exp (in two minutes), jti, events and, when not empty, sub and sid;
// never a nonce. The client is not looked up, and subject and sid may both
// be empty, so tests can also mint tokens a relying party must refuse.
func (p *Provider) LogoutToken(clientID, subject, sid string) (string, error) {
	if clientID == "" {
		return "", errors.New("idp: LogoutToken needs a client ID")
	}
	now := time.Now()
	claims := map[string]any{
		"iss": p.issuer, "aud": clientID, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti": randomString(), "events": map[string]any{backchannelEvent: map[string]any{}},
	}
	if subject != "" {
		claims["sub"] = subject
	}
	if sid != "" {
		claims["sid"] = sid
	}
	return jwt.Signed(p.logoutSigner).Claims(claims).Serialize()
}

// notify sends a logout token for each ended session to each client that
// received tokens in it and has a BackchannelLogoutURI, one after another,
// and returns the failures (transport errors and non-2xx answers).
func (p *Provider) notify(ended []endedSession) error {
	var errs []error
	for _, e := range ended {
		for _, id := range e.clients {
			p.mu.Lock()
			c, ok := p.clients[id]
			p.mu.Unlock()
			if !ok || c.BackchannelLogoutURI == "" {
				continue
			}
			res := p.deliver(c, e.subject, e.sid)
			p.mu.Lock()
			p.results = append(p.results, res)
			p.mu.Unlock()
			switch {
			case res.Err != nil:
				errs = append(errs, fmt.Errorf("idp: back-channel logout to %s: %w", c.ID, res.Err))
			case res.Status < 200 || res.Status > 299:
				errs = append(errs, fmt.Errorf("idp: back-channel logout to %s: HTTP %d", c.ID, res.Status))
			}
		}
	}
	return errors.Join(errs...)
}

// deliver POSTs a fresh logout token to the client's back-channel URI.
func (p *Provider) deliver(c Client, subject, sid string) BackchannelResult {
	res := BackchannelResult{ClientID: c.ID, URL: c.BackchannelLogoutURI, Subject: subject, SID: sid}
	tok, err := p.LogoutToken(c.ID, subject, sid)
	if err != nil {
		res.Err = err
		return res
	}
	form := url.Values{"logout_token": {tok}}.Encode()
	req, err := http.NewRequest(http.MethodPost, c.BackchannelLogoutURI, strings.NewReader(form))
	if err != nil {
		res.Err = err
		return res
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.httpClient.Do(req)
	if err != nil {
		res.Err = err
		return res
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	res.Status = resp.StatusCode
	return res
}

// BackchannelResults returns every back-channel logout delivery so far, in
// order.
func (p *Provider) BackchannelResults() []BackchannelResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]BackchannelResult(nil), p.results...)
}
