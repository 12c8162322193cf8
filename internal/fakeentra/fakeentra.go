// Package fakeentra is a fake of Microsoft Entra ID (login.microsoftonline.com)
// and of the part of Microsoft Graph Gatehouse reads, for tests. It follows
// Microsoft's published shapes: per-tenant OpenID discovery (with the
// literal "{tenantid}" issuer of the multi-tenant authorities), the JWKS,
// the v2.0 authorize and token endpoints (authorization code with PKCE,
// refresh tokens, client secrets and jwt-bearer client assertions), v2.0
// ID tokens (tid, oid, preferred_username, the email and xms_edov optional
// claims, groups or the groups overage claim, roles) and Graph's
// /me/transitiveMemberOf with @odata.nextLink paging and Graph's error
// JSON. It is a real HTTP server; nothing in it is mocked.
package fakeentra

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// ConsumersTenantID is the tid of personal Microsoft accounts.
const ConsumersTenantID = "9188040d-6c67-4c5b-b112-36a304b66dad"

// Config configures the fake: one app registration.
type Config struct {
	ClientID     string
	ClientSecret string // "": client secrets are refused
	RedirectURIs []string
	// URL, when set, is the base of every absolute URL the fake writes
	// (issuers, endpoints, next links); else the request's own origin.
	URL string
	// OptionalClaims are the ID token's optional claims of the app
	// registration's token configuration: "email", "xms_edov".
	OptionalClaims []string
	// GroupMembershipClaims makes ID tokens carry groups (the manifest's
	// groupMembershipClaims: "SecurityGroup"); past OverageLimit groups
	// they carry the overage claim instead.
	GroupMembershipClaims bool
	// GraphPageSize caps Graph's pages below what $top asks for (Graph
	// may always return fewer); 0 means $top, default 100.
	GraphPageSize int
}

// OverageLimit is how many groups a JWT may list before Entra replaces
// them with the overage claim.
const OverageLimit = 200

// Tenant is a directory.
type Tenant struct {
	ID      string   // GUID
	Domains []string // verified domains, e.g. contoso.onmicrosoft.com
}

// Group is a directory group.
type Group struct{ ID, DisplayName string }

// User is a work or school account.
type User struct {
	TenantID          string
	OID               string
	UserPrincipalName string // preferred_username; the sign-in name
	Name              string
	// Email is the mail attribute: whatever an administrator of the
	// user's tenant typed, in any domain.
	Email string
	// EmailDomainVerified: the address's domain is a verified domain of
	// the user's tenant (the xms_edov optional claim).
	EmailDomainVerified bool
	Groups              []string // group object ids, transitive
	DirectoryRoles      []string // directory role object ids (Graph lists them too)
	Roles               []string // app role values assigned to the user
	Password            string
}

// Server is the fake, an http.Handler for both the authority and Graph.
type Server struct {
	cfg Config

	mu         sync.Mutex
	tenants    map[string]Tenant // by id and by domain
	groups     map[string]Group
	users      map[string]User // by lower-case UPN
	codes      map[string]code
	refresh    map[string]grant
	access     map[string]grant
	assertion  string   // the client assertion accepted now
	assertions []string // client assertions received
	tokenReqs  []url.Values
	graphReqs  []string
	graphSkip  int
	graphFail  int
	graphCode  int
	nextBase   string
	edit       func(claims map[string]any)
}

type code struct {
	grant
	redirectURI, challenge, nonce string
	expires                       time.Time
}

// grant is what a code or token stands for.
type grant struct {
	tid, oid, sid string
	scopes        []string
}

// New returns a fake Entra ID.
func New(cfg Config) *Server {
	return &Server{cfg: cfg, tenants: map[string]Tenant{}, groups: map[string]Group{}, users: map[string]User{},
		codes: map[string]code{}, refresh: map[string]grant{}, access: map[string]grant{}}
}

// AddTenant adds a directory.
func (s *Server) AddTenant(t Tenant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tenants[t.ID] = t
	for _, d := range t.Domains {
		s.tenants[strings.ToLower(d)] = t
	}
}

// AddGroup adds a group to the directory (for its displayName in Graph).
func (s *Server) AddGroup(g Group) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups[g.ID] = g
}

// SetUser adds or replaces a user by user principal name.
func (s *Server) SetUser(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[strings.ToLower(u.UserPrincipalName)] = u
}

// SetClientAssertion sets the one client assertion the token endpoint
// accepts from now on (a federated credential's current token).
func (s *Server) SetClientAssertion(a string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.assertion = a
}

// Assertions lists the client assertions the token endpoint received.
func (s *Server) Assertions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.assertions)
}

// TokenRequests lists the token requests' forms, client credentials
// removed.
func (s *Server) TokenRequests() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.tokenReqs)
}

// GraphRequests lists "GET path?query" of the Graph requests seen.
func (s *Server) GraphRequests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.graphReqs)
}

// FailGraph lets the next after Graph requests through, then makes n
// answer status with Graph's error JSON.
func (s *Server) FailGraph(after, n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.graphSkip, s.graphFail, s.graphCode = after, n, status
}

// SetGraphNextLinkBase makes @odata.nextLink point at base instead of the
// fake itself (a hostile or broken answer).
func (s *Server) SetGraphNextLinkBase(base string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextBase = base
}

// EditIDToken lets fn change every ID token's claims before signing
// (nil: none), to produce what a faulty or hostile issuer might send.
func (s *Server) EditIDToken(fn func(claims map[string]any)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.edit = fn
}

// RevokeRefreshTokens makes every refresh token of oid invalid (the
// user's sessions were revoked or the account disabled).
func (s *Server) RevokeRefreshTokens(oid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, g := range s.refresh {
		if g.oid == oid {
			delete(s.refresh, t)
		}
	}
}

// base is the origin absolute URLs are built on.
func (s *Server) base(r *http.Request) string {
	if s.cfg.URL != "" {
		return strings.TrimSuffix(s.cfg.URL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/v1.0/") {
		s.serveGraph(w, r)
		return
	}
	tenant, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	switch {
	case rest == "v2.0/.well-known/openid-configuration" && r.Method == http.MethodGet:
		s.discovery(w, r, tenant)
	case rest == "discovery/v2.0/keys" && r.Method == http.MethodGet:
		s.keys(w, r, tenant)
	case rest == "oauth2/v2.0/authorize" && r.Method == http.MethodGet:
		s.authorize(w, r, tenant)
	case rest == "login" && r.Method == http.MethodPost:
		s.login(w, r, tenant)
	case rest == "oauth2/v2.0/token" && r.Method == http.MethodPost:
		s.token(w, r, tenant)
	default:
		http.NotFound(w, r)
	}
}

// resolve maps an authority's tenant segment to the tenant id it names
// ("" for organizations/common), or ok=false for an unknown tenant.
func (s *Server) resolve(tenant string) (id string, ok bool) {
	switch t := strings.ToLower(tenant); t {
	case "organizations", "common":
		return "", true
	case "consumers":
		return ConsumersTenantID, true
	default:
		s.mu.Lock()
		defer s.mu.Unlock()
		tt, ok := s.tenants[t]
		return tt.ID, ok
	}
}

// entraError writes the token and discovery endpoints' error JSON.
func entraError(w http.ResponseWriter, base string, status int, errCode string, aadsts int, desc string) {
	traceID, corrID := uuid(), uuid()
	writeJSON(w, status, map[string]any{
		"error": errCode,
		"error_description": fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s",
			aadsts, desc, traceID, corrID, time.Now().UTC().Format("2006-01-02 15:04:05Z")),
		"error_codes":    []int{aadsts},
		"timestamp":      time.Now().UTC().Format("2006-01-02 15:04:05Z"),
		"trace_id":       traceID,
		"correlation_id": corrID,
		"error_uri":      fmt.Sprintf("%s/error?code=%d", base, aadsts),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func random() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func uuid() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
