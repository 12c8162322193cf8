package idp

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const postLogout = "https://app.example/signed-out"

// receiver is a client's back-channel logout endpoint; it keeps the logout
// tokens it gets and answers with status.
type receiver struct {
	*httptest.Server
	status int
	mu     sync.Mutex
	tokens []string
}

func newReceiver(t *testing.T, status int) *receiver {
	t.Helper()
	rc := &receiver{status: status}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" || r.ParseForm() != nil {
			http.Error(w, "want a form POST", http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		rc.tokens = append(rc.tokens, r.PostForm.Get("logout_token"))
		rc.mu.Unlock()
		w.WriteHeader(rc.status)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) received() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.tokens)
}

// newLogoutServer is a provider with remembered sessions whose client "app"
// may return to postLogout and has rc as its back-channel logout URI;
// client "other" has neither.
func newLogoutServer(t *testing.T, rc *receiver, edit func(cfg *Config)) (*Provider, *httptest.Server) {
	t.Helper()
	return newServerWith(t, func(cfg *Config) {
		cfg.RememberSessions = true
		cfg.Clients = []Client{
			{ID: "app", Secret: "s", RedirectURIs: []string{redirect}, PostLogoutRedirectURIs: []string{postLogout}, BackchannelLogoutURI: rc.URL},
			{ID: "other", Secret: "s", RedirectURIs: []string{redirect}, PostLogoutRedirectURIs: []string{"https://other.example/bye"}},
		}
		if edit != nil {
			edit(cfg)
		}
	})
}

func TestRPInitiatedLogout(t *testing.T) {
	tamper := func(idToken string) string {
		parts := strings.Split(idToken, ".")
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		parts[1] = base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"sub":"1"`, `"sub":"2"`, 1)))
		return strings.Join(parts, ".")
	}
	tests := []struct {
		name         string
		forget       bool          // RememberSessions off: only the hint's sid finds the session
		lifetime     time.Duration // token lifetime; negative makes the hint expired
		post         bool
		params       func(p *Provider, hint string) url.Values
		wantStatus   int
		wantLocation string // "" = no redirect
		wantEnded    bool
	}{
		{name: "hint and registered post_logout_redirect_uri",
			params: func(_ *Provider, h string) url.Values {
				return url.Values{"id_token_hint": {h}, "post_logout_redirect_uri": {postLogout}, "state": {"bye"}}
			},
			wantStatus: http.StatusFound, wantLocation: postLogout + "?state=bye", wantEnded: true},
		{name: "client_id and registered post_logout_redirect_uri, POST", post: true,
			params: func(*Provider, string) url.Values {
				return url.Values{"client_id": {"app"}, "post_logout_redirect_uri": {postLogout}, "state": {"a b"}}
			},
			wantStatus: http.StatusFound, wantLocation: postLogout + "?state=a+b", wantEnded: true},
		{name: "no state",
			params: func(_ *Provider, h string) url.Values {
				return url.Values{"id_token_hint": {h}, "post_logout_redirect_uri": {postLogout}}
			},
			wantStatus: http.StatusFound, wantLocation: postLogout, wantEnded: true},
		{name: "expired hint is accepted", lifetime: -time.Minute,
			params: func(_ *Provider, h string) url.Values {
				return url.Values{"id_token_hint": {h}, "post_logout_redirect_uri": {postLogout}, "state": {"s"}}
			},
			wantStatus: http.StatusFound, wantLocation: postLogout + "?state=s", wantEnded: true},
		{name: "no parameters: signed-out page",
			params:     func(*Provider, string) url.Values { return url.Values{} },
			wantStatus: http.StatusOK, wantEnded: true},
		{name: "no cookie: the hint's sid ends the session", forget: true,
			params:     func(_ *Provider, h string) url.Values { return url.Values{"id_token_hint": {h}} },
			wantStatus: http.StatusOK, wantEnded: true},
		{name: "unregistered post_logout_redirect_uri",
			params: func(_ *Provider, h string) url.Values {
				return url.Values{"id_token_hint": {h}, "post_logout_redirect_uri": {"https://evil.example/"}, "state": {"s"}}
			},
			wantStatus: http.StatusBadRequest},
		{name: "post_logout_redirect_uri of another client",
			params: func(*Provider, string) url.Values {
				return url.Values{"client_id": {"other"}, "post_logout_redirect_uri": {postLogout}}
			},
			wantStatus: http.StatusBadRequest},
		{name: "post_logout_redirect_uri without a client",
			params:     func(*Provider, string) url.Values { return url.Values{"post_logout_redirect_uri": {postLogout}} },
			wantStatus: http.StatusBadRequest},
		{name: "tampered hint",
			params:     func(_ *Provider, h string) url.Values { return url.Values{"id_token_hint": {tamper(h)}} },
			wantStatus: http.StatusBadRequest},
		{name: "a logout token is no hint",
			params: func(p *Provider, _ string) url.Values {
				lt, _ := p.LogoutToken("app", "1", "")
				return url.Values{"id_token_hint": {lt}}
			},
			wantStatus: http.StatusBadRequest},
		{name: "client_id not in the hint's audience",
			params: func(_ *Provider, h string) url.Values {
				return url.Values{"id_token_hint": {h}, "client_id": {"other"}}
			},
			wantStatus: http.StatusBadRequest},
		{name: "unknown client_id",
			params:     func(*Provider, string) url.Values { return url.Values{"client_id": {"nope"}} },
			wantStatus: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, http.StatusOK)
			p, srv := newLogoutServer(t, rc, func(cfg *Config) {
				cfg.RememberSessions = !tt.forget
				cfg.TokenLifetime = tt.lifetime
			})
			b := newBrowser(t, srv.URL)
			hint := exchange(t, srv.URL, "app", b.signIn("app", "s1").redirect.Get("code")).IDToken

			var resp *http.Response
			var body string
			if params := tt.params(p, hint); tt.post {
				resp, body = b.post(srv.URL+"/logout", params)
			} else {
				resp, body = b.get(srv.URL + "/logout?" + params.Encode())
			}
			if resp.StatusCode != tt.wantStatus || resp.Header.Get("Location") != tt.wantLocation {
				t.Fatalf("logout: %d, Location %q; want %d, %q", resp.StatusCode, resp.Header.Get("Location"), tt.wantStatus, tt.wantLocation)
			}
			if tt.wantLocation == "" {
				if want := map[bool]string{true: `id="idp-signed-out"`, false: `id="idp-error"`}[tt.wantEnded]; !strings.Contains(body, want) {
					t.Errorf("page lacks %s:\n%s", want, body)
				}
			}
			if got, want := p.Sessions("1"), map[bool]int{true: 0, false: 1}[tt.wantEnded]; got != want {
				t.Errorf("Sessions = %d, want %d", got, want)
			}
			if got, want := len(rc.received()), map[bool]int{true: 1, false: 0}[tt.wantEnded]; got != want {
				t.Errorf("back-channel logout tokens = %d, want %d", got, want)
			}
			if form := b.signIn("app", "s2").form; form != (tt.wantEnded || tt.forget) {
				t.Errorf("next authorization request shows the form = %v, want %v", form, tt.wantEnded || tt.forget)
			}
		})
	}
}

func TestBackchannelLogoutToken(t *testing.T) {
	rc := newReceiver(t, http.StatusOK)
	p, srv := newLogoutServer(t, rc, nil)
	idToken := exchange(t, srv.URL, "app", newBrowser(t, srv.URL).signIn("app", "s").redirect.Get("code")).IDToken
	_, id := verifyJWT(t, srv.URL, idToken)
	resp, _ := newBrowser(t, srv.URL).get(srv.URL + "/logout?" + url.Values{"id_token_hint": {idToken}}.Encode())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	got := rc.received()
	if len(got) != 1 {
		t.Fatalf("logout tokens received: %d, want 1", len(got))
	}
	typ, claims := verifyJWT(t, srv.URL, got[0])
	if typ != "logout+jwt" {
		t.Errorf("typ = %q, want logout+jwt", typ)
	}
	var names []string
	for k := range claims {
		names = append(names, k)
	}
	slices.Sort(names)
	if want := []string{"aud", "events", "exp", "iat", "iss", "jti", "sid", "sub"}; !slices.Equal(names, want) {
		t.Errorf("claims = %v, want exactly %v", names, want)
	}
	events, _ := json.Marshal(claims["events"])
	checks := []struct {
		claim     string
		got, want any
	}{
		{"iss", claims["iss"], srv.URL},
		{"aud", claims["aud"], "app"},
		{"sub", claims["sub"], "1"},
		{"sid", claims["sid"], id["sid"]},
		{"events", string(events), `{"http://schemas.openid.net/event/backchannel-logout":{}}`},
		{"exp-iat", claims["exp"].(float64) - claims["iat"].(float64), float64(120)},
		{"jti set", claims["jti"] != "", true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.claim, c.got, c.want)
		}
	}
	res := p.BackchannelResults()
	if len(res) != 1 || res[0].ClientID != "app" || res[0].URL != rc.URL || res[0].Status != http.StatusOK ||
		res[0].Err != nil || res[0].SID != id["sid"] || res[0].Subject != "1" {
		t.Errorf("BackchannelResults = %+v", res)
	}
}

func TestSignOutSubject(t *testing.T) {
	tests := []struct {
		name    string
		status  int // the receiver's answer
		wantErr bool
	}{
		{name: "delivered", status: http.StatusOK},
		{name: "refused by the client", status: http.StatusBadRequest, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, tt.status)
			p, srv := newLogoutServer(t, rc, func(cfg *Config) {
				cfg.Users = append(cfg.Users, User{Subject: "2", Email: "b@example.com", Password: "pw2"})
			})
			// Two sessions of user 1: the first also signs in to "other",
			// which has no back-channel URI; the second is offline_access.
			first := newBrowser(t, srv.URL)
			tr1 := exchange(t, srv.URL, "app", first.signIn("app", "a").redirect.Get("code"))
			exchange(t, srv.URL, "other", first.signIn("other", "b").redirect.Get("code"))
			tr2 := exchange(t, srv.URL, "app", newBrowser(t, srv.URL).signIn("app", "c", "scope", "openid offline_access").redirect.Get("code"))
			someoneElse := newBrowser(t, srv.URL)
			someoneElse.user, someoneElse.password = "b@example.com", "pw2"
			exchange(t, srv.URL, "app", someoneElse.signIn("app", "d").redirect.Get("code"))
			if p.Sessions("1") != 2 || p.Sessions("2") != 1 {
				t.Fatalf("Sessions = %d, %d; want 2, 1", p.Sessions("1"), p.Sessions("2"))
			}

			if err := p.SignOutSubject("1"); (err != nil) != tt.wantErr {
				t.Fatalf("SignOutSubject: %v, want error %v", err, tt.wantErr)
			}
			var wantSIDs, gotSIDs []string
			for _, tr := range []tokenResponse{tr1, tr2} {
				_, c := verifyJWT(t, srv.URL, tr.IDToken)
				wantSIDs = append(wantSIDs, c["sid"].(string))
			}
			for _, lt := range rc.received() {
				_, c := verifyJWT(t, srv.URL, lt)
				if c["sub"] != "1" || c["aud"] != "app" {
					t.Errorf("logout token sub %v aud %v", c["sub"], c["aud"])
				}
				gotSIDs = append(gotSIDs, c["sid"].(string))
			}
			slices.Sort(wantSIDs)
			slices.Sort(gotSIDs)
			if !slices.Equal(gotSIDs, wantSIDs) {
				t.Errorf("logout tokens for sids %v, want one per session %v", gotSIDs, wantSIDs)
			}
			if res := p.BackchannelResults(); len(res) != 2 || res[0].Status != tt.status || res[1].Status != tt.status {
				t.Errorf("BackchannelResults = %+v", res)
			}
			if p.Sessions("1") != 0 || p.Sessions("2") != 1 {
				t.Errorf("Sessions after = %d, %d; want 0, 1", p.Sessions("1"), p.Sessions("2"))
			}
			refresh := func(rt string) int {
				status, _ := tokens(t, srv.URL, "app", "s", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
				return status
			}
			if got := refresh(tr1.RefreshToken); got != http.StatusBadRequest {
				t.Errorf("refresh of the ended session: %d, want 400", got)
			}
			if got := refresh(tr2.RefreshToken); got != http.StatusOK {
				t.Errorf("offline_access refresh: %d, want 200", got)
			}
			if !first.signIn("app", "e").form {
				t.Error("the ended session still skips the form")
			}
		})
	}
}

func TestLogoutTokenHook(t *testing.T) {
	tests := []struct {
		name, client, subject, sid string
		wantErr                    bool
		want                       []string // claims besides iss, aud, iat, exp, jti, events
	}{
		{name: "sub and sid", client: "app", subject: "1", sid: "x", want: []string{"sid", "sub"}},
		{name: "sid stripped", client: "app", subject: "1", want: []string{"sub"}},
		{name: "sub stripped", client: "app", sid: "x", want: []string{"sid"}},
		{name: "no client", subject: "1", wantErr: true},
	}
	p, srv := newServer(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lt, err := p.LogoutToken(tt.client, tt.subject, tt.sid)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			typ, claims := verifyJWT(t, srv.URL, lt)
			want := append([]string{"aud", "events", "exp", "iat", "iss", "jti"}, tt.want...)
			slices.Sort(want)
			var got []string
			for k := range claims {
				got = append(got, k)
			}
			slices.Sort(got)
			if typ != "logout+jwt" || !slices.Equal(got, want) {
				t.Errorf("typ %q claims %v; want logout+jwt, %v", typ, got, want)
			}
			if claims["sub"] != nil && claims["sub"] != tt.subject || claims["sid"] != nil && claims["sid"] != tt.sid {
				t.Errorf("claims = %v", claims)
			}
		})
	}
	if p.BackchannelResults() != nil {
		t.Error("LogoutToken sent something")
	}
}

func TestDiscoveryAdvertisesLogout(t *testing.T) {
	_, srv := newServer(t)
	resp, err := http.Get(srv.URL + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var meta map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&meta); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"end_session_endpoint":                 srv.URL + "/logout",
		"backchannel_logout_supported":         true,
		"backchannel_logout_session_supported": true,
		"frontchannel_logout_supported":        false,
	} {
		if meta[k] != want {
			t.Errorf("%s = %v, want %v", k, meta[k], want)
		}
	}
}
