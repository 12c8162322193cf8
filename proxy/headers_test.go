package proxy

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/assertion"
	"github.com/gatehouse/gatehouse/handoff"
	"github.com/gatehouse/gatehouse/identity"
)

var defaultHeaders = HeadersConfig{
	User: "X-Forwarded-User", Email: "X-Forwarded-Email", Groups: "X-Forwarded-Groups",
	PreferredUsername: "X-Forwarded-Preferred-Username",
	Assertion:         assertion.Config{Enabled: true, Header: "X-Gatehouse-Assertion"},
}

func TestStripRemovesIdentityHeadersInAnySpelling(t *testing.T) {
	custom := HeadersConfig{User: "X-Remote-Login", Email: "X-Corp-Mail", Assertion: assertion.Config{Header: "X-Corp-Jwt"}}
	disabled := HeadersConfig{} // every identity header turned off
	tests := []struct {
		name   string
		cfg    HeadersConfig
		header string
	}{
		{"canonical", defaultHeaders, "X-Forwarded-Email"},
		{"underscores", defaultHeaders, "X_Forwarded_Email"},
		{"lower case", defaultHeaders, "x-forwarded-email"},
		{"mixed underscores and case", defaultHeaders, "x_FORWARDED-user"},
		{"groups", defaultHeaders, "X-Forwarded-Groups"},
		{"preferred username", defaultHeaders, "X-Forwarded-Preferred-Username"},
		{"access token", defaultHeaders, "X-Forwarded-Access-Token"},
		{"assertion", defaultHeaders, "X-Gatehouse-Assertion"},
		{"assertion, underscores", defaultHeaders, "x_gatehouse_assertion"},
		{"any auth-request header", defaultHeaders, "X-AUTH-REQUEST-ANYTHING"},
		{"auth-request with underscores", defaultHeaders, "X_Auth_Request_Email"},
		{"remote user", defaultHeaders, "X-Remote-User"},
		{"custom user", custom, "X-Remote-Login"},
		{"custom e-mail, underscores", custom, "x_corp_mail"},
		{"custom assertion", custom, "X-Corp-Jwt"},
		{"default e-mail with a custom config", custom, "X-Forwarded-Email"},
		{"e-mail turned off", disabled, "X-Forwarded-Email"},
		{"user turned off", disabled, "X_Forwarded_User"},
		{"assertion turned off", disabled, "X-Gatehouse-Assertion"},
		{"auth-request with everything off", disabled, "X-Auth-Request-User"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Set the map directly: a server hands non-canonical names
			// through as they came.
			hdr := http.Header{tt.header: {"ceo@example.com"}, "Accept": {"text/html"}, "X-Request-Id": {"abc"}}
			newIdentityHeaders(tt.cfg).strip(hdr)
			if _, ok := hdr[tt.header]; ok {
				t.Fatalf("%s survived", tt.header)
			}
			if hdr.Get("Accept") != "text/html" || hdr.Get("X-Request-Id") != "abc" {
				t.Fatalf("unrelated headers removed: %v", hdr)
			}
		})
	}
}

func TestStripKeepsLookAlikes(t *testing.T) {
	hdr := http.Header{}
	keep := []string{"X-Forwarded-Emails", "X-Forwarded-For", "X-Forwarded-Proto", "X-Auth-Requester", "Authorization", "Cookie", "X-Gatehouse-Assertion2"}
	for _, k := range keep {
		hdr[k] = []string{"v"}
	}
	newIdentityHeaders(defaultHeaders).strip(hdr)
	for _, k := range keep {
		if _, ok := hdr[k]; !ok {
			t.Errorf("%s was removed", k)
		}
	}
}

func TestSetIdentityHeaders(t *testing.T) {
	id := identity.Identity{User: "alice", Email: "alice@example.com", Groups: []string{"ops", "acme/infra"}, PreferredUsername: "Alice\r\nX-Injected: 1"}
	tests := []struct {
		name string
		cfg  HeadersConfig
		want http.Header
	}{
		{"defaults", defaultHeaders, http.Header{
			"X-Forwarded-User": {"alice"}, "X-Forwarded-Email": {"alice@example.com"},
			"X-Forwarded-Groups": {"ops,acme/infra"}, "X-Forwarded-Preferred-Username": {"AliceX-Injected: 1"},
		}},
		{"e-mail and groups turned off", HeadersConfig{User: "X-Forwarded-User"}, http.Header{"X-Forwarded-User": {"alice"}}},
		{"custom names", HeadersConfig{User: "X-Remote-Login", Email: "X-Corp-Mail"}, http.Header{
			"X-Remote-Login": {"alice"}, "X-Corp-Mail": {"alice@example.com"},
		}},
		{"access token when asked", HeadersConfig{PassAccessToken: true}, http.Header{"X-Forwarded-Access-Token": {"provider-token"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := http.Header{}
			newIdentityHeaders(tt.cfg).set(hdr, newIdentityValues(id), "provider-token")
			if len(hdr) != len(tt.want) {
				t.Fatalf("headers = %v, want %v", hdr, tt.want)
			}
			for k, v := range tt.want {
				if !slices.Equal(hdr.Values(k), v) {
					t.Fatalf("%s = %q, want %q", k, hdr.Values(k), v)
				}
			}
		})
	}
	// No groups: the header is left out rather than sent empty.
	hdr := http.Header{}
	newIdentityHeaders(defaultHeaders).set(hdr, newIdentityValues(identity.Identity{User: "bob"}), "")
	if _, ok := hdr["X-Forwarded-Groups"]; ok {
		t.Fatalf("empty groups sent: %v", hdr)
	}
}

func TestStripCookie(t *testing.T) {
	tests := []struct {
		name    string
		cookie  string
		session string // session cookie name; "" for _gatehouse
		want    string // "" for no Cookie header at all
	}{
		{"session and state cookies go, others stay", "a=1; _gatehouse=secret; _gatehouse_state_abc=x; b=2", "", "a=1; b=2"},
		{"only ours", "_gatehouse=secret", "", ""},
		{"spaces around the name", " _gatehouse =secret; a=1", "", "a=1"},
		{"no spaces after ;", "_gatehouse=secret;a=1;_gatehouse_state_x=y", "", "a=1"},
		{"prefix of our name is not ours", "_gate=1; _gatehousex=2", "", "_gate=1; _gatehousex=2"},
		{"names are case-sensitive", "_GATEHOUSE=1", "", "_GATEHOUSE=1"},
		{"empty parts dropped", "a=1;;  ; b=2", "", "a=1; b=2"},
		{"custom name", "sso=ticket; sso_state_abc=x; _gatehouse=other-app", "sso", "_gatehouse=other-app"},
		{"__Host- session, __Secure- state", "__Host-gh=t; __Secure-gh_state_abc=s; keep=1", "__Host-gh", "keep=1"},
		// The hand-off binding cookie is sent with every request to a
		// route host (Path=/), in either of its forms.
		{"binding cookie, secure", "a=1; " + handoff.BindingCookieName("_gatehouse", true) + "=nonce", "", "a=1"},
		{"binding cookie, plain", handoff.BindingCookieName("_gatehouse", false) + "=nonce; a=1", "", "a=1"},
		{"binding cookie of a __Host- session", handoff.BindingCookieName("__Host-gh", true) + "=n; keep=1", "__Host-gh", "keep=1"},
		{"binding cookie of a __Secure- session", handoff.BindingCookieName("__Secure-gh", true) + "=n; keep=1", "__Secure-gh", "keep=1"},
		{"another app's __Host- cookie stays", "__Host-app=1", "", "__Host-app=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			session := tt.session
			if session == "" {
				session = "_gatehouse"
			}
			hdr := http.Header{"Cookie": {tt.cookie}}
			stripCookie(hdr, session)
			if got := strings.Join(hdr.Values("Cookie"), " | "); got != tt.want {
				t.Fatalf("Cookie = %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("several Cookie lines", func(t *testing.T) {
		hdr := http.Header{"Cookie": {"a=1; _gatehouse=secret", "_gatehouse_state_abc=x", "b=2"}}
		stripCookie(hdr, "_gatehouse")
		if got := hdr.Values("Cookie"); len(got) != 1 || got[0] != "a=1; b=2" {
			t.Fatalf("Cookie = %q", got)
		}
	})
}

func TestStripSetCookie(t *testing.T) {
	hdr := http.Header{"Set-Cookie": {
		"_gatehouse=planted; Path=/", " _gatehouse=planted", "_gatehouse_state_abcdefghijkl=x; Path=/oauth2/callback/",
		"app=1; Path=/", "_gatehouse2=fine", handoff.BindingCookieName("_gatehouse", true) + "=planted; Path=/; Secure",
	}}
	stripSetCookie(hdr, "_gatehouse")
	if got := hdr.Values("Set-Cookie"); !slices.Equal(got, []string{"app=1; Path=/", "_gatehouse2=fine"}) {
		t.Fatalf("Set-Cookie = %q", got)
	}
	hdr = http.Header{"Set-Cookie": {"_gatehouse=x"}}
	stripSetCookie(hdr, "_gatehouse")
	if _, ok := hdr["Set-Cookie"]; ok {
		t.Fatalf("empty Set-Cookie left behind: %v", hdr)
	}
}
