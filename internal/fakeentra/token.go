package fakeentra

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// signingKey is made once per process: generating it is the slow part.
// Entra names its keys by the certificate's thumbprint (kid = x5t).
var signingKey = sync.OnceValue(func() struct {
	key  *rsa.PrivateKey
	cert []byte
	kid  string
} {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "accounts.accesscontrol.windows.net"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * 365 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		panic(err)
	}
	sum := sha1.Sum(der)
	return struct {
		key  *rsa.PrivateKey
		cert []byte
		kid  string
	}{k, der, base64.RawURLEncoding.EncodeToString(sum[:])}
})

// keys serves the JWKS. Entra's keys carry an issuer member, with the
// {tenantid} placeholder for the multi-tenant authorities.
func (s *Server) keys(w http.ResponseWriter, r *http.Request, tenant string) {
	tid, ok := s.resolve(tenant)
	if !ok {
		entraError(w, s.base(r), http.StatusBadRequest, "invalid_tenant", 90002, "Tenant '"+tenant+"' not found.")
		return
	}
	if tid == "" {
		tid = "{tenantid}"
	}
	k := signingKey()
	writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]any{{
		"kty": "RSA", "use": "sig", "kid": k.kid, "x5t": k.kid,
		"n":      base64.RawURLEncoding.EncodeToString(k.key.N.Bytes()),
		"e":      "AQAB",
		"x5c":    []string{base64.StdEncoding.EncodeToString(k.cert)},
		"issuer": s.base(r) + "/" + tid + "/v2.0",
	}}})
}

const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// clientOK authenticates the client: a secret (in the body or HTTP Basic)
// or a jwt-bearer client assertion.
func (s *Server) clientOK(r *http.Request) bool {
	f := r.PostForm
	id, secret, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = f.Get("client_id"), f.Get("client_secret")
	}
	if id != s.cfg.ClientID {
		return false
	}
	if f.Has("client_assertion") || f.Has("client_assertion_type") {
		a := f.Get("client_assertion")
		s.mu.Lock()
		defer s.mu.Unlock()
		s.assertions = append(s.assertions, a)
		return secret == "" && f.Get("client_assertion_type") == assertionType && s.assertion != "" &&
			subtle.ConstantTimeCompare([]byte(a), []byte(s.assertion)) == 1
	}
	return s.cfg.ClientSecret != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(s.cfg.ClientSecret)) == 1
}

func (s *Server) token(w http.ResponseWriter, r *http.Request, tenant string) {
	base := s.base(r)
	if err := r.ParseForm(); err != nil {
		entraError(w, base, http.StatusBadRequest, "invalid_request", 900144, "The request body must be form-encoded.")
		return
	}
	logged := url.Values{}
	for k, v := range r.PostForm {
		if k != "client_secret" && k != "client_assertion" {
			logged[k] = v
		}
	}
	s.mu.Lock()
	s.tokenReqs = append(s.tokenReqs, logged)
	s.mu.Unlock()
	if _, ok := s.resolve(tenant); !ok {
		entraError(w, base, http.StatusBadRequest, "invalid_tenant", 90002, "Tenant '"+tenant+"' not found.")
		return
	}
	if !s.clientOK(r) {
		entraError(w, base, http.StatusUnauthorized, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '"+s.cfg.ClientID+"'.")
		return
	}
	f := r.PostForm
	switch f.Get("grant_type") {
	case "authorization_code":
		s.mu.Lock()
		c, ok := s.codes[f.Get("code")]
		delete(s.codes, f.Get("code"))
		s.mu.Unlock()
		sum := sha256.Sum256([]byte(f.Get("code_verifier")))
		if !ok || time.Now().After(c.expires) || f.Get("redirect_uri") != c.redirectURI ||
			(c.challenge != "" && base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge) {
			entraError(w, base, http.StatusBadRequest, "invalid_grant", 70008, "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.")
			return
		}
		s.issue(w, r, c.grant, c.nonce)
	case "refresh_token":
		s.mu.Lock()
		g, ok := s.refresh[f.Get("refresh_token")]
		s.mu.Unlock()
		if !ok {
			entraError(w, base, http.StatusBadRequest, "invalid_grant", 700082, "The refresh token has expired due to inactivity.")
			return
		}
		// A refresh may ask for the same scopes or fewer.
		if sc := strings.Fields(f.Get("scope")); len(sc) > 0 {
			for _, x := range sc {
				if !slices.Contains(g.scopes, x) {
					entraError(w, base, http.StatusBadRequest, "invalid_grant", 65001, "The user or administrator has not consented to use the application.")
					return
				}
			}
			g.scopes = sc
		}
		s.issue(w, r, g, "")
	default:
		entraError(w, base, http.StatusBadRequest, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
	}
}

// issue answers a token request for g: an access token for Graph, a
// refresh token with offline_access, an ID token with openid.
func (s *Server) issue(w http.ResponseWriter, r *http.Request, g grant, nonce string) {
	s.mu.Lock()
	var u User
	for _, x := range s.users {
		if x.OID == g.oid && x.TenantID == g.tid {
			u = x
		}
	}
	if u.OID == "" {
		s.mu.Unlock()
		entraError(w, s.base(r), http.StatusBadRequest, "invalid_grant", 50034, "The user account does not exist in the directory.")
		return
	}
	edit := s.edit
	access := "eyJ0eXAiOiJKV1QiLCJub25jZSI6" + random()
	s.access[access] = g
	resp := map[string]any{"token_type": "Bearer", "scope": strings.Join(g.scopes, " "), "expires_in": 3599,
		"ext_expires_in": 3599, "access_token": access}
	if slices.Contains(g.scopes, "offline_access") {
		rt := "1.AXkA" + random()
		s.refresh[rt] = g
		resp["refresh_token"] = rt
	}
	s.mu.Unlock()
	if slices.Contains(g.scopes, "openid") {
		claims := s.idClaims(r, u, g, nonce)
		if edit != nil {
			edit(claims)
		}
		k := signingKey()
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: k.key, KeyID: k.kid}},
			(&jose.SignerOptions{}).WithType("JWT"))
		if err == nil {
			resp["id_token"], err = jwt.Signed(signer).Claims(claims).Serialize()
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// idClaims are a v2.0 ID token's claims for u.
func (s *Server) idClaims(r *http.Request, u User, g grant, nonce string) map[string]any {
	now := time.Now()
	pairwise := sha256.Sum256([]byte(u.OID + "|" + s.cfg.ClientID))
	c := map[string]any{
		"aud": s.cfg.ClientID, "iss": s.base(r) + "/" + u.TenantID + "/v2.0",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"aio": random(), "rh": "0.AXkA" + random(), "sid": g.sid, "sub": base64.RawURLEncoding.EncodeToString(pairwise[:]),
		"tid": u.TenantID, "uti": random()[:22], "ver": "2.0",
	}
	if nonce != "" {
		c["nonce"] = nonce
	}
	if slices.Contains(g.scopes, "profile") {
		c["name"], c["oid"], c["preferred_username"] = u.Name, u.OID, u.UserPrincipalName
	}
	if u.Email != "" && (slices.Contains(g.scopes, "email") || slices.Contains(s.cfg.OptionalClaims, "email")) {
		c["email"] = u.Email
		if slices.Contains(s.cfg.OptionalClaims, "xms_edov") {
			c["xms_edov"] = u.EmailDomainVerified
		}
	}
	if len(u.Roles) > 0 {
		c["roles"] = slices.Clone(u.Roles)
	}
	if s.cfg.GroupMembershipClaims && len(u.Groups) > 0 {
		if len(u.Groups) > OverageLimit {
			c["_claim_names"] = map[string]any{"groups": "src1"}
			c["_claim_sources"] = map[string]any{"src1": map[string]any{
				"endpoint": "https://graph.windows.net/" + u.TenantID + "/users/" + u.OID + "/getMemberObjects"}}
		} else {
			c["groups"] = slices.Clone(u.Groups)
		}
	}
	return c
}
