package authn

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/internal/confcheck"
	"github.com/gatehouse/gatehouse/session"
)

// signFake signs claims as the fake provider (other: with a key its JWKS
// does not list).
func signFake(t *testing.T, claims map[string]any, other bool) string {
	t.Helper()
	key := fakeKeys()[0]
	if other {
		key = fakeKeys()[1]
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}},
		(&jose.SignerOptions{}).WithType("logout+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestLogoutTokenVerification(t *testing.T) {
	h := newOIDCHarnessWith(t, false, filters.Lists{}, "", func(c *OIDCConfig, _ *LoginConfig) { c.BackchannelLogout = true })
	now := time.Now()
	valid := func() map[string]any {
		return map[string]any{
			"iss": h.idp.issuer, "aud": fakeClientID, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
			"jti": "j-1", "sid": "s-1", "sub": fakeSubject,
			"events": map[string]any{backchannelEvent: map[string]any{}},
		}
	}
	unsigned := func(c map[string]any) string {
		// alg none: go-jose will not produce one, so it is built by hand.
		hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"logout+jwt"}`))
		body := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"` + h.idp.issuer + `","aud":"` + fakeClientID +
			`","iat":` + strconv.FormatInt(now.Unix(), 10) + `,"jti":"x","sid":"s","events":{"` + backchannelEvent + `":{}}}`))
		return hdr + "." + body + "."
	}
	tests := []struct {
		name    string
		edit    func(c map[string]any)
		raw     func() string
		other   bool
		wantErr bool
		want    LogoutClaims
	}{
		{name: "valid", edit: func(map[string]any) {}, want: LogoutClaims{SID: "s-1", Subject: fakeSubject, JTI: "j-1"}},
		{name: "sub only", edit: func(c map[string]any) { delete(c, "sid") }, want: LogoutClaims{Subject: fakeSubject, JTI: "j-1"}},
		{name: "sid only", edit: func(c map[string]any) { delete(c, "sub") }, want: LogoutClaims{SID: "s-1", JTI: "j-1"}},
		{name: "no exp, recent iat", edit: func(c map[string]any) { delete(c, "exp") }, want: LogoutClaims{SID: "s-1", Subject: fakeSubject, JTI: "j-1"}},
		{name: "no exp, old iat", edit: func(c map[string]any) { delete(c, "exp"); c["iat"] = now.Add(-time.Hour).Unix() }, wantErr: true},
		{name: "neither sid nor sub", edit: func(c map[string]any) { delete(c, "sid"); delete(c, "sub") }, wantErr: true},
		{name: "a nonce: an ID token", edit: func(c map[string]any) { c["nonce"] = "n" }, wantErr: true},
		{name: "no events", edit: func(c map[string]any) { delete(c, "events") }, wantErr: true},
		{name: "another event", edit: func(c map[string]any) { c["events"] = map[string]any{"urn:other": map[string]any{}} }, wantErr: true},
		{name: "event not an object", edit: func(c map[string]any) { c["events"] = map[string]any{backchannelEvent: "yes"} }, wantErr: true},
		{name: "no jti", edit: func(c map[string]any) { delete(c, "jti") }, wantErr: true},
		{name: "no iat", edit: func(c map[string]any) { delete(c, "iat") }, wantErr: true},
		{name: "iat in the future", edit: func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() }, wantErr: true},
		{name: "expired", edit: func(c map[string]any) { c["exp"] = now.Add(-5 * time.Minute).Unix() }, wantErr: true},
		{name: "another audience", edit: func(c map[string]any) { c["aud"] = "someone-else" }, wantErr: true},
		{name: "another issuer", edit: func(c map[string]any) { c["iss"] = "https://evil.example" }, wantErr: true},
		{name: "signed by another key", edit: func(map[string]any) {}, other: true, wantErr: true},
		{name: "alg none", raw: func() string { return unsigned(valid()) }, wantErr: true},
		{name: "garbage", raw: func() string { return "not.a.jwt" }, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw string
			if tt.raw != nil {
				raw = tt.raw()
			} else {
				c := valid()
				tt.edit(c)
				raw = signFake(t, c, tt.other)
			}
			got, err := h.provider.VerifyLogoutToken(context.Background(), raw, now)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("accepted: %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.SID != tt.want.SID || got.Subject != tt.want.Subject || got.JTI != tt.want.JTI || !got.Until.After(now) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestAuthorizationRequestCarriesPromptAndExtraParams(t *testing.T) {
	h := newOIDCHarnessWith(t, false, filters.Lists{}, "", func(c *OIDCConfig, _ *LoginConfig) {
		c.Prompt = "select_account"
		c.ExtraAuthParams = map[string]string{"login_hint": "alice@example.com"}
	})
	rec := httptest.NewRecorder()
	h.login.Start(rec, httptest.NewRequest(http.MethodGet, "https://dash.example.com/oauth2/start", nil))
	u, err := url.Parse(rec.Header().Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("prompt") != "select_account" || q.Get("login_hint") != "alice@example.com" || q.Get("code_challenge_method") != "S256" || q.Get("nonce") == "" {
		t.Fatalf("authorization request: %s", u)
	}
}

func TestAuthParamsCannotReplaceTheProtocol(t *testing.T) {
	tests := []struct {
		prompt string
		extra  map[string]string
		want   []string // problem keys
	}{
		{"select_account", map[string]string{"login_hint": "a", "domain_hint": "b", "acr_values": "c"}, nil},
		{"login consent", nil, nil},
		{"sometimes", nil, []string{"prompt"}},
		{"none", nil, []string{"prompt"}}, // sign-in could never ask anything
		{"", map[string]string{"state": "x"}, []string{"extra_auth_params.state"}},
		{"", map[string]string{"Code_Challenge_Method": "plain"}, []string{"extra_auth_params.Code_Challenge_Method"}},
		{"", map[string]string{"nonce": "x", "redirect_uri": "https://evil"}, []string{"extra_auth_params.nonce", "extra_auth_params.redirect_uri"}},
	}
	for _, tt := range tests {
		var ps confcheck.Problems
		checkAuthParams(&ps, tt.prompt, tt.extra)
		var got []string
		for _, p := range ps {
			got = append(got, p.Key)
		}
		if strings.Join(sorted(got), ",") != strings.Join(sorted(tt.want), ",") {
			t.Errorf("prompt %q extra %v: problems %v, want %v", tt.prompt, tt.extra, got, tt.want)
		}
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// RP-initiated logout: sign_out ends the session here, then sends the
// browser to the provider's end_session_endpoint with the ID token as
// hint, the client id, and the signed-out page to come back to. A GET
// from another site ends only the Gatehouse session: a link elsewhere
// must not sign the person out of their identity provider.
func TestSignOutContinuesToTheProvidersEndSession(t *testing.T) {
	tests := []struct {
		name      string
		on        bool
		method    string
		fetchSite string
		wantIdP   bool
	}{
		{"on, link on this site", true, http.MethodGet, "same-origin", true},
		{"on, typed or bookmarked", true, http.MethodGet, "none", true},
		{"on, form post", true, http.MethodPost, "", true},
		{"on, link on another site", true, http.MethodGet, "cross-site", false},
		{"on, browser without fetch metadata", true, http.MethodGet, "", false},
		{"off", false, http.MethodGet, "same-origin", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newOIDCHarnessWith(t, false, filters.Lists{}, "", func(c *OIDCConfig, _ *LoginConfig) { c.EndSession = tt.on })
			h.idp.set(func(f *fakeIDP) { f.endSession = f.issuer + "/logout?tenant=1" })
			s, cookie := h.signedInSession(t)
			if tt.on != (s.Token.IDToken != "") {
				t.Fatalf("ID token kept = %v", s.Token.IDToken != "")
			}
			req := httptest.NewRequest(tt.method, "https://dash.example.com/oauth2/sign_out", nil)
			if tt.fetchSite != "" {
				req.Header.Set("Sec-Fetch-Site", tt.fetchSite)
			}
			req.AddCookie(cookie)
			rec := httptest.NewRecorder()
			h.login.SignOut(rec, req)
			if _, err := h.load(cookie); !errors.Is(err, session.ErrNoSession) {
				t.Fatalf("session survived sign-out: %v", err)
			}
			loc := rec.Header().Get("Location")
			if !tt.wantIdP {
				if strings.HasPrefix(loc, h.idp.issuer) {
					t.Fatalf("sent to the provider: %d %q", rec.Code, loc)
				}
				return
			}
			u, err := url.Parse(loc)
			if err != nil || rec.Code != http.StatusFound || !strings.HasPrefix(loc, h.idp.issuer+"/logout?") {
				t.Fatalf("sign-out: %d %q", rec.Code, loc)
			}
			q := u.Query()
			if q.Get("id_token_hint") != s.Token.IDToken || q.Get("client_id") != fakeClientID || q.Get("tenant") != "1" ||
				q.Get("post_logout_redirect_uri") != "https://dash.example.com/oauth2/signed_out" {
				t.Fatalf("end session request: %s", loc)
			}
		})
	}
}

// With back-channel logout on, a sign-in is bound to the provider's
// session, so a logout token naming its sid or its subject ends it.
func TestBackchannelSignInIsIndexed(t *testing.T) {
	for _, by := range []string{"sid", "sub"} {
		h := newOIDCHarnessWith(t, false, filters.Lists{}, "", func(c *OIDCConfig, _ *LoginConfig) { c.BackchannelLogout = true })
		h.idp.set(func(f *fakeIDP) { f.idToken = func(c map[string]any, _ bool) { c["sid"] = "idp-session-1" } })
		s1, c1 := h.signedInSession(t)
		_, c2 := h.signedInSession(t)
		if s1.Token.SID != "idp-session-1" {
			t.Fatalf("sid not kept: %+v", s1.Token)
		}
		sid := ""
		if by == "sid" {
			sid = "idp-session-1"
		}
		if err := h.sessions.EndProviderSessions(context.Background(), "corp", sid, fakeSubject); err != nil {
			t.Fatalf("by %s: %v", by, err)
		}
		for _, c := range []*http.Cookie{c1, c2} {
			if _, err := h.load(c); !errors.Is(err, session.ErrNoSession) {
				t.Fatalf("by %s: a session survived: %v", by, err)
			}
		}
	}
}

func TestLinkAccountsByVerifiedEmail(t *testing.T) {
	tests := []struct {
		link, verified bool
		want           string
	}{
		{true, true, "email:alice@example.com"},
		{true, false, ""},
		{false, true, ""},
	}
	for _, tt := range tests {
		h := newOIDCHarnessWith(t, false, filters.Lists{}, "", func(_ *OIDCConfig, l *LoginConfig) { l.LinkAccountsByVerifiedEmail = tt.link })
		h.idp.set(func(f *fakeIDP) { f.emailVerified = tt.verified })
		s, _ := h.signedInSession(t)
		if s.Identity.Account != tt.want {
			t.Errorf("link %v, verified %v: account %q, want %q", tt.link, tt.verified, s.Identity.Account, tt.want)
		}
	}
}

// Anybody can POST a logout token and iss and aud are public: forged
// tokens with made-up key ids must not make Gatehouse fetch the
// provider's keys for each one.
func TestLogoutTokensWithUnknownKeysFetchKeysAtMostOnceAMinute(t *testing.T) {
	h := newOIDCHarnessWith(t, false, filters.Lists{}, "", func(c *OIDCConfig, _ *LoginConfig) { c.BackchannelLogout = true })
	now := time.Now()
	claims := map[string]any{
		"iss": h.idp.issuer, "aud": fakeClientID, "iat": now.Unix(), "jti": "j", "sid": "s",
		"events": map[string]any{backchannelEvent: map[string]any{}},
	}
	for i := 0; i < 50; i++ {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: fakeKeys()[1], KeyID: "forged-" + strconv.Itoa(i)}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := jwt.Signed(signer).Claims(claims).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.provider.VerifyLogoutToken(context.Background(), raw, now); err == nil || errors.Is(err, ErrKeysUnavailable) {
			t.Fatalf("forged token %d: %v, want refused", i, err)
		}
	}
	var fetches int
	h.idp.set(func(f *fakeIDP) { fetches = f.keyFetches })
	if fetches != 1 {
		t.Fatalf("the keys were fetched %d times for 50 forged tokens, want 1", fetches)
	}
	// A genuine token still verifies with the keys fetched once.
	if _, err := h.provider.VerifyLogoutToken(context.Background(), signFake(t, claims, false), now); err != nil {
		t.Fatal(err)
	}
}

// A provider whose keys cannot be had makes a logout token unverifiable
// now, not refused: the provider is told to retry (503, see oauthserver).
func TestLogoutTokenWithTheProviderDownIsUnavailable(t *testing.T) {
	h := newOIDCHarnessWith(t, false, filters.Lists{}, "", func(c *OIDCConfig, _ *LoginConfig) { c.BackchannelLogout = true })
	h.idp.srv.Close()
	_, err := h.provider.VerifyLogoutToken(context.Background(), signFake(t, map[string]any{"iss": h.idp.issuer}, false), time.Now())
	if !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("provider down: %v, want ErrKeysUnavailable", err)
	}
}

func TestConfigRefusesUnsafeLinkingAndReservedNames(t *testing.T) {
	corp := OIDCConfig{IssuerURL: "https://sso.example.com", ClientID: "c"}
	skip := corp
	skip.InsecureSkipEmailVerified = true
	tests := []struct {
		name string
		cfg  Config
		want string // a problem key
	}{
		{"linking with an unverified provider", Config{LinkAccountsByVerifiedEmail: true, OIDC: map[string]OIDCConfig{"corp": skip}},
			"oidc.corp.insecure_skip_email_verified"},
		{"provider named email", Config{OIDC: map[string]OIDCConfig{"email": corp}}, "oidc.email"},
		{"provider named jwt", Config{OIDC: map[string]OIDCConfig{"jwt": corp}}, "oidc.jwt"},
	}
	for _, tt := range tests {
		tt.cfg.AllowAllUsers = true
		_, _, ps := tt.cfg.Validate()
		found := false
		for _, p := range ps {
			found = found || p.Key == tt.want
		}
		if !found {
			t.Errorf("%s: problems %v, want one at %s", tt.name, ps, tt.want)
		}
	}
	ok := Config{LinkAccountsByVerifiedEmail: true, OIDC: map[string]OIDCConfig{"corp": corp}}
	ok.AllowAllUsers = true
	if _, _, ps := ok.Validate(); len(ps) != 0 {
		t.Errorf("linking with a verifying provider: %v", ps)
	}
}
