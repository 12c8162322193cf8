package fakegoogle

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"html"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// form is Google's sign-in, reduced to one page: the account's address and
// password at once.
var form = template.Must(template.New("signin").Parse(`<!doctype html><html><head><meta charset="utf-8"><title>Sign in - Google Accounts</title></head>
<body><form method="post" action="{{.Action}}"><h1>Sign in</h1><p>to continue to the application</p>
{{if .Error}}<p id="error">{{.Error}}</p>{{end}}
{{range $k, $v := .Hidden}}<input type="hidden" name="{{$k}}" value="{{$v}}">
{{end}}<input id="identifierId" name="identifier" type="email" autocomplete="username" value="{{.Hint}}"><input id="password" name="password" type="password">
<button id="signin" type="submit">Next</button></form></body></html>`))

// authParams are the authorization request's parameters the form carries.
var authParams = []string{"client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge",
	"code_challenge_method", "access_type", "prompt", "hd", "login_hint"}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// SignIn is the browser's part for an HTTP client: it opens authURL (the
// authorization request), fills in the sign-in form as email and returns
// where Google sends the browser back (the callback URL with code and
// state). client's redirect policy is not used.
func SignIn(client *http.Client, authURL, email, password string) (string, error) {
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(authURL)
	if err != nil {
		return "", err
	}
	page, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("authorization page: status %d %v", resp.StatusCode, err)
	}
	form := url.Values{"identifier": {email}, "password": {password}}
	for _, m := range hiddenInput.FindAllStringSubmatch(string(page), -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	u, err := url.Parse(authURL)
	if err != nil {
		return "", err
	}
	u.RawQuery = ""
	resp, err = c.PostForm(u.String(), form)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return "", fmt.Errorf("sign-in form: status %d", resp.StatusCode)
	}
	return resp.Header.Get("Location"), nil
}

// checkAuthRequest returns Google's error for a bad authorization request.
func (s *Server) checkAuthRequest(v url.Values) string {
	switch {
	case v.Get("client_id") != s.cfg.ClientID:
		return "Error 401: invalid_client. The OAuth client was not found."
	case !contains(s.cfg.RedirectURIs, v.Get("redirect_uri")):
		return "Error 400: redirect_uri_mismatch"
	case v.Get("response_type") != "code":
		return "Error 400: unsupported_response_type"
	case !contains(strings.Fields(v.Get("scope")), "openid"):
		return "Error 400: invalid_scope"
	}
	return ""
}

func (s *Server) authorizePage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	s.authReqs = append(s.authReqs, q)
	s.mu.Unlock()
	if msg := s.checkAuthRequest(q); msg != "" {
		w.WriteHeader(http.StatusBadRequest)
		_ = form.Execute(w, map[string]any{"Error": msg, "Action": AuthPath})
		return
	}
	hidden := map[string]string{}
	for _, k := range authParams {
		if q.Has(k) {
			hidden[k] = q.Get(k)
		}
	}
	_ = form.Execute(w, map[string]any{"Hidden": hidden, "Hint": q.Get("login_hint"), "Action": AuthPath})
}

// signIn checks the form's credentials and sends the browser back with a
// code and the parameters Google adds (scope, authuser, hd, prompt, iss).
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	f := r.PostForm
	if msg := s.checkAuthRequest(f); msg != "" {
		w.WriteHeader(http.StatusBadRequest)
		_ = form.Execute(w, map[string]any{"Error": msg, "Action": AuthPath})
		return
	}
	s.mu.Lock()
	u, ok := s.users[strings.ToLower(f.Get("identifier"))]
	s.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare([]byte(u.Password), []byte(f.Get("password"))) != 1 {
		w.WriteHeader(http.StatusUnauthorized)
		hidden := map[string]string{}
		for _, k := range authParams {
			if f.Has(k) {
				hidden[k] = f.Get(k)
			}
		}
		_ = form.Execute(w, map[string]any{"Error": "Wrong password. Try again.", "Hidden": hidden, "Action": AuthPath})
		return
	}
	c := random()
	consent := contains(strings.Fields(f.Get("prompt")), "consent")
	s.mu.Lock()
	s.codes[c] = code{grant: grant{email: u.Email, scope: f.Get("scope")}, redirectURI: f.Get("redirect_uri"),
		challenge: f.Get("code_challenge"), nonce: f.Get("nonce"), offline: f.Get("access_type") == "offline",
		consent: consent || !s.consented[strings.ToLower(u.Email)], expires: time.Now().Add(10 * time.Minute)}
	s.mu.Unlock()
	target, _ := url.Parse(f.Get("redirect_uri"))
	q := target.Query()
	q.Set("state", f.Get("state"))
	q.Set("code", c)
	q.Set("scope", "email profile openid https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile")
	q.Set("authuser", "0")
	if u.HostedDomain != "" {
		q.Set("hd", u.HostedDomain)
	}
	q.Set("prompt", map[bool]string{true: "consent", false: "none"}[consent])
	q.Set("iss", s.issuer(r))
	target.RawQuery = q.Encode()
	http.Redirect(w, r, target.String(), http.StatusFound)
}

// token is Google's token endpoint: codes, refresh tokens and the
// service account's JWT-bearer assertions.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "Bad Request")
		return
	}
	f := r.PostForm
	if f.Get("grant_type") == jwtBearer {
		s.jwtBearer(w, r)
		return
	}
	id, secret, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = f.Get("client_id"), f.Get("client_secret")
	}
	if id != s.cfg.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(s.cfg.ClientSecret)) != 1 {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "Unauthorized")
		return
	}
	switch f.Get("grant_type") {
	case "authorization_code":
		s.mu.Lock()
		c, ok := s.codes[f.Get("code")]
		delete(s.codes, f.Get("code"))
		s.mu.Unlock()
		sum := sha256.Sum256([]byte(f.Get("code_verifier")))
		if !ok || time.Now().After(c.expires) || c.redirectURI != f.Get("redirect_uri") ||
			(c.challenge != "" && base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge) {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "Malformed auth code.")
			return
		}
		// Google hands out a refresh token for offline access only when
		// the user is asked for consent: the first time, or prompt=consent.
		s.issue(w, r, c.grant, c.nonce, c.offline && c.consent)
	case "refresh_token":
		s.mu.Lock()
		g, ok := s.refresh[f.Get("refresh_token")]
		s.mu.Unlock()
		if !ok {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "Token has been expired or revoked.")
			return
		}
		s.issue(w, r, g, "", false)
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: "+f.Get("grant_type"))
	}
}

// issue answers a user's token request with Google's fields and an ID token.
func (s *Server) issue(w http.ResponseWriter, r *http.Request, g grant, nonce string, withRefresh bool) {
	s.mu.Lock()
	u, ok := s.users[strings.ToLower(g.email)]
	s.mu.Unlock()
	if !ok {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Account deleted.")
		return
	}
	access := "ya29." + random()
	g.expires = time.Now().Add(time.Hour)
	resp := map[string]any{"access_token": access, "expires_in": 3599, "token_type": "Bearer", "scope": g.scope}
	s.mu.Lock()
	s.access[access] = g
	if withRefresh {
		rt := "1//" + random()
		s.refresh[rt] = g
		s.consented[strings.ToLower(u.Email)] = true
		resp["refresh_token"] = rt
	}
	s.mu.Unlock()
	now := time.Now()
	sum := sha256.Sum256([]byte(access))
	claims := map[string]any{
		"iss": s.issuer(r), "azp": s.cfg.ClientID, "aud": s.cfg.ClientID, "sub": u.Subject,
		"email": u.Email, "email_verified": !u.EmailUnverified, "at_hash": base64.RawURLEncoding.EncodeToString(sum[:16]),
		"name": u.Name, "picture": "https://lh3.googleusercontent.com/a/fake", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	if u.HostedDomain != "" {
		claims["hd"] = u.HostedDomain
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	if given, family, ok := strings.Cut(u.Name, " "); ok {
		claims["given_name"], claims["family_name"] = given, family
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: signingKey(), KeyID: keyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "internal_failure", err.Error())
		return
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "internal_failure", err.Error())
		return
	}
	resp["id_token"] = raw
	w.Header().Set("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate")
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) userInfo(w http.ResponseWriter, r *http.Request) {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	g, ok := s.access[tok]
	u, userOK := s.users[strings.ToLower(g.email)]
	s.mu.Unlock()
	if !ok || !userOK || g.account != "" || time.Now().After(g.expires) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_request", "error_description": "Invalid Credentials"})
		return
	}
	info := map[string]any{"sub": u.Subject, "name": u.Name, "picture": "https://lh3.googleusercontent.com/a/fake",
		"email": u.Email, "email_verified": !u.EmailUnverified}
	if u.HostedDomain != "" {
		info["hd"] = u.HostedDomain
	}
	writeJSON(w, http.StatusOK, info)
}
