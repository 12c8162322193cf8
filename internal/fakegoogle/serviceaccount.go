package fakegoogle

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Assertion is a JWT-bearer assertion the token endpoint verified.
type Assertion struct {
	Issuer, Subject, Scope, Audience, KeyID string
}

type serviceAccount struct {
	email, keyID, tokenURI string
	key                    *rsa.PublicKey
	scopes                 []string // authorized for domain-wide delegation
}

// ServiceAccount creates a service account with a new key, its client id
// authorized for domain-wide delegation of scopes, and returns the JSON
// key file as the Cloud console hands it out. tokenURI is the key's
// token_uri: the fake's URL and TokenPath.
func (s *Server) ServiceAccount(email, tokenURI string, scopes ...string) ([]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	kid := make([]byte, 20)
	_, _ = rand.Read(kid)
	sa := &serviceAccount{email: email, keyID: hex.EncodeToString(kid), tokenURI: tokenURI, key: &key.PublicKey, scopes: scopes}
	s.mu.Lock()
	s.accounts[email] = sa
	s.mu.Unlock()
	return json.MarshalIndent(map[string]string{
		"type":                        "service_account",
		"project_id":                  "fake-project",
		"private_key_id":              sa.keyID,
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                email,
		"client_id":                   numericID("sa:" + email),
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   tokenURI,
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"client_x509_cert_url":        "https://www.googleapis.com/robot/v1/metadata/x509/" + url.PathEscape(email),
		"universe_domain":             "googleapis.com",
	}, "", "  ")
}

// Assertions returns the JWT-bearer assertions verified so far.
func (s *Server) Assertions() []Assertion {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Assertion(nil), s.assertions...)
}

// jwtBearer is the JWT-bearer grant (RFC 7523) as Google answers it: the
// assertion must be signed with the service account's key, be addressed
// to its token_uri and live at most an hour; a subject must be a user of
// the domain and every scope authorized for domain-wide delegation.
func (s *Server) jwtBearer(w http.ResponseWriter, r *http.Request) {
	tok, err := jwt.ParseSigned(r.PostForm.Get("assertion"), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT: "+err.Error())
		return
	}
	var c struct {
		Iss   string `json:"iss"`
		Sub   string `json:"sub"`
		Scope string `json:"scope"`
		Aud   string `json:"aud"`
		Iat   int64  `json:"iat"`
		Exp   int64  `json:"exp"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT: "+err.Error())
		return
	}
	s.mu.Lock()
	sa := s.accounts[c.Iss]
	s.mu.Unlock()
	if sa == nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid grant: account not found")
		return
	}
	if tok.Headers[0].KeyID != sa.keyID || tok.Claims(sa.key, &c) != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT Signature.")
		return
	}
	now := time.Now().Unix()
	switch {
	case c.Aud != sa.tokenURI:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT: Failed audience check.")
		return
	case c.Exp <= now || c.Iat > now+60 || c.Exp-c.Iat > 3600:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
		return
	case strings.TrimSpace(c.Scope) == "":
		oauthError(w, http.StatusBadRequest, "invalid_scope", "Empty or missing scope not allowed.")
		return
	}
	if c.Sub != "" {
		s.mu.Lock()
		_, known := s.users[strings.ToLower(c.Sub)]
		s.mu.Unlock()
		if !known {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid email or User ID")
			return
		}
		for _, sc := range strings.Fields(c.Scope) {
			if !contains(sa.scopes, sc) {
				oauthError(w, http.StatusUnauthorized, "unauthorized_client",
					"Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.")
				return
			}
		}
	}
	access := "ya29.c." + random()
	s.mu.Lock()
	s.assertions = append(s.assertions, Assertion{Issuer: c.Iss, Subject: c.Sub, Scope: c.Scope, Audience: c.Aud, KeyID: tok.Headers[0].KeyID})
	s.access[access] = grant{email: c.Sub, scope: c.Scope, account: sa.email, expires: time.Now().Add(time.Hour)}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"access_token": access, "expires_in": 3599, "token_type": "Bearer"})
}
