package proxy

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/tokens"
)

// rawRequest writes a request by hand (Go's client would clean or escape
// the target; attackers do not) and reads the answer.
func rawRequest(t testing.TB, base, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: dash.example.com\r\nConnection: close\r\n")
	for k, v := range hdr {
		b.WriteString(k + ": " + v + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

// TestUpstreamReceivesTheCanonicalRequest: the target and method the
// upstream receives are exactly the ones decided on.
func TestUpstreamReceivesTheCanonicalRequest(t *testing.T) {
	f := newFixture(t, fixtureOpts{skipAuth: []string{"^/"}})
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	tests := []struct {
		method, target string
		wantMethod     string
		wantURI        string
	}{
		{"GET", "/%61dmin/x?q=%2F..%2F;x", "GET", "/admin/x?q=%2F..%2F;x"}, // the query is untouched
		{"GET", "/caf%c3%a9/%7e", "GET", "/caf%C3%A9/~"},
		{"GET", "/a%20b/c%21", "GET", "/a%20b/c%21"},
		{"GET", "/a\"b/{x}|€", "GET", "/a%22b/%7Bx%7D%7C%E2%82%AC"},
		{"GET", "//x//y", "GET", "//x//y"},
		{"delete", "/item/1", "DELETE", "/item/1"},
		{"Patch", "/item/1", "PATCH", "/item/1"},
		{"GET", "http://dash.example.com/abs%2dform?x", "GET", "/abs-form?x"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			resp := rawRequest(t, srv.URL, tt.method, tt.target, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			up := f.upstreamSaw(t)
			if up.Method != tt.wantMethod || up.RequestURI != tt.wantURI {
				t.Fatalf("upstream got %s %s, want %s %s", up.Method, up.RequestURI, tt.wantMethod, tt.wantURI)
			}
		})
	}
}

// TestAmbiguousPathsAreRefused covers SPEC's "Canonical requests" table
// against a skip-auth route: nothing ambiguous reaches the upstream.
func TestAmbiguousPathsAreRefused(t *testing.T) {
	f := newFixture(t, fixtureOpts{skipAuth: []string{"^/public/"}})
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	tests := []struct {
		method, target string
		want           int
		location       string
	}{
		{"GET", "/public/../admin", 308, "/admin"},
		{"HEAD", "/public/%2e%2e/admin?x=1", 308, "/admin?x=1"},
		{"GET", "/public/./x", 308, "/public/x"},
		{"GET", "/public/..//admin", 308, "https://dash.example.com//admin"}, // never "Location: //admin"
		{"POST", "/public/../admin", 400, ""},
		{"GET", `/public\..\admin`, 400, ""},
		{"GET", "/public/%5c..%5cadmin", 400, ""},
		{"GET", "/public/..;/admin/users", 400, ""},
		{"GET", "/public/..%3B/admin", 400, ""},
		{"GET", "/public/x;jsessionid=1", 400, ""},
		{"GET", "/public%2F..%2Fadmin", 400, ""},
		{"GET", "/public/%2e%2e%2fadmin", 400, ""},
		{"GET", "/public/%00", 400, ""},
		{"GET", "/public/%0d%0aX:1", 400, ""},
		{"GET", "/public/%c0%ae%c0%ae/admin", 400, ""},
		{"GET", "/public/%zz", 400, ""},    // Go's server refuses these itself
		{"GET", "/public/%u002e", 400, ""}, // (plain text, before any handler)
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			resp := rawRequest(t, srv.URL, tt.method, tt.target, map[string]string{"Accept": "application/json"})
			if resp.StatusCode != tt.want || resp.Header.Get("Location") != tt.location {
				t.Fatalf("got %d Location %q, want %d %q", resp.StatusCode, resp.Header.Get("Location"), tt.want, tt.location)
			}
			if tt.want == 400 && !strings.Contains(tt.target, "%zz") && !strings.Contains(tt.target, "%u") {
				body, _ := io.ReadAll(resp.Body)
				if !strings.Contains(string(body), `"invalid_request"`) {
					t.Errorf("400 without a JSON error: %s", body)
				}
			}
			f.upstreamNotCalled(t)
		})
	}
}

// TestOperatorPathChoices: encoded slashes and path parameters when the
// operator opts in.
func TestOperatorPathChoices(t *testing.T) {
	dave := aliceID
	dave.Subject, dave.User, dave.Groups = "2", "dave", []string{"staff"}
	policies := []filters.PolicyConfig{{Path: "^/admin(/|$)", AllowedGroups: []string{"ops"}}}

	t.Run("keep", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{skipAuth: []string{"^/public/"}, policies: policies, paths: [2]string{"keep", "keep"}})
		srv := httptest.NewServer(f.h)
		t.Cleanup(srv.Close)
		cookie := f.signIn(t, dave)
		hdr := map[string]string{"Accept": "application/json", "Cookie": cookie.Name + "=" + cookie.Value}
		for _, tt := range []struct {
			target  string
			anon    bool
			want    int
			wantURI string
		}{
			{"/repos/a%2fb/x", false, 200, "/repos/a%2Fb/x"}, // kept, as an ordinary character
			{"/public/x;v=1", true, 200, "/public/x;v=1"},    // both readings are public
			{"/public;v=1/x", true, 401, ""},                 // without parameters "/public/x", with them not public: needs both
			{"/admin;x/users", false, 403, ""},               // the policy applies if either reading matches
			{"/x;y/../admin", false, 308, ""},                // dots resolved first
			{"/public/..;/admin", true, 400, ""},
			{"/a/..%2F..%2Fadmin", false, 400, ""}, // an encoded slash hiding dots
		} {
			h := hdr
			if tt.anon {
				h = map[string]string{"Accept": "application/json"}
			}
			resp := rawRequest(t, srv.URL, "GET", tt.target, h)
			if resp.StatusCode != tt.want {
				t.Errorf("%s: %d, want %d", tt.target, resp.StatusCode, tt.want)
				continue
			}
			if tt.want == 200 {
				if up := f.upstreamSaw(t); up.RequestURI != tt.wantURI {
					t.Errorf("%s: upstream got %q, want %q", tt.target, up.RequestURI, tt.wantURI)
				}
			} else {
				f.upstreamNotCalled(t)
			}
		}
	})
	t.Run("decode", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{skipAuth: []string{"^/public/"}, paths: [2]string{"decode", ""}})
		srv := httptest.NewServer(f.h)
		t.Cleanup(srv.Close)
		resp := rawRequest(t, srv.URL, "GET", "/public%2Fx", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("/public%%2Fx: %d", resp.StatusCode)
		}
		if up := f.upstreamSaw(t); up.RequestURI != "/public/x" {
			t.Fatalf("upstream got %q", up.RequestURI)
		}
		resp = rawRequest(t, srv.URL, "GET", "/public%2F..%2Fadmin", nil)
		if resp.StatusCode != 308 || resp.Header.Get("Location") != "/admin" {
			t.Fatalf("decoded dots: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		f.upstreamNotCalled(t)
	})
}

// TestMethodsAreCanonical: a lower-case method meets the policy written
// for its upper-case form, and HEAD meets GET's.
func TestMethodsAreCanonical(t *testing.T) {
	f := newFixture(t, fixtureOpts{policies: []filters.PolicyConfig{
		{Path: "^/items", Methods: []string{"DELETE"}, AllowedGroups: []string{"ops"}},
		{Path: "^/reports", Methods: []string{"GET"}, AllowedGroups: []string{"ops"}},
	}})
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	dave := aliceID
	dave.Subject, dave.User, dave.Groups = "2", "dave", []string{"staff"}
	cookie := f.signIn(t, dave)
	hdr := map[string]string{"Accept": "application/json", "Cookie": cookie.Name + "=" + cookie.Value}
	for _, tt := range []struct {
		method, target string
		want           int
	}{
		{"delete", "/items/1", 403},
		{"Delete", "/items/1", 403},
		{"DELETE", "/items/1", 403},
		{"GET", "/items/1", 200},
		{"HEAD", "/reports/q3", 403},
		{"head", "/reports/q3", 403},
		{"POST", "/reports/q3", 200},
	} {
		resp := rawRequest(t, srv.URL, tt.method, tt.target, hdr)
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.target, resp.StatusCode, tt.want)
		}
		if tt.want == 200 {
			f.upstreamSaw(t)
		}
	}
	f.upstreamNotCalled(t)
}

const staticToken = "gth_static-test-token-0123456789abcdefghij"

func tokensWithStatic() *tokens.Config {
	sum := sha256.Sum256([]byte(staticToken))
	return &tokens.Config{
		Scopes: map[string][]tokens.ScopeRuleConfig{"read": {{Methods: []string{"GET"}, Paths: []string{"^/reports/"}}}},
		Static: []tokens.StaticConfig{{Name: "ci", SHA256: hex.EncodeToString(sum[:]), Scopes: []string{"read"}}},
	}
}

// TestForwardAuthOriginalRequest: the original URL of a forward-auth call
// goes through the same canonical rules, and an Envoy check never lands
// anywhere but the check.
func TestForwardAuthOriginalRequest(t *testing.T) {
	f := newFixture(t, fixtureOpts{trusted: []string{"127.0.0.1"}, tokens: tokensWithStatic(), policies: []filters.PolicyConfig{
		{Path: "^/+admin(/|$)", AllowedGroups: []string{"admins"}},
		{Path: "^/deploy", Methods: []string{"DELETE"}, AllowedGroups: []string{"admins"}},
	}})
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	cookie := f.signIn(t, aliceID) // not in admins
	withCookie := func(h map[string]string) map[string]string {
		out := map[string]string{"Cookie": cookie.Name + "=" + cookie.Value}
		for k, v := range h {
			out[k] = v
		}
		return out
	}
	bearer := map[string]string{"Authorization": "Bearer " + staticToken}
	for _, tt := range []struct {
		name, method, target string
		hdr                  map[string]string
		want                 int
	}{
		{"allowed path", "GET", "/oauth2/auth", withCookie(map[string]string{"X-Forwarded-Uri": "/app"}), 202},
		{"policy path", "GET", "/oauth2/auth", withCookie(map[string]string{"X-Forwarded-Uri": "/admin/users"}), 403},
		{"// is a path, not a host", "GET", "/oauth2/auth", withCookie(map[string]string{"X-Forwarded-Uri": "//admin/users"}), 403},
		{"nginx's whole URL", "GET", "/oauth2/auth", withCookie(map[string]string{"X-Original-URL": "https://dash.example.com/admin/x?y"}), 403},
		{"dots in the original", "GET", "/oauth2/auth", withCookie(map[string]string{"X-Forwarded-Uri": "/app/../admin"}), 403},
		{"encoded slash in the original", "GET", "/oauth2/auth", withCookie(map[string]string{"X-Forwarded-Uri": "/app%2F..%2Fadmin"}), 403},
		{"params in the original", "GET", "/oauth2/auth", withCookie(map[string]string{"X-Forwarded-Uri": "/public/..;/admin"}), 403},
		{"lower-case forwarded method", "GET", "/oauth2/auth", withCookie(map[string]string{"X-Forwarded-Uri": "/deploy", "X-Forwarded-Method": "delete"}), 403},
		{"ingress-nginx's original method", "GET", "/oauth2/auth", withCookie(map[string]string{"X-Original-URL": "https://dash.example.com/deploy", "X-Original-Method": "DELETE"}), 403},
		{"ingress-nginx GET", "GET", "/oauth2/auth", withCookie(map[string]string{"X-Original-URL": "https://dash.example.com/deploy", "X-Original-Method": "GET"}), 202},
		{"envoy allowed", "GET", "/oauth2/auth/app", withCookie(nil), 202},
		{"envoy policy", "GET", "/oauth2/auth/admin", withCookie(nil), 403},
		{"envoy method kept", "delete", "/oauth2/auth/deploy", withCookie(nil), 403},
		{"envoy escaping to ping", "GET", "/oauth2/auth/admin/..%2F..%2F..%2Fping", withCookie(nil), 403},
		{"envoy escaping to jwks", "GET", "/oauth2/auth/..%2F..%2Fjwks.json", withCookie(nil), 403},
		{"envoy dots", "GET", "/oauth2/auth/x/../../ping", withCookie(nil), 403},
		{"envoy through an escape", "GET", "/oauth2/%61uth/admin", withCookie(nil), 403},
		{"token in scope", "GET", "/oauth2/auth", map[string]string{"Authorization": bearer["Authorization"], "X-Forwarded-Uri": "/reports/q3"}, 202},
		{"token out of scope", "GET", "/oauth2/auth", map[string]string{"Authorization": bearer["Authorization"], "X-Forwarded-Uri": "/other"}, 403},
		{"token HEAD counts as GET", "GET", "/oauth2/auth", map[string]string{"Authorization": bearer["Authorization"], "X-Forwarded-Uri": "/reports/q3", "X-Forwarded-Method": "HEAD"}, 202},
		{"token, no original URL", "GET", "/oauth2/auth", bearer, 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := rawRequest(t, srv.URL, tt.method, tt.target, tt.hdr)
			if resp.StatusCode != tt.want {
				body, _ := io.ReadAll(resp.Body)
				t.Fatalf("%d, want %d: %s", resp.StatusCode, tt.want, body)
			}
		})
	}
	f.upstreamNotCalled(t)
}

// TestScopedTokenWithoutTrustedURL: from a peer that is not trusted the
// original URL is unknown, so a scoped token reaches nothing.
func TestScopedTokenWithoutTrustedURL(t *testing.T) {
	f := newFixture(t, fixtureOpts{tokens: tokensWithStatic()})
	r := httptest.NewRequest(http.MethodGet, "/oauth2/auth", nil)
	r.Header.Set("Authorization", "Bearer "+staticToken)
	r.Header.Set("X-Forwarded-Uri", "/reports/q3") // not believed
	if rec := f.do(r); rec.Code != http.StatusForbidden {
		t.Fatalf("forward-auth with a scoped token and no trusted URL: %d, want 403", rec.Code)
	}
	r = httptest.NewRequest(http.MethodGet, "/oauth2/auth/reports/q3", nil) // Envoy form, untrusted
	r.Header.Set("Authorization", "Bearer "+staticToken)
	if rec := f.do(r); rec.Code != http.StatusForbidden {
		t.Fatalf("Envoy form with a scoped token from an untrusted peer: %d, want 403", rec.Code)
	}
	// The token itself works where its scope reaches.
	r = httptest.NewRequest(http.MethodGet, "/reports/q3", nil)
	r.Header.Set("Authorization", "Bearer "+staticToken)
	if rec := f.do(r); rec.Code != 200 {
		t.Fatalf("token in scope: %d", rec.Code)
	}
	f.upstreamSaw(t)
}

// TestGatehouseTokensNeverReachTheUpstream: a gth_ token is removed from
// every request, skip-auth routes included.
func TestGatehouseTokensNeverReachTheUpstream(t *testing.T) {
	f := newFixture(t, fixtureOpts{skipAuth: []string{"^/public/"}, tokens: tokensWithStatic()})
	for _, tt := range []struct{ path, header, value string }{
		{"/public/x", "Authorization", "Bearer " + staticToken},
		{"/public/x", "Authorization", "bearer gth_somebody-elses-token"},
		{"/public/x", "Proxy-Authorization", "Bearer gth_abc"},
		{"/reports/q3", "Authorization", "Bearer " + staticToken},
	} {
		r := httptest.NewRequest(http.MethodGet, tt.path, nil)
		r.Header.Set(tt.header, tt.value)
		if rec := f.do(r); rec.Code != 200 {
			t.Fatalf("%s: %d", tt.path, rec.Code)
		}
		up := f.upstreamSaw(t)
		if v := up.Header.Get(tt.header); v != "" {
			t.Errorf("%s: %s reached the upstream: %q", tt.path, tt.header, v)
		}
	}
	// Other credentials pass untouched on a skip-auth route.
	r := httptest.NewRequest(http.MethodGet, "/public/x", nil)
	r.Header.Set("Authorization", "Basic dXNlcjpwYXNz")
	f.do(r)
	if up := f.upstreamSaw(t); up.Header.Get("Authorization") != "Basic dXNlcjpwYXNz" {
		t.Errorf("Basic credentials on a skip-auth route were dropped")
	}
}
