// Package fakegoogle is a fake of Google for tests: accounts.google.com as
// an OpenID Connect provider (discovery, JWKS, an authorization endpoint
// with a sign-in form, the token endpoint with codes, PKCE and refresh,
// userinfo), the JWT-bearer grant a service account with domain-wide
// delegation uses, the Admin SDK Directory API's groups.list and the Cloud
// Identity API's searchTransitiveGroups, in Google's published shapes
// (paging by pageToken/nextPageToken, Google's error JSON). Every endpoint
// is served under one host with Google's paths. It is a real HTTP server;
// nothing in it is mocked.
//
// The sign-in form has the fields #identifierId (e-mail) and #password and
// the button #signin, for a browser; an HTTP client posts the form's hidden
// fields with identifier and password to the authorization endpoint.
package fakegoogle

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Google's paths, all served by the one fake host.
const (
	AuthPath     = "/o/oauth2/v2/auth"
	TokenPath    = "/token"
	UserInfoPath = "/v1/userinfo"
	CertsPath    = "/oauth2/v3/certs"
	RevokePath   = "/revoke"
)

// User is a Google account.
type User struct {
	Subject         string // the stable numeric id; "" derives one from the e-mail
	Email           string
	EmailUnverified bool   // email_verified: false
	HostedDomain    string // the hd claim (Workspace domain); "" for a consumer account
	Name            string
	Password        string
	Admin           bool // may be impersonated by a service account to read the directory
}

// Config configures the fake.
type Config struct {
	ClientID, ClientSecret string
	RedirectURIs           []string
	// Issuer is the issuer and base of every endpoint; "" means the scheme
	// and host each request came to.
	Issuer string
	// MaxPageSize caps the directory APIs' page sizes below Google's own
	// (200 for groups.list, 1000 for searchTransitiveGroups), so paging
	// shows with few groups; 0 keeps Google's.
	MaxPageSize int
}

// Server is the fake Google, an http.Handler.
type Server struct {
	cfg Config

	mu         sync.Mutex
	users      map[string]User // by lower-cased e-mail
	groups     map[string]Group
	accounts   map[string]*serviceAccount // by client_email
	codes      map[string]code
	access     map[string]grant
	refresh    map[string]grant
	consented  map[string]bool // e-mail: a refresh token was issued once
	authReqs   []url.Values
	assertions []Assertion
	requests   []string
	fail       int
	failStatus int
}

type code struct {
	grant
	redirectURI, challenge, nonce string
	offline, consent              bool
	expires                       time.Time
}

// grant is what a token stands for: a user's sign-in, or a service
// account acting as Subject.
type grant struct {
	email   string // the user (or, for a service account, the impersonated user)
	scope   string
	account string // service account client_email; "" for a user's token
	expires time.Time
}

// signingKey signs ID tokens; made once, it is the slow part.
var signingKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

const keyID = "fakegoogle-1"

// New returns a fake Google.
func New(cfg Config) *Server {
	return &Server{cfg: cfg, users: map[string]User{}, groups: map[string]Group{}, accounts: map[string]*serviceAccount{},
		codes: map[string]code{}, access: map[string]grant{}, refresh: map[string]grant{}, consented: map[string]bool{}}
}

// SetUser adds or replaces an account by e-mail.
func (s *Server) SetUser(u User) {
	if u.Subject == "" {
		u.Subject = numericID(strings.ToLower(u.Email))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[strings.ToLower(u.Email)] = u
}

// RevokeTokens makes every access and refresh token of the user invalid.
func (s *Server) RevokeTokens(email string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range []map[string]grant{s.access, s.refresh} {
		for t, g := range m {
			if g.account == "" && strings.EqualFold(g.email, email) {
				delete(m, t)
			}
		}
	}
}

// AuthRequests returns the query of every authorization request seen.
func (s *Server) AuthRequests() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]url.Values(nil), s.authReqs...)
}

func (s *Server) issuer(r *http.Request) string {
	if s.cfg.Issuer != "" {
		return s.cfg.Issuer
	}
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/.well-known/openid-configuration" && r.Method == http.MethodGet:
		s.discovery(w, r)
	case p == CertsPath && r.Method == http.MethodGet:
		jwk := jose.JSONWebKey{Key: &signingKey().PublicKey, KeyID: keyID, Algorithm: string(jose.RS256), Use: "sig"}
		writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	case p == AuthPath && r.Method == http.MethodGet:
		s.authorizePage(w, r)
	case p == AuthPath && r.Method == http.MethodPost:
		s.signIn(w, r)
	case p == TokenPath && r.Method == http.MethodPost:
		s.token(w, r)
	case p == UserInfoPath:
		s.userInfo(w, r)
	case p == RevokePath && r.Method == http.MethodPost:
		_ = r.ParseForm()
		s.mu.Lock()
		delete(s.access, r.Form.Get("token"))
		delete(s.refresh, r.Form.Get("token"))
		s.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	case p == groupsPath || p == transitivePath:
		s.serveAPI(w, r)
	default:
		apiError(w, false, http.StatusNotFound, "Not Found", "notFound")
	}
}

// discovery answers with the fields of Google's discovery document.
func (s *Server) discovery(w http.ResponseWriter, r *http.Request) {
	iss := s.issuer(r)
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                iss,
		"authorization_endpoint":                iss + AuthPath,
		"device_authorization_endpoint":         iss + "/device/code",
		"token_endpoint":                        iss + TokenPath,
		"userinfo_endpoint":                     iss + UserInfoPath,
		"revocation_endpoint":                   iss + RevokePath,
		"jwks_uri":                              iss + CertsPath,
		"response_types_supported":              []string{"code", "token", "id_token", "code token", "code id_token", "token id_token", "code token id_token", "none"},
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"scopes_supported":                      []string{"openid", "email", "profile"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic"},
		"claims_supported":                      []string{"aud", "email", "email_verified", "exp", "family_name", "given_name", "iat", "iss", "name", "picture", "sub"},
		"code_challenge_methods_supported":      []string{"plain", "S256"},
		"grant_types_supported": []string{"authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code",
			"urn:ietf:params:oauth:grant-type:jwt-bearer"},
		"authorization_response_iss_parameter_supported": true,
	})
}

// oauthError is the token endpoint's error shape (RFC 6749 §5.2).
func oauthError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": description})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// numericID derives a Google-style id (21 decimal digits) from s.
func numericID(s string) string {
	sum := sha256.Sum256([]byte(s))
	digits := []byte{'1'}
	for _, b := range sum[:20] {
		digits = append(digits, '0'+b%10)
	}
	return string(digits)
}

func random() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
