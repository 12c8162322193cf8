// Package idp is a small but real OpenID Connect provider: discovery,
// JWKS, an authorization endpoint with a login form, a token endpoint with
// PKCE (S256) and refresh tokens, userinfo, an optional browser session
// (sessions.go), RP-Initiated Logout and Back-Channel Logout (logout.go).
// Gatehouse's demo signs in against it, and so do the end-to-end tests,
// over real HTTP.
package idp

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
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
	ID                     string
	Secret                 string   // "" = public client (PKCE required)
	RedirectURIs           []string // exact match required
	PostLogoutRedirectURIs []string // where RP-initiated logout may return to; exact match required
	BackchannelLogoutURI   string   // receives logout tokens; "" = none
}

// Config configures a Provider.
type Config struct {
	Issuer        string // e.g. "http://127.0.0.1:5556"; endpoints live under it
	Users         []User
	Clients       []Client
	TokenLifetime time.Duration // ID and access token lifetime; default 1h

	// RememberSessions keeps an IdP session in a browser cookie after a
	// login, so later authorization requests skip the form (unless
	// prompt=login). Off, the form always shows.
	RememberSessions bool
	// HTTPClient delivers back-channel logout tokens; default a client
	// with a 5 s timeout.
	HTTPClient *http.Client
}

// Provider is the OIDC provider, an http.Handler.
type Provider struct {
	issuer       string
	lifetime     time.Duration
	signer       jose.Signer // ID tokens, typ JWT
	logoutSigner jose.Signer // logout tokens, typ logout+jwt
	publicKey    *rsa.PublicKey
	jwks         []byte
	mux          *http.ServeMux
	remember     bool
	cookiePath   string
	secureCookie bool
	httpClient   *http.Client

	mu       sync.Mutex
	users    map[string]User // by subject
	clients  map[string]Client
	codes    map[string]authCode
	access   map[string]grant    // access token -> grant
	refresh  map[string]grant    // refresh token -> grant
	sessions map[string]*session // by sid
	cookies  map[string]string   // session cookie value -> sid
	results  []BackchannelResult
	failNext int
}

type authCode struct {
	clientID, redirectURI, nonce, challenge, subject, scope, sid string
	authTime, expires                                            time.Time
}

type grant struct {
	clientID, subject, scope, sid string
	authTime, expires             time.Time
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
	logoutSigner, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jwk}, (&jose.SignerOptions{}).WithType("logout+jwt"))
	if err != nil {
		return nil, err
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk.Public()}})
	if err != nil {
		return nil, err
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	p := &Provider{
		issuer: strings.TrimSuffix(cfg.Issuer, "/"), lifetime: cfg.TokenLifetime, signer: signer, logoutSigner: logoutSigner,
		publicKey: &key.PublicKey, jwks: jwks, remember: cfg.RememberSessions, httpClient: cfg.HTTPClient,
		users: map[string]User{}, clients: map[string]Client{}, codes: map[string]authCode{},
		access: map[string]grant{}, refresh: map[string]grant{}, sessions: map[string]*session{}, cookies: map[string]string{},
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
	p.cookiePath, p.secureCookie = base, u.Scheme == "https"
	if p.cookiePath == "" {
		p.cookiePath = "/"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+base+"/.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET "+base+"/keys", p.keys)
	mux.HandleFunc("GET "+base+"/auth", p.authorize)
	mux.HandleFunc("POST "+base+"/auth", p.login)
	mux.HandleFunc("POST "+base+"/token", p.token)
	mux.HandleFunc(base+"/userinfo", p.userinfo)
	mux.HandleFunc("GET "+base+"/logout", p.logout)
	mux.HandleFunc("POST "+base+"/logout", p.logout)
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
		"claims_supported":                               []string{"sub", "email", "email_verified", "name", "preferred_username", "groups", "sid", "auth_time"},
		"authorization_response_iss_parameter_supported": true,
		"end_session_endpoint":                           p.issuer + "/logout",
		"backchannel_logout_supported":                   true,
		"backchannel_logout_session_supported":           true,
		"frontchannel_logout_supported":                  false,
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

// authorize shows the login form, or, with a remembered IdP session and
// no prompt=login, answers at once with a code. prompt=none never shows the
// form: without a session it redirects with error=login_required.
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ar, problem := p.check(q)
	if problem != "" {
		p.page(w, http.StatusBadRequest, ar, problem)
		return
	}
	prompt := strings.Fields(q.Get("prompt"))
	if contains(prompt, "none") && len(prompt) > 1 {
		p.redirect(w, r, ar, url.Values{"error": {"invalid_request"}})
		return
	}
	if !contains(prompt, "login") {
		if s, ok := p.browserSession(r); ok {
			p.redirectWithCode(w, r, ar, s)
			return
		}
	}
	if contains(prompt, "none") {
		p.redirect(w, r, ar, url.Values{"error": {"login_required"}})
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
	p.redirectWithCode(w, r, ar, p.startSession(w, r, user.Subject))
}

// redirectWithCode answers an authorization request with a code bound to
// the IdP session s.
func (p *Provider) redirectWithCode(w http.ResponseWriter, r *http.Request, ar authRequest, s sessionInfo) {
	code := randomString()
	p.mu.Lock()
	p.codes[code] = authCode{clientID: ar.ClientID, redirectURI: ar.RedirectURI, nonce: ar.Nonce, challenge: ar.Challenge,
		subject: s.subject, scope: ar.Scope, sid: s.sid, authTime: s.authTime, expires: time.Now().Add(time.Minute)}
	p.mu.Unlock()
	p.redirect(w, r, ar, url.Values{"code": {code}})
}

// redirect sends the authorization response (a code or an error) with
// state and iss (RFC 9207) to the checked redirect URI.
func (p *Provider) redirect(w http.ResponseWriter, r *http.Request, ar authRequest, params url.Values) {
	target, _ := url.Parse(ar.RedirectURI)
	tq := target.Query()
	for k, v := range params {
		tq[k] = v
	}
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
	p.issue(w, c.ID, grant{subject: code.subject, scope: code.scope, sid: code.sid, authTime: code.authTime}, code.nonce)
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
	p.issue(w, c.ID, g, "") // the refreshed ID token keeps the login's sid and auth_time
}

// issue answers a token request for the login g describes (its subject,
// scope, sid and auth_time) and records that the client got tokens in that
// IdP session, so it is told when the session ends.
func (p *Provider) issue(w http.ResponseWriter, clientID string, g grant, nonce string) {
	p.mu.Lock()
	u, ok := p.users[g.subject]
	p.mu.Unlock()
	if !ok {
		tokenError(w, http.StatusBadRequest, "invalid_grant")
		return
	}
	now := time.Now()
	claims := map[string]any{
		"iss": p.issuer, "sub": u.Subject, "aud": clientID, "iat": now.Unix(), "auth_time": g.authTime.Unix(),
		"exp": now.Add(p.lifetime).Unix(), "email": u.Email, "email_verified": u.EmailVerified,
		"name": u.Name, "preferred_username": u.PreferredUsername, "groups": nonNil(u.Groups), "sid": g.sid,
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
	g.clientID = clientID
	ag, rg := g, g
	ag.expires, rg.expires = now.Add(p.lifetime), now.Add(30*24*time.Hour)
	p.mu.Lock()
	p.access[access] = ag
	p.refresh[refresh] = rg
	if s, ok := p.sessions[g.sid]; ok {
		s.clients[clientID] = true
	}
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": access, "token_type": "Bearer", "expires_in": int(p.lifetime / time.Second),
		"id_token": idToken, "refresh_token": refresh, "scope": g.scope,
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
