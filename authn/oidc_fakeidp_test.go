package authn

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// This file holds a small OpenID Connect provider for the OIDC tests: a
// real HTTP server with discovery, JWKS, an authorization endpoint that
// approves at once, a token endpoint (authorization code with PKCE, and
// refresh) and userinfo. Its ID tokens are signed with go-jose; tests edit
// the claims before signing to produce the tokens a faulty or hostile
// provider might send.

const (
	fakeClientID = "gatehouse"
	fakeSecret   = "s3cret-of-the-client"
	fakeSubject  = "u-1"
	fakeEmail    = "alice@example.com"
)

// The RSA keys are made once: generating them is the slow part.
var fakeKeys = sync.OnceValue(func() [2]*rsa.PrivateKey {
	var keys [2]*rsa.PrivateKey
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		keys[i] = k
	}
	return keys
})

type fakeCode struct {
	redirectURI, nonce, challenge string
}

// fakeIDP is the test provider.
type fakeIDP struct {
	t      *testing.T
	srv    *httptest.Server
	issuer string

	mu       sync.Mutex
	codes    map[string]fakeCode
	access   map[string]bool
	refresh  map[string]bool
	issued   []string // every code and token handed out
	redirect string   // the one registered redirect URI

	// Scripting, set by tests before the flow runs.
	emailVerified any                                  // claim value; nil: omitted
	idToken       func(c map[string]any, refresh bool) // edits ID token claims before signing
	userInfo      func(c map[string]any)               // edits the userinfo answer
	userInfoCode  int                                  // non-zero: userinfo answers with this status
	otherKey      bool                                 // sign with a key the JWKS does not list
	endSession    string                               // end_session_endpoint to advertise; "": none
	keyFetches    int                                  // GET /keys answered
	refreshNoID   bool                                 // refresh answers without an id_token
}

// newFakeIDP starts a provider. issuer "" means the server's own URL;
// another issuer is served through the client from fakeIDP.client.
func newFakeIDP(t *testing.T, issuer, redirect string) *fakeIDP {
	t.Helper()
	f := &fakeIDP{t: t, codes: map[string]fakeCode{}, access: map[string]bool{}, refresh: map[string]bool{},
		redirect: redirect, emailVerified: true}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", f.discovery)
	mux.HandleFunc("GET /keys", f.keys)
	mux.HandleFunc("GET /authorize", f.authorize)
	mux.HandleFunc("POST /token", f.token)
	mux.HandleFunc("GET /userinfo", f.userinfo)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	f.issuer = issuer
	if f.issuer == "" {
		f.issuer = f.srv.URL
	}
	return f
}

// client reaches the provider, whatever host its issuer names.
func (f *fakeIDP) client() *http.Client {
	target, _ := url.Parse(f.srv.URL)
	return &http.Client{
		Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
			r = r.Clone(r.Context())
			r.URL.Scheme, r.URL.Host = target.Scheme, target.Host
			return http.DefaultTransport.RoundTrip(r)
		}),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (rt roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return rt(r) }

func (f *fakeIDP) set(fn func(f *fakeIDP)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// secrets returns every code and token the provider handed out.
func (f *fakeIDP) secrets() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.issued...)
}

func (f *fakeIDP) discovery(w http.ResponseWriter, _ *http.Request) {
	fakeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                         f.issuer,
		"authorization_endpoint":                         f.issuer + "/authorize",
		"token_endpoint":                                 f.issuer + "/token",
		"userinfo_endpoint":                              f.issuer + "/userinfo",
		"jwks_uri":                                       f.issuer + "/keys",
		"response_types_supported":                       []string{"code"},
		"subject_types_supported":                        []string{"public"},
		"id_token_signing_alg_values_supported":          []string{"RS256"},
		"code_challenge_methods_supported":               []string{"S256"},
		"authorization_response_iss_parameter_supported": true,
		"end_session_endpoint":                           f.endSession,
	})
}

func (f *fakeIDP) keys(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	f.keyFetches++
	f.mu.Unlock()
	jwk := jose.JSONWebKey{Key: &fakeKeys()[0].PublicKey, KeyID: "k1", Algorithm: string(jose.RS256), Use: "sig"}
	fakeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
}

// authorize approves at once and sends the browser back with a code.
func (f *fakeIDP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != fakeClientID || q.Get("redirect_uri") != f.redirect || q.Get("response_type") != "code" ||
		q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" ||
		!strings.Contains(" "+q.Get("scope")+" ", " openid ") {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	code := randomToken(16)
	f.mu.Lock()
	f.codes[code] = fakeCode{redirectURI: q.Get("redirect_uri"), nonce: q.Get("nonce"), challenge: q.Get("code_challenge")}
	f.issued = append(f.issued, code)
	f.mu.Unlock()
	back, _ := url.Parse(q.Get("redirect_uri"))
	bq := back.Query()
	bq.Set("code", code)
	bq.Set("state", q.Get("state"))
	bq.Set("iss", f.issuer)
	back.RawQuery = bq.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func (f *fakeIDP) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		fakeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	id, secret, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != fakeClientID || secret != fakeSecret {
		fakeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		c, ok := f.codes[r.PostForm.Get("code")]
		delete(f.codes, r.PostForm.Get("code"))
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if !ok || c.redirectURI != r.PostForm.Get("redirect_uri") || base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
			fakeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
			return
		}
		f.issue(w, c.nonce, false)
	case "refresh_token":
		if !f.refresh[r.PostForm.Get("refresh_token")] {
			fakeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
			return
		}
		f.issue(w, "", true)
	default:
		fakeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
	}
}

// issue answers a token request; f.mu is held.
func (f *fakeIDP) issue(w http.ResponseWriter, nonce string, refresh bool) {
	access, rt := "at-"+randomToken(16), "rt-"+randomToken(16)
	f.access[access], f.refresh[rt] = true, true
	now := time.Now()
	sum := sha256.Sum256([]byte(access))
	claims := map[string]any{
		"iss": f.issuer, "sub": fakeSubject, "aud": fakeClientID, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"email": fakeEmail, "name": "Alice", "preferred_username": "alice", "groups": []any{"ops"},
		"at_hash": base64.RawURLEncoding.EncodeToString(sum[:16]),
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	if f.emailVerified != nil {
		claims["email_verified"] = f.emailVerified
	}
	if f.idToken != nil {
		f.idToken(claims, refresh)
	}
	key := fakeKeys()[0]
	if f.otherKey {
		key = fakeKeys()[1]
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		f.t.Error(err)
		return
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		f.t.Error(err)
		return
	}
	resp := map[string]any{"access_token": access, "token_type": "Bearer", "expires_in": 3600, "refresh_token": rt}
	if !(refresh && f.refreshNoID) {
		resp["id_token"] = raw
	}
	f.issued = append(f.issued, access, rt, raw)
	w.Header().Set("Cache-Control", "no-store")
	fakeJSON(w, http.StatusOK, resp)
}

func (f *fakeIDP) userinfo(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	defer f.mu.Unlock()
	if !ok || !f.access[tok] {
		fakeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	if f.userInfoCode != 0 {
		fakeJSON(w, f.userInfoCode, map[string]string{"error": "server_error"})
		return
	}
	claims := map[string]any{"sub": fakeSubject, "email": fakeEmail, "name": "Alice", "nickname": "alice",
		"preferred_username": "alice", "groups": []any{"ops", "acme/infra/db"}}
	if f.emailVerified != nil {
		claims["email_verified"] = f.emailVerified
	}
	if f.userInfo != nil {
		f.userInfo(claims)
	}
	fakeJSON(w, http.StatusOK, claims)
}

func fakeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// lockedBuffer collects log output safely.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// oidcHarness is a Gatehouse sign-in (Login, sessions in memory) in front
// of one provider talking to a fakeIDP.
type oidcHarness struct {
	idp      *fakeIDP
	provider *OIDC
	login    *Login
	sessions *session.Manager
	store    *sessionstore.Memory
	logs     *lockedBuffer
}

var harnessPublic, _ = url.Parse("https://dash.example.com")

// newOIDCHarness builds a generic OIDC provider "corp" (gitlab: the
// GitLab provider instead) with the global lists and, for "corp", the
// given insecure_skip_email_verified.
func newOIDCHarness(t *testing.T, gitlab bool, lists filters.Lists, skipEmailVerified bool, issuer string) *oidcHarness {
	t.Helper()
	return newOIDCHarnessWith(t, gitlab, lists, issuer, func(c *OIDCConfig, _ *LoginConfig) { c.InsecureSkipEmailVerified = skipEmailVerified })
}

// newOIDCHarnessWith is newOIDCHarness with the provider's configuration
// and the Login's edited by edit (for "corp").
func newOIDCHarnessWith(t *testing.T, gitlab bool, lists filters.Lists, issuer string, edit func(*OIDCConfig, *LoginConfig)) *oidcHarness {
	t.Helper()
	name := "corp"
	if gitlab {
		name = "gitlab"
	}
	callback := CallbackURL(harnessPublic, "/oauth2", name)
	idp := newFakeIDP(t, issuer, callback)
	var p *OIDC
	if gitlab {
		p = NewGitLab(GitLabConfig{Enabled: true, URL: idp.issuer + "/", ClientID: fakeClientID, ClientSecret: fakeSecret,
			Scopes: []string{"openid", "profile", "email"}}, lists, callback, idp.client())
	} else {
		cfg := OIDCConfig{IssuerURL: idp.issuer, ClientID: fakeClientID, ClientSecret: fakeSecret}
		edit(&cfg, &LoginConfig{})
		cfg.setDefaults(name)
		p = NewOIDC(name, cfg, lists, callback, idp.client())
	}
	store := sessionstore.NewMemory(nil)
	sessions := session.NewManager(session.Config{
		CookieName: "_gatehouse", CookieSameSite: "lax", Lifetime: 100 * time.Hour, IdleTimeout: 100 * time.Hour,
	}, store, nil)
	logs := &lockedBuffer{}
	lc := LoginConfig{
		Providers: []Provider{p}, Sessions: sessions, Pages: pages.New(), PublicURL: harnessPublic,
		Prefix: "/oauth2", Secret: "0123456789abcdef0123456789abcdef", Cookie: "_gatehouse",
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	edit(&OIDCConfig{}, &lc)
	login := NewLogin(lc)
	return &oidcHarness{idp: idp, provider: p, login: login, sessions: sessions, store: store, logs: logs}
}

// signIn runs a browser through /start, the provider and the callback,
// and returns the callback's response.
func (h *oidcHarness) signIn(t *testing.T) *http.Response {
	t.Helper()
	start := httptest.NewRecorder()
	h.login.Start(start, httptest.NewRequest(http.MethodGet, "https://dash.example.com/oauth2/start?rd=/app", nil))
	if start.Code != http.StatusFound {
		t.Fatalf("start: %d %s", start.Code, start.Body)
	}
	resp, err := h.idp.client().Get(start.Header().Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %d", resp.StatusCode)
	}
	cb := httptest.NewRequest(http.MethodGet, resp.Header.Get("Location"), nil)
	for _, c := range start.Result().Cookies() {
		cb.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	h.login.Callback(h.provider).ServeHTTP(rec, cb)
	return rec.Result()
}

// sessionCookie returns the session cookie a response sets, if any.
func sessionCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == "_gatehouse" && c.Value != "" && c.MaxAge >= 0 {
			return c
		}
	}
	return nil
}

// noSecretsLogged fails when the log holds a code or token the provider
// handed out.
func (h *oidcHarness) noSecretsLogged(t *testing.T) {
	t.Helper()
	logs := h.logs.String()
	for _, s := range h.idp.secrets() {
		if strings.Contains(logs, s) {
			t.Fatalf("a code or token from the provider was logged")
		}
		// An ID token's payload alone is as telling.
		if parts := strings.Split(s, "."); len(parts) == 3 && strings.Contains(logs, parts[1]) {
			t.Fatalf("an ID token's payload was logged")
		}
	}
}

func bodyOf(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// signedInSession signs in and returns the session the callback created
// and its cookie.
func (h *oidcHarness) signedInSession(t *testing.T) (*session.Session, *http.Cookie) {
	t.Helper()
	resp := h.signIn(t)
	c := sessionCookie(resp)
	if resp.StatusCode != http.StatusFound || c == nil {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, bodyOf(t, resp))
	}
	s, err := h.load(c)
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

// load reads the session a browser with cookie c has.
func (h *oidcHarness) load(c *http.Cookie) (*session.Session, error) {
	r := httptest.NewRequest(http.MethodGet, "https://dash.example.com/app", nil)
	r.AddCookie(c)
	return h.sessions.Load(context.Background(), r)
}
