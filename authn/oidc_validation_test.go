package authn

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/filters"
)

// TestOIDCCallbackRefusesIDTokensCoreRequiresRejecting drives a browser
// through /start, a real (test) OpenID provider and the callback, for the
// generic OIDC provider and for GitLab, with ID tokens and userinfo
// answers that OpenID Connect Core 1.0 §3.1.3.7, §3.1.3.8 and §5.3.2 say
// must be refused. A refused sign-in shows a 4xx error page, creates no
// session and sets no session cookie; nothing the provider handed out is
// logged.
func TestOIDCCallbackRefusesIDTokensCoreRequiresRejecting(t *testing.T) {
	tests := []struct {
		name     string
		idToken  func(c map[string]any, refresh bool)
		userInfo func(c map[string]any)
		otherKey bool
		ok       bool
	}{
		{name: "valid", ok: true},
		{name: "no sub", idToken: func(c map[string]any, _ bool) { delete(c, "sub") }},
		{name: "empty sub", idToken: func(c map[string]any, _ bool) { c["sub"] = "" }},
		{name: "no iat", idToken: func(c map[string]any, _ bool) { delete(c, "iat") }},
		{name: "iat in the future", idToken: func(c map[string]any, _ bool) { c["iat"] = time.Now().Add(time.Hour).Unix() }},
		{name: "azp another client", idToken: func(c map[string]any, _ bool) { c["azp"] = "someone-else" }},
		{name: "azp empty", idToken: func(c map[string]any, _ bool) { c["azp"] = "" }},
		{name: "two audiences without azp", idToken: func(c map[string]any, _ bool) { c["aud"] = []any{fakeClientID, "someone-else"} }},
		{name: "two audiences with azp of another client", idToken: func(c map[string]any, _ bool) {
			c["aud"], c["azp"] = []any{fakeClientID, "someone-else"}, "someone-else"
		}},
		{name: "two audiences with azp this client", ok: true, idToken: func(c map[string]any, _ bool) {
			c["aud"], c["azp"] = []any{fakeClientID, "someone-else"}, fakeClientID
		}},
		{name: "one audience with azp this client", ok: true, idToken: func(c map[string]any, _ bool) { c["azp"] = fakeClientID }},
		{name: "audience another client only", idToken: func(c map[string]any, _ bool) { c["aud"] = "someone-else" }},
		{name: "nonce of another sign-in", idToken: func(c map[string]any, _ bool) { c["nonce"] = randomToken(32) }},
		{name: "no nonce", idToken: func(c map[string]any, _ bool) { delete(c, "nonce") }},
		{name: "at_hash of another access token", idToken: func(c map[string]any, _ bool) { c["at_hash"] = "AAAAAAAAAAAAAAAAAAAAAA" }},
		{name: "no at_hash", ok: true, idToken: func(c map[string]any, _ bool) { delete(c, "at_hash") }},
		{name: "iss not exactly the issuer", idToken: func(c map[string]any, _ bool) { c["iss"] = c["iss"].(string) + "/" }},
		{name: "expired", idToken: func(c map[string]any, _ bool) {
			c["iat"], c["exp"] = time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
		}},
		{name: "signed with another key", otherKey: true},
		{name: "userinfo of another subject", idToken: func(c map[string]any, _ bool) { delete(c, "email") },
			userInfo: func(c map[string]any) { c["sub"] = "u-2" }},
		{name: "userinfo without sub", idToken: func(c map[string]any, _ bool) { delete(c, "email") },
			userInfo: func(c map[string]any) { delete(c, "sub") }},
		{name: "userinfo of another subject when only email_verified is missing", idToken: func(c map[string]any, _ bool) { delete(c, "email_verified") },
			userInfo: func(c map[string]any) { c["sub"] = "u-2" }},
	}
	for _, provider := range []string{"oidc", "gitlab"} {
		for _, tt := range tests {
			t.Run(provider+"/"+tt.name, func(t *testing.T) {
				h := newOIDCHarness(t, provider == "gitlab", filters.Lists{Domains: []string{"example.com"}}, false, "")
				h.idp.set(func(f *fakeIDP) { f.idToken, f.userInfo, f.otherKey = tt.idToken, tt.userInfo, tt.otherKey })
				resp := h.signIn(t)
				body := bodyOf(t, resp)
				if tt.ok {
					if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/app" || sessionCookie(resp) == nil {
						t.Fatalf("status %d, location %q: want signed in and sent to /app; page: %s",
							resp.StatusCode, resp.Header.Get("Location"), body)
					}
					if h.store.Len() == 0 {
						t.Fatal("signed in but no session stored")
					}
				} else {
					if resp.StatusCode < 400 || resp.StatusCode >= 500 {
						t.Fatalf("status %d, want a 4xx error page; page: %s", resp.StatusCode, body)
					}
					if !strings.Contains(body, "Sign-in failed") {
						t.Fatalf("the error page does not say the sign-in failed: %s", body)
					}
					if c := sessionCookie(resp); c != nil {
						t.Fatalf("a refused sign-in set the session cookie")
					}
					if n := h.store.Len(); n != 0 {
						t.Fatalf("a refused sign-in left %d records in the session store", n)
					}
				}
				h.noSecretsLogged(t)
			})
		}
	}
}

// TestOIDCIssuerMustMatchExactly: go-oidc accepts the scheme-less
// "accounts.google.com" for the issuer https://accounts.google.com; Core
// §3.1.3.7 item 2 wants the issuer exactly.
func TestOIDCIssuerMustMatchExactly(t *testing.T) {
	tests := []struct {
		name string
		iss  string
		ok   bool
	}{
		{"exact", "https://accounts.google.com", true},
		{"without scheme", "accounts.google.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newOIDCHarness(t, false, filters.Lists{Domains: []string{"example.com"}}, false, "https://accounts.google.com")
			h.idp.set(func(f *fakeIDP) { f.idToken = func(c map[string]any, _ bool) { c["iss"] = tt.iss } })
			resp := h.signIn(t)
			if got := resp.StatusCode == http.StatusFound && sessionCookie(resp) != nil; got != tt.ok {
				t.Fatalf("status %d: signed in = %v, want %v", resp.StatusCode, got, tt.ok)
			}
			if !tt.ok && (resp.StatusCode != http.StatusBadRequest || h.store.Len() != 0) {
				t.Fatalf("status %d, %d stored records: want 400 and no session", resp.StatusCode, h.store.Len())
			}
		})
	}
}

// TestOIDCEmailVerified: with allowed_domains, only an address the
// provider says is verified lets the user in. A missing email_verified
// does not (the "nOAuth" class: the e-mail claim is often a field the user
// sets), unless insecure_skip_email_verified, which never overrides an
// explicit false. String values are understood. userinfo may supply
// email_verified, but only about the same address.
func TestOIDCEmailVerified(t *testing.T) {
	unset := struct{}{} // the ID token carries no email_verified
	tests := []struct {
		name     string
		gitlab   bool
		skip     bool // insecure_skip_email_verified
		idToken  any  // email_verified in the ID token, unset: absent
		userInfo func(c map[string]any)
		uiStatus int // userinfo answers with this status
		allowed  bool
	}{
		{name: "true", idToken: true, allowed: true},
		{name: "false", idToken: false},
		{name: "absent", idToken: unset},
		{name: "null", idToken: nil},
		{name: "number 1", idToken: 1},
		{name: "string true", idToken: "true", allowed: true},
		{name: "string True", idToken: "True", allowed: true},
		{name: "string false", idToken: "false"},
		{name: "string yes", idToken: "yes"},
		{name: "absent with insecure_skip_email_verified", skip: true, idToken: unset,
			userInfo: func(c map[string]any) { delete(c, "email_verified") }, allowed: true},
		{name: "false with insecure_skip_email_verified", skip: true, idToken: false},
		{name: "string false with insecure_skip_email_verified", skip: true, idToken: "false"},
		{name: "absent, userinfo verifies the same address", idToken: unset,
			userInfo: func(c map[string]any) { c["email_verified"] = true }, allowed: true},
		{name: "absent, userinfo verifies another address", idToken: unset,
			userInfo: func(c map[string]any) { c["email"], c["email_verified"] = "alice@other.test", true }},
		{name: "absent, userinfo fails: unverified, not an outage", idToken: unset, uiStatus: http.StatusInternalServerError},
		{name: "no address in the ID token, userinfo has it verified", idToken: unset,
			userInfo: func(c map[string]any) { c["email_verified"] = true }, allowed: true},
		{name: "verified in the ID token without an address, userinfo has it unverified", idToken: true,
			userInfo: func(c map[string]any) { delete(c, "email_verified") }},
		{name: "gitlab true", gitlab: true, idToken: true, allowed: true},
		{name: "gitlab absent", gitlab: true, idToken: unset, userInfo: func(c map[string]any) { delete(c, "email_verified") }},
		{name: "gitlab false", gitlab: true, idToken: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newOIDCHarness(t, tt.gitlab, filters.Lists{Domains: []string{"example.com"}}, tt.skip, "")
			noAddress := strings.HasPrefix(tt.name, "no address") || strings.HasPrefix(tt.name, "verified in the ID token without")
			h.idp.set(func(f *fakeIDP) {
				f.emailVerified = tt.idToken
				f.idToken = func(c map[string]any, _ bool) {
					if tt.idToken == unset {
						delete(c, "email_verified")
					} else {
						c["email_verified"] = tt.idToken
					}
					if noAddress {
						delete(c, "email")
					}
				}
				f.userInfo = func(c map[string]any) {
					if tt.idToken == unset {
						delete(c, "email_verified")
					}
					if tt.userInfo != nil {
						tt.userInfo(c)
					}
				}
				f.userInfoCode = tt.uiStatus
			})
			resp := h.signIn(t)
			body := bodyOf(t, resp)
			if tt.allowed {
				if resp.StatusCode != http.StatusFound || sessionCookie(resp) == nil {
					t.Fatalf("status %d: want signed in; page: %s", resp.StatusCode, body)
				}
				return
			}
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "not verified") {
				t.Fatalf("status %d: want 403 saying the address is not verified; page: %s", resp.StatusCode, body)
			}
			if sessionCookie(resp) != nil || h.store.Len() != 0 {
				t.Fatal("a user without a verified address got a session")
			}
		})
	}
}

// TestOIDCRevalidationChecksRefreshedIDTokens: an ID token obtained with
// the refresh token during revalidation gets the sign-in's checks, for the
// generic OIDC provider and for GitLab. One
// that fails them ends the session; a userinfo answer about someone else
// too; a refreshed token without email_verified leaves the address
// unverified, so an e-mail filter no longer passes.
func TestOIDCRevalidationChecksRefreshedIDTokens(t *testing.T) {
	refreshed := func(edit func(c map[string]any)) func(c map[string]any, refresh bool) {
		return func(c map[string]any, refresh bool) {
			if refresh {
				edit(c)
			}
		}
	}
	tests := []struct {
		name        string
		idToken     func(c map[string]any, refresh bool)
		userInfo    func(c map[string]any)
		refreshNoID bool
		want        string // "kept", "revoked", or "unverified": kept, but the e-mail filter fails
	}{
		{name: "valid", want: "kept"},
		{name: "no sub", idToken: refreshed(func(c map[string]any) { delete(c, "sub") }), want: "revoked"},
		{name: "no iat", idToken: refreshed(func(c map[string]any) { delete(c, "iat") }), want: "revoked"},
		{name: "azp another client", idToken: refreshed(func(c map[string]any) { c["azp"] = "someone-else" }), want: "revoked"},
		{name: "two audiences without azp", idToken: refreshed(func(c map[string]any) { c["aud"] = []any{fakeClientID, "x"} }), want: "revoked"},
		{name: "at_hash of another access token", idToken: refreshed(func(c map[string]any) { c["at_hash"] = "AAAAAAAAAAAAAAAAAAAAAA" }), want: "revoked"},
		{name: "another subject", idToken: refreshed(func(c map[string]any) { c["sub"] = "u-2" }), want: "revoked"},
		{name: "userinfo of another subject", idToken: refreshed(func(c map[string]any) { delete(c, "email") }),
			userInfo: func(c map[string]any) { c["sub"] = "u-2" }, want: "revoked"},
		{name: "no id_token, userinfo without sub", refreshNoID: true,
			userInfo: func(c map[string]any) { delete(c, "sub") }, want: "revoked"},
		{name: "email_verified missing", idToken: refreshed(func(c map[string]any) { delete(c, "email_verified") }),
			userInfo: func(c map[string]any) { delete(c, "email_verified") }, want: "unverified"},
		{name: "no id_token, userinfo without email_verified", refreshNoID: true,
			userInfo: func(c map[string]any) { delete(c, "email_verified") }, want: "unverified"},
	}
	for _, provider := range []string{"oidc", "gitlab"} {
		for _, tt := range tests {
			t.Run(provider+"/"+tt.name, func(t *testing.T) {
				h := newOIDCHarness(t, provider == "gitlab", filters.Lists{Domains: []string{"example.com"}}, false, "")
				s, cookie := h.signedInSession(t)
				h.idp.set(func(f *fakeIDP) { f.idToken, f.userInfo, f.refreshNoID = tt.idToken, tt.userInfo, tt.refreshNoID })
				later := func() time.Time { return time.Now().Add(2 * time.Hour) }
				got, err := NewRevalidator(h.login, h.sessions, time.Hour, later).Check(context.Background(), s)
				switch tt.want {
				case "revoked":
					if !errors.Is(err, ErrRevoked) {
						t.Fatalf("err = %v, want the session ended", err)
					}
					if _, err := h.load(cookie); err == nil {
						t.Fatal("the ended session's cookie still loads a session")
					}
				case "kept", "unverified":
					if err != nil {
						t.Fatal(err)
					}
					if got.Identity.Subject != fakeSubject || got.ValidatedAt.Before(time.Now().Add(time.Hour)) {
						t.Fatalf("identity %+v validated at %s: want a fresh check of the same user", got.Identity, got.ValidatedAt)
					}
					if allowed := h.provider.Rule().Check(got.Identity).Allowed; allowed != (tt.want == "kept") {
						t.Fatalf("after revalidation the domain filter allows = %v, want %v (email_verified=%v)",
							allowed, tt.want == "kept", got.Identity.EmailVerified)
					}
				}
				h.noSecretsLogged(t)
			})
		}
	}
}

// TestOIDCConfigWarnsAboutInsecureSkipEmailVerified: the start-up
// warnings name each provider that trusts an absent email_verified.
func TestOIDCConfigWarnsAboutInsecureSkipEmailVerified(t *testing.T) {
	tests := []struct {
		name string
		skip map[string]bool
		want []string
	}{
		{"off", map[string]bool{"corp": false}, nil},
		{"on", map[string]bool{"corp": true}, []string{"corp"}},
		{"one of two", map[string]bool{"corp": false, "partner": true}, []string{"partner"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Config: filters.Config{AllowedDomains: []string{"example.com"}}, OIDC: map[string]OIDCConfig{}}
			for name, skip := range tt.skip {
				c.OIDC[name] = OIDCConfig{IssuerURL: "https://sso.example.com", ClientID: "id", InsecureSkipEmailVerified: skip}
			}
			_, warnings, ps := c.Validate()
			if len(ps) != 0 {
				t.Fatal(ps)
			}
			var got []string
			for _, w := range warnings {
				if strings.Contains(w, "insecure_skip_email_verified") {
					got = append(got, w)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("warnings %q, want one for each of %q", warnings, tt.want)
			}
			for i, name := range tt.want {
				if !strings.Contains(got[i], "auth.oidc."+name+".") {
					t.Errorf("warning %q does not name provider %s", got[i], name)
				}
			}
		})
	}
}
