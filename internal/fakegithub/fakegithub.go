// Package fakegithub is a fake of GitHub (github.com and GitHub Enterprise
// Server) for tests: the OAuth web flow with PKCE, and the REST endpoints
// Gatehouse reads (/user, /user/emails, /user/orgs, /user/teams) in their
// documented shapes, including Link-header pagination and 401 for bad
// credentials. It is a real HTTP server; nothing in it is mocked.
package fakegithub

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Team is a team membership.
type Team struct{ Org, Slug, Name string }

// Email is an entry of /user/emails.
type Email struct {
	Email             string
	Primary, Verified bool
	Visibility        string
}

// User is a GitHub account.
type User struct {
	ID       int64
	Login    string
	Name     string
	Email    string // public profile address: whatever the user typed
	Emails   []Email
	Orgs     []string
	Teams    []Team
	Password string
}

// Config configures the fake.
type Config struct {
	Enterprise             bool // API under /api/v3 (GHE) instead of the server root
	ClientID, ClientSecret string
	RedirectURIs           []string
}

// Server is the fake GitHub, an http.Handler.
type Server struct {
	cfg Config
	api string // path prefix of the REST API

	mu       sync.Mutex
	users    map[string]User // by login
	codes    map[string]code
	tokens   map[string]string // token -> login
	failAPI  int
	slow     time.Duration
	requests []string
}

type code struct {
	login, redirectURI, challenge string
	expires                       time.Time
}

// New returns a fake GitHub.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, users: map[string]User{}, codes: map[string]code{}, tokens: map[string]string{}}
	if cfg.Enterprise {
		s.api = "/api/v3"
	}
	return s
}

// SetUser adds or replaces a user by login.
func (s *Server) SetUser(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[strings.ToLower(u.Login)] = u
}

// RevokeTokens makes every token of login answer 401.
func (s *Server) RevokeTokens(login string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, l := range s.tokens {
		if strings.EqualFold(l, login) {
			delete(s.tokens, t)
		}
	}
}

// FailAPI makes the next n API requests answer 502.
func (s *Server) FailAPI(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failAPI = n
}

// SlowAPI delays API answers by d.
func (s *Server) SlowAPI(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slow = d
}

// Requests lists "METHOD path?query" of the API requests seen.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/login/oauth/authorize" && r.Method == http.MethodGet:
		s.authorizePage(w, r)
	case r.URL.Path == "/login/oauth/authorize" && r.Method == http.MethodPost:
		s.login(w, r)
	case r.URL.Path == "/login/oauth/access_token" && r.Method == http.MethodPost:
		s.accessToken(w, r)
	case strings.HasPrefix(r.URL.Path, s.api+"/"):
		s.serveAPI(w, r, strings.TrimPrefix(r.URL.Path, s.api))
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
	}
}

var form = template.Must(template.New("login").Parse(`<!doctype html><html><head><meta charset="utf-8"><title>Sign in to GitHub</title></head>
<body><form method="post" action="/login/oauth/authorize"><h1>Sign in to GitHub</h1>
{{if .Error}}<p id="error">{{.Error}}</p>{{end}}
{{range $k, $v := .Hidden}}<input type="hidden" name="{{$k}}" value="{{$v}}">
{{end}}<input id="login_field" name="login" autocomplete="username"><input id="password" name="password" type="password">
<button id="signin" type="submit">Sign in</button></form></body></html>`))

func (s *Server) checkClient(v url.Values) string {
	switch {
	case v.Get("client_id") != s.cfg.ClientID:
		return "The client_id is not known."
	case !contains(s.cfg.RedirectURIs, v.Get("redirect_uri")):
		return "The redirect_uri MUST match the registered callback URL for this application."
	}
	return ""
}

func (s *Server) authorizePage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if msg := s.checkClient(q); msg != "" {
		w.WriteHeader(http.StatusBadRequest)
		_ = form.Execute(w, map[string]any{"Error": msg})
		return
	}
	hidden := map[string]string{}
	for _, k := range []string{"client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method"} {
		hidden[k] = q.Get(k)
	}
	_ = form.Execute(w, map[string]any{"Hidden": hidden})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	f := r.PostForm
	if msg := s.checkClient(f); msg != "" {
		w.WriteHeader(http.StatusBadRequest)
		_ = form.Execute(w, map[string]any{"Error": msg})
		return
	}
	s.mu.Lock()
	u, ok := s.users[strings.ToLower(f.Get("login"))]
	s.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare([]byte(u.Password), []byte(f.Get("password"))) != 1 {
		w.WriteHeader(http.StatusUnauthorized)
		_ = form.Execute(w, map[string]any{"Error": "Incorrect username or password."})
		return
	}
	c := random()
	s.mu.Lock()
	s.codes[c] = code{login: u.Login, redirectURI: f.Get("redirect_uri"), challenge: f.Get("code_challenge"), expires: time.Now().Add(10 * time.Minute)}
	s.mu.Unlock()
	target, _ := url.Parse(f.Get("redirect_uri"))
	q := target.Query()
	q.Set("code", c)
	q.Set("state", f.Get("state"))
	target.RawQuery = q.Encode()
	http.Redirect(w, r, target.String(), http.StatusFound)
}

// accessToken answers like GitHub: HTTP 200 with an "error" field for a bad
// code, JSON when asked for JSON, else a form-encoded body.
func (s *Server) accessToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	f := r.PostForm
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = f.Get("client_id"), f.Get("client_secret")
	}
	answer := func(v map[string]string) {
		if strings.Contains(r.Header.Get("Accept"), "application/json") {
			writeJSON(w, http.StatusOK, v)
			return
		}
		vals := url.Values{}
		for k, x := range v {
			vals.Set(k, x)
		}
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		_, _ = w.Write([]byte(vals.Encode()))
	}
	if id != s.cfg.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(s.cfg.ClientSecret)) != 1 {
		answer(map[string]string{"error": "incorrect_client_credentials", "error_description": "The client_id and/or client_secret passed are incorrect."})
		return
	}
	s.mu.Lock()
	c, ok := s.codes[f.Get("code")]
	delete(s.codes, f.Get("code"))
	s.mu.Unlock()
	sum := sha256.Sum256([]byte(f.Get("code_verifier")))
	if !ok || time.Now().After(c.expires) || (f.Get("redirect_uri") != "" && f.Get("redirect_uri") != c.redirectURI) ||
		(c.challenge != "" && base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge) {
		answer(map[string]string{"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired."})
		return
	}
	tok := "gho_" + random()
	s.mu.Lock()
	s.tokens[tok] = c.login
	s.mu.Unlock()
	answer(map[string]string{"access_token": tok, "token_type": "bearer", "scope": "read:org,read:user,user:email"})
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, path string) {
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+r.URL.RequestURI())
	fail := s.failAPI > 0
	if fail {
		s.failAPI--
	}
	slow := s.slow
	s.mu.Unlock()
	if slow > 0 {
		select {
		case <-time.After(slow):
		case <-r.Context().Done():
			return
		}
	}
	if fail {
		writeJSON(w, http.StatusBadGateway, map[string]string{"message": "Server Error"})
		return
	}
	auth := r.Header.Get("Authorization")
	tok := strings.TrimPrefix(strings.TrimPrefix(auth, "Bearer "), "token ")
	s.mu.Lock()
	login, ok := s.tokens[tok]
	u, userOK := s.users[strings.ToLower(login)]
	s.mu.Unlock()
	if auth == "" || !ok || !userOK {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
		return
	}
	w.Header().Set("X-OAuth-Scopes", "read:org, read:user, user:email")
	w.Header().Set("X-GitHub-Media-Type", "github.v3")
	switch path {
	case "/user":
		writeJSON(w, http.StatusOK, map[string]any{
			"login": u.Login, "id": u.ID, "node_id": "U_" + strconv.FormatInt(u.ID, 10), "type": "User",
			"name": u.Name, "email": nullable(u.Email), "avatar_url": "https://avatars.example/u/" + strconv.FormatInt(u.ID, 10),
		})
	case "/user/emails":
		var items []any
		for _, e := range u.Emails {
			items = append(items, map[string]any{"email": e.Email, "primary": e.Primary, "verified": e.Verified, "visibility": nullable(e.Visibility)})
		}
		s.page(w, r, items)
	case "/user/orgs":
		var items []any
		for i, o := range u.Orgs {
			items = append(items, map[string]any{"login": o, "id": 1000 + i, "node_id": "O_" + o, "url": "https://api.github.com/orgs/" + o, "description": nil})
		}
		s.page(w, r, items)
	case "/user/teams":
		var items []any
		for i, t := range u.Teams {
			items = append(items, map[string]any{
				"id": 5000 + i, "node_id": "T_" + t.Slug, "name": t.Name, "slug": t.Slug, "description": nil,
				"privacy": "closed", "permission": "pull",
				"organization": map[string]any{"login": t.Org, "id": 9000 + i, "node_id": "O_" + t.Org},
			})
		}
		s.page(w, r, items)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
	}
}

// page serves one page of a list with GitHub's per_page/page parameters
// and Link header.
func (s *Server) page(w http.ResponseWriter, r *http.Request, items []any) {
	q := r.URL.Query()
	perPage, err := strconv.Atoi(q.Get("per_page"))
	if err != nil || perPage <= 0 {
		perPage = 30
	}
	perPage = min(perPage, 100)
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page <= 0 {
		page = 1
	}
	last := max(1, (len(items)+perPage-1)/perPage)
	from := min((page-1)*perPage, len(items))
	to := min(from+perPage, len(items))
	link := func(p int, rel string) string {
		u := url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path}
		v := url.Values{"per_page": {strconv.Itoa(perPage)}, "page": {strconv.Itoa(p)}}
		u.RawQuery = v.Encode()
		return fmt.Sprintf("<%s>; rel=%q", u.String(), rel)
	}
	var links []string
	if page < last {
		links = append(links, link(page+1, "next"), link(last, "last"))
	}
	if page > 1 {
		links = append(links, link(1, "first"), link(page-1, "prev"))
	}
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	out := items[from:to]
	if out == nil {
		out = []any{}
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func random() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
