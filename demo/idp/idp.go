// Package idp is a small but real OpenID Connect provider: discovery,
// JWKS, an authorization endpoint with a login form, a token endpoint with
// PKCE (S256) and refresh tokens, and userinfo. Gatehouse's demo signs in
// against it, and so do the end-to-end tests, over real HTTP.
package idp

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// User is an account of the provider.
type User struct {
	Subject           string
	Email             string
	EmailVerified     bool
	Name              string
	PreferredUsername string
	Groups            []string
	Password          string // what the login form must receive
}

// Client is a registered relying party.
type Client struct {
	ID           string
	Secret       string   // "" = public client (PKCE required)
	RedirectURIs []string // exact match required
}

// Config configures a Provider.
type Config struct {
	Issuer        string // e.g. "http://127.0.0.1:5556"; endpoints live under it
	Users         []User
	Clients       []Client
	TokenLifetime time.Duration // ID and access token lifetime; default 1h
}

// Provider is the OIDC provider, an http.Handler.
type Provider struct {
	issuer   string
	lifetime time.Duration
	signer   jose.Signer
	jwks     []byte
	mux      *http.ServeMux

	mu       sync.Mutex
	users    map[string]User // by subject
	clients  map[string]Client
	codes    map[string]authCode
	access   map[string]grant // access token -> grant
	refresh  map[string]grant // refresh token -> grant
	failNext int
}

type authCode struct {
	clientID, redirectURI, nonce, challenge, subject, scope string
	expires                                                 time.Time
}

type grant struct {
	clientID, subject, scope string
	expires                  time.Time
}

// New returns a Provider with a fresh RS256 signing key.
func New(cfg Config) (*Provider, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("idp: Issuer is required")
	}
	if cfg.TokenLifetime == 0 {
		cfg.TokenLifetime = time.Hour
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	jwk := jose.JSONWebKey{Key: key, KeyID: "idp-1", Algorithm: string(jose.RS256), Use: "sig"}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jwk}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk.Public()}})
	if err != nil {
		return nil, err
	}
	p := &Provider{
		issuer: strings.TrimSuffix(cfg.Issuer, "/"), lifetime: cfg.TokenLifetime, signer: signer, jwks: jwks,
		users: map[string]User{}, clients: map[string]Client{}, codes: map[string]authCode{},
		access: map[string]grant{}, refresh: map[string]grant{},
	}
	for _, u := range cfg.Users {
		p.users[u.Subject] = u
	}
	for _, c := range cfg.Clients {
		p.clients[c.ID] = c
	}
	u, err := url.Parse(p.issuer)
	if err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(u.Path, "/")
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+base+"/.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET "+base+"/keys", p.keys)
	mux.HandleFunc("GET "+base+"/auth", p.authorize)
	mux.HandleFunc("POST "+base+"/auth", p.login)
	mux.HandleFunc("POST "+base+"/token", p.token)
	mux.HandleFunc(base+"/userinfo", p.userinfo)
	p.mux = mux
	return p, nil
}

func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.mux.ServeHTTP(w, r) }

// SetUser adds or replaces a user (tests change groups with it).
func (p *Provider) SetUser(u User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.users[u.Subject] = u
}

// RemoveUser deletes a user: their tokens stop working.
func (p *Provider) RemoveUser(subject string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.users, subject)
}

// RevokeTokens ends every access and refresh token of a user.
func (p *Provider) RevokeTokens(subject string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for t, g := range p.access {
		if g.subject == subject {
			delete(p.access, t)
		}
	}
	for t, g := range p.refresh {
		if g.subject == subject {
			delete(p.refresh, t)
		}
	}
}

// FailNext makes the next n token or userinfo requests answer 500.
func (p *Provider) FailNext(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failNext = n
}

func (p *Provider) failing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failNext > 0 {
		p.failNext--
		return true
	}
	return false
}

func (p *Provider) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                         p.issuer,
		"authorization_endpoint":                         p.issuer + "/auth",
		"token_endpoint":                                 p.issuer + "/token",
		"userinfo_endpoint":                              p.issuer + "/userinfo",
		"jwks_uri":                                       p.issuer + "/keys",
		"response_types_supported":                       []string{"code"},
		"subject_types_supported":                        []string{"public"},
		"id_token_signing_alg_values_supported":          []string{"RS256"},
		"scopes_supported":                               []string{"openid", "profile", "email", "groups", "offline_access"},
		"token_endpoint_auth_methods_supported":          []string{"client_secret_basic", "client_secret_post", "none"},
		"code_challenge_methods_supported":               []string{"S256"},
		"grant_types_supported":                          []string{"authorization_code", "refresh_token"},
		"claims_supported":                               []string{"sub", "email", "email_verified", "name", "preferred_username", "groups"},
		"authorization_response_iss_parameter_supported": true,
	})
}

func (p *Provider) keys(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(p.jwks)
}

// authRequest is an authorization request, as the form carries it along.
type authRequest struct {
	ClientID, RedirectURI, State, Nonce, Scope, Challenge string
}

func readAuthRequest(v url.Values) authRequest {
	return authRequest{
		ClientID: v.Get("client_id"), RedirectURI: v.Get("redirect_uri"), State: v.Get("state"),
		Nonce: v.Get("nonce"), Scope: v.Get("scope"), Challenge: v.Get("code_challenge"),
	}
}

// check validates a request; problems are shown, never redirected, since
// the redirect URI itself may be what is wrong.
func (p *Provider) check(v url.Values) (authRequest, string) {
	ar := readAuthRequest(v)
	p.mu.Lock()
	c, ok := p.clients[ar.ClientID]
	p.mu.Unlock()
	switch {
	case !ok:
		return ar, "unknown client_id"
	case !contains(c.RedirectURIs, ar.RedirectURI):
		return ar, "redirect_uri is not registered for this client"
	case v.Get("response_type") != "code":
		return ar, "response_type must be code"
	case !contains(strings.Fields(ar.Scope), "openid"):
		return ar, "scope must include openid"
	case ar.State == "":
		return ar, "state is required"
	case ar.Challenge == "" || v.Get("code_challenge_method") != "S256":
		return ar, "PKCE with code_challenge_method=S256 is required"
	}
	return ar, ""
}

func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ar, problem := p.check(q)
	if problem != "" {
		p.page(w, http.StatusBadRequest, ar, problem)
		return
	}
	p.page(w, http.StatusOK, ar, "")
}

func (p *Provider) login(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	f := r.PostForm
	ar, problem := p.check(f)
	if problem != "" {
		p.page(w, http.StatusBadRequest, ar, problem)
		return
	}
	user, ok := p.authenticate(f.Get("username"), f.Get("password"))
	if !ok {
		p.page(w, http.StatusUnauthorized, ar, badLogin)
		return
	}
	code := randomString()
	p.mu.Lock()
	p.codes[code] = authCode{clientID: ar.ClientID, redirectURI: ar.RedirectURI, nonce: ar.Nonce, challenge: ar.Challenge,
		subject: user.Subject, scope: ar.Scope, expires: time.Now().Add(time.Minute)}
	p.mu.Unlock()
	target, _ := url.Parse(ar.RedirectURI)
	tq := target.Query()
	tq.Set("code", code)
	tq.Set("state", ar.State)
	tq.Set("iss", p.issuer) // RFC 9207
	target.RawQuery = tq.Encode()
	http.Redirect(w, r, target.String(), http.StatusFound)
}

func (p *Provider) authenticate(name, password string) (User, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range p.users {
		if (strings.EqualFold(name, u.Email) || strings.EqualFold(name, u.PreferredUsername)) &&
			subtle.ConstantTimeCompare([]byte(password), []byte(u.Password)) == 1 {
			return u, true
		}
	}
	return User{}, false
}

func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if p.failing() {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	if err := r.ParseForm(); err != nil {
		tokenError(w, http.StatusBadRequest, "invalid_request")
		return
	}
	clientID, secret, basic := r.BasicAuth()
	if basic {
		clientID, _ = url.QueryUnescape(clientID)
		secret, _ = url.QueryUnescape(secret)
	} else {
		clientID, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	p.mu.Lock()
	c, ok := p.clients[clientID]
	p.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1 {
		tokenError(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		p.exchange(w, r, c)
	case "refresh_token":
		p.refreshGrant(w, r, c)
	default:
		tokenError(w, http.StatusBadRequest, "unsupported_grant_type")
	}
}

func (p *Provider) exchange(w http.ResponseWriter, r *http.Request, c Client) {
	f := r.PostForm
	p.mu.Lock()
	code, ok := p.codes[f.Get("code")]
	delete(p.codes, f.Get("code")) // single use, even when the rest fails
	p.mu.Unlock()
	sum := sha256.Sum256([]byte(f.Get("code_verifier")))
	switch {
	case !ok || time.Now().After(code.expires) || code.clientID != c.ID || code.redirectURI != f.Get("redirect_uri"):
		tokenError(w, http.StatusBadRequest, "invalid_grant")
		return
	case base64.RawURLEncoding.EncodeToString(sum[:]) != code.challenge:
		tokenError(w, http.StatusBadRequest, "invalid_grant")
		return
	}
	p.issue(w, c.ID, code.subject, code.scope, code.nonce)
}

func (p *Provider) refreshGrant(w http.ResponseWriter, r *http.Request, c Client) {
	rt := r.PostForm.Get("refresh_token")
	p.mu.Lock()
	g, ok := p.refresh[rt]
	_, userOK := p.users[g.subject]
	if ok {
		delete(p.refresh, rt) // rotate
	}
	p.mu.Unlock()
	if !ok || !userOK || g.clientID != c.ID {
		tokenError(w, http.StatusBadRequest, "invalid_grant")
		return
	}
	p.issue(w, c.ID, g.subject, g.scope, "")
}

func (p *Provider) issue(w http.ResponseWriter, clientID, subject, scope, nonce string) {
	p.mu.Lock()
	u, ok := p.users[subject]
	p.mu.Unlock()
	if !ok {
		tokenError(w, http.StatusBadRequest, "invalid_grant")
		return
	}
	now := time.Now()
	claims := map[string]any{
		"iss": p.issuer, "sub": u.Subject, "aud": clientID, "iat": now.Unix(), "auth_time": now.Unix(),
		"exp": now.Add(p.lifetime).Unix(), "email": u.Email, "email_verified": u.EmailVerified,
		"name": u.Name, "preferred_username": u.PreferredUsername, "groups": nonNil(u.Groups),
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	idToken, err := jwt.Signed(p.signer).Claims(claims).Serialize()
	if err != nil {
		tokenError(w, http.StatusInternalServerError, "server_error")
		return
	}
	access, refresh := randomString(), randomString()
	g := grant{clientID: clientID, subject: subject, scope: scope, expires: now.Add(p.lifetime)}
	p.mu.Lock()
	p.access[access] = g
	p.refresh[refresh] = grant{clientID: clientID, subject: subject, scope: scope, expires: now.Add(30 * 24 * time.Hour)}
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": access, "token_type": "Bearer", "expires_in": int(p.lifetime / time.Second),
		"id_token": idToken, "refresh_token": refresh, "scope": scope,
	})
}

func (p *Provider) userinfo(w http.ResponseWriter, r *http.Request) {
	if p.failing() {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	p.mu.Lock()
	g, ok := p.access[tok]
	u, userOK := p.users[g.subject]
	p.mu.Unlock()
	if !strings.EqualFold(scheme, "Bearer") || !ok || !userOK || time.Now().After(g.expires) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"sub": u.Subject, "email": u.Email, "email_verified": u.EmailVerified, "name": u.Name,
		"preferred_username": u.PreferredUsername, "groups": nonNil(u.Groups),
	})
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Demo sign-in</title>
<style>
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:#eef1f5;font:16px/1.5 system-ui,sans-serif;color:#1d2329;padding:16px}
form{background:#fff;border-radius:12px;padding:28px 24px;width:100%;max-width:360px;box-shadow:0 2px 12px rgba(0,0,0,.08)}
h1{font-size:1.3rem;margin:0 0 1rem}label{display:block;margin:.6rem 0 .2rem;font-size:.9rem}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.6rem;border:1px solid #b8c0c8;border-radius:8px;font:inherit}
button{width:100%;margin-top:1rem;padding:.7rem;border:0;border-radius:8px;background:#6b3fd4;color:#fff;font:inherit;font-weight:600}
.bad{color:#b3261e}
</style></head><body>
<form method="post" action="{{.Action}}">
<h1>Demo sign-in</h1>
{{if .Error}}<p class="bad" id="idp-error">{{.Error}}</p>{{end}}
{{if .Usable}}
<input type="hidden" name="client_id" value="{{.Req.ClientID}}">
<input type="hidden" name="redirect_uri" value="{{.Req.RedirectURI}}">
<input type="hidden" name="state" value="{{.Req.State}}">
<input type="hidden" name="nonce" value="{{.Req.Nonce}}">
<input type="hidden" name="scope" value="{{.Req.Scope}}">
<input type="hidden" name="code_challenge" value="{{.Req.Challenge}}">
<input type="hidden" name="code_challenge_method" value="S256">
<input type="hidden" name="response_type" value="code">
<label for="username">E-mail or user name</label>
<input type="text" id="username" name="username" autocomplete="username" autofocus>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password">
<button type="submit" id="login">Sign in</button>
{{end}}
</form></body></html>`))

const badLogin = "Invalid username or password"

// page shows the login form; for a malformed request it shows only the
// problem, since the form would post it back to the same broken place.
func (p *Provider) page(w http.ResponseWriter, status int, ar authRequest, problem string) {
	usable := problem == "" || problem == badLogin
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = loginPage.Execute(w, map[string]any{"Action": p.issuer + "/auth", "Req": ar, "Error": problem, "Usable": usable})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func tokenError(w http.ResponseWriter, status int, code string) {
	writeJSON(w, status, map[string]string{"error": code})
}

func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
