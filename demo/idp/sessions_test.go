package idp

import (
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
)

const verifier = "test-verifier-0123456789-0123456789-0123456789"

// browser is a user agent with a cookie jar that never follows redirects,
// so tests see each answer of the provider.
type browser struct {
	t              *testing.T
	issuer         string
	user, password string
	c              *http.Client
}

func newBrowser(t *testing.T, issuer string) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, issuer: issuer, user: "a@example.com", password: "pw",
		c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request and returns the answer with its body read.
func (b *browser) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return resp, string(body)
}

func (b *browser) get(u string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

func (b *browser) post(u string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// signInResult is how an authorization request ended.
type signInResult struct {
	form     bool           // the login form was shown (and filled in)
	login    *http.Response // the answer to the form; nil without a form
	redirect url.Values     // query of the redirect back to the client
}

// signIn sends an authorization request for client_id with the given extra
// parameters (key, value pairs, e.g. "prompt", "login"), fills in the login
// form if it shows, and returns the redirect back to the client.
func (b *browser) signIn(clientID, state string, extra ...string) signInResult {
	b.t.Helper()
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect}, "scope": {"openid email"},
		"state": {state}, "nonce": {"n-" + state}, "code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)},
		"code_challenge_method": {"S256"}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	var res signInResult
	resp, body := b.get(b.issuer + "/auth?" + q.Encode())
	if resp.StatusCode == http.StatusOK && strings.Contains(body, `id="login"`) {
		res.form = true
		form := url.Values{"username": {b.user}, "password": {b.password}}
		for _, m := range hidden.FindAllStringSubmatch(body, -1) {
			form.Set(m[1], html.UnescapeString(m[2]))
		}
		resp, _ = b.post(b.issuer+"/auth", form)
		res.login = resp
	}
	if resp.StatusCode != http.StatusFound {
		b.t.Fatalf("authorization request: status %d, want a redirect", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), redirect+"?") {
		b.t.Fatalf("authorization redirect = %q", resp.Header.Get("Location"))
	}
	res.redirect = loc.Query()
	return res
}

// tokenResponse is what the token endpoint answers.
type tokenResponse struct {
	IDToken      string `json:"id_token"`
	RefreshToken string `json:"refresh_token"`
	Error        string `json:"error"`
}

// tokens calls the token endpoint as a confidential client.
func tokens(t *testing.T, issuer, clientID, secret string, form url.Values) (int, tokenResponse) {
	t.Helper()
	form.Set("client_id", clientID)
	form.Set("client_secret", secret)
	resp, err := http.PostForm(issuer+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr tokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, tr
}

// exchange redeems a code of a client whose secret is "s".
func exchange(t *testing.T, issuer, clientID, code string) tokenResponse {
	t.Helper()
	status, tr := tokens(t, issuer, clientID, "s", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {redirect}, "code_verifier": {verifier}})
	if status != http.StatusOK {
		t.Fatalf("code exchange: %d %s", status, tr.Error)
	}
	return tr
}

// verifyJWT checks a token's signature against the provider's JWKS and
// returns its typ header and claims.
func verifyJWT(t *testing.T, issuer, raw string) (typ string, claims map[string]any) {
	t.Helper()
	resp, err := http.Get(issuer + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var keys jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&keys); err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.Claims(keys, &claims); err != nil {
		t.Fatalf("signature does not verify with the JWKS: %v", err)
	}
	typ, _ = tok.Headers[0].ExtraHeaders[jose.HeaderType].(string)
	return typ, claims
}

func TestRememberedSessions(t *testing.T) {
	tests := []struct {
		name      string
		remember  bool
		fresh     bool   // no first sign-in
		prompt    string // of the second authorization request
		wantForm  bool
		wantError string // error of the redirect, instead of a code
		sameSID   bool   // the second ID token has the first one's sid
		sessions  int    // live IdP sessions at the end
	}{
		{name: "off: the form always shows", prompt: "", wantForm: true, sessions: 2},
		{name: "off: prompt=none has no session", prompt: "none", wantError: "login_required", sessions: 1},
		{name: "on: a remembered session skips the form", remember: true, sameSID: true, sessions: 1},
		{name: "on: prompt=none uses the session", remember: true, prompt: "none", sameSID: true, sessions: 1},
		{name: "on: prompt=login forces the form, same session", remember: true, prompt: "login", wantForm: true, sameSID: true, sessions: 1},
		{name: "on: prompt=none without a session", remember: true, fresh: true, prompt: "none", wantError: "login_required"},
		{name: "on: prompt=none with login is invalid", remember: true, prompt: "none login", wantError: "invalid_request", sessions: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, srv := newServerWith(t, func(cfg *Config) { cfg.RememberSessions = tt.remember })
			b := newBrowser(t, srv.URL)
			var first map[string]any
			if !tt.fresh {
				r := b.signIn("app", "s1")
				if !r.form {
					t.Fatal("the first sign-in skipped the form")
				}
				_, first = verifyJWT(t, srv.URL, exchange(t, srv.URL, "app", r.redirect.Get("code")).IDToken)
			}
			r := b.signIn("app", "s2", "prompt", tt.prompt)
			if r.form != tt.wantForm {
				t.Fatalf("form shown = %v, want %v", r.form, tt.wantForm)
			}
			if got := r.redirect.Get("state"); got != "s2" {
				t.Errorf("state = %q, want s2", got)
			}
			if tt.wantError != "" {
				if r.redirect.Get("error") != tt.wantError || r.redirect.Has("code") {
					t.Fatalf("redirect = %v, want error=%s and no code", r.redirect, tt.wantError)
				}
			} else {
				_, second := verifyJWT(t, srv.URL, exchange(t, srv.URL, "app", r.redirect.Get("code")).IDToken)
				if sid, _ := second["sid"].(string); sid == "" || second["auth_time"] == nil {
					t.Fatalf("ID token lacks sid or auth_time: %v", second)
				}
				if got := first["sid"] == second["sid"]; got != tt.sameSID {
					t.Errorf("same sid = %v, want %v (%v, %v)", got, tt.sameSID, first["sid"], second["sid"])
				}
				if !tt.wantForm && first["auth_time"] != second["auth_time"] {
					t.Errorf("auth_time changed without a login: %v, %v", first["auth_time"], second["auth_time"])
				}
			}
			if got := p.Sessions("1"); got != tt.sessions {
				t.Errorf("Sessions = %d, want %d", got, tt.sessions)
			}
		})
	}
}

func TestSessionCookie(t *testing.T) {
	tests := []struct {
		name, path string // issuer path
		remember   bool
		wantPath   string // "" = no cookie
	}{
		{name: "off sets no cookie", remember: false},
		{name: "on, issuer at the root", remember: true, wantPath: "/"},
		{name: "on, issuer under a path", path: "/idp", remember: true, wantPath: "/idp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newServerWith(t, func(cfg *Config) {
				cfg.Issuer += tt.path
				cfg.RememberSessions = tt.remember
			})
			r := newBrowser(t, srv.URL+tt.path).signIn("app", "s")
			cookies := r.login.Cookies()
			if tt.wantPath == "" {
				if len(cookies) != 0 {
					t.Fatalf("cookies set: %v", cookies)
				}
				return
			}
			if len(cookies) != 1 {
				t.Fatalf("cookies set: %v", cookies)
			}
			c := cookies[0]
			if c.Value == "" || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != tt.wantPath || c.Secure {
				t.Errorf("cookie = %+v", c)
			}
			_, claims := verifyJWT(t, srv.URL+tt.path, exchange(t, srv.URL+tt.path, "app", r.redirect.Get("code")).IDToken)
			if claims["sid"] == c.Value {
				t.Error("the cookie's value is the sid relying parties see")
			}
		})
	}
}

func TestRefreshKeepsSessionID(t *testing.T) {
	_, srv := newServer(t)
	tr := exchange(t, srv.URL, "app", newBrowser(t, srv.URL).signIn("app", "s").redirect.Get("code"))
	_, first := verifyJWT(t, srv.URL, tr.IDToken)
	status, refreshed := tokens(t, srv.URL, "app", "s", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}})
	if status != http.StatusOK {
		t.Fatalf("refresh: %d %s", status, refreshed.Error)
	}
	_, second := verifyJWT(t, srv.URL, refreshed.IDToken)
	for _, claim := range []string{"sid", "auth_time"} {
		if first[claim] == nil || first[claim] != second[claim] {
			t.Errorf("%s: login %v, refresh %v", claim, first[claim], second[claim])
		}
	}
}
