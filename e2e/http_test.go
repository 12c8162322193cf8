package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// echoed is what the echo upstream reports in JSON mode.
type echoed struct {
	Path    string              `json:"path"`
	Headers map[string][]string `json:"headers"`
}

func getJSON(t *testing.T, c *http.Client, u string, hdr map[string]string) (int, echoed) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range hdr {
		req.Header[k] = []string{v} // exact spelling, underscores included
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	var e echoed
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			t.Fatalf("upstream answer %q: %v", body, err)
		}
	}
	return resp.StatusCode, e
}

var spoofed = map[string]string{
	"X-Forwarded-Email":     "ceo@example.com",
	"X_Forwarded_Email":     "ceo@example.com",
	"x-forwarded-user":      "ceo",
	"X-Auth-Request-Email":  "ceo@example.com",
	"X-Gatehouse-Assertion": "forged",
	"X-FORWARDED-GROUPS":    "admins",
}

func assertNoSpoof(t *testing.T, e echoed) {
	t.Helper()
	for name, values := range e.Headers {
		for _, v := range values {
			if strings.Contains(v, "ceo") || v == "forged" || v == "admins" {
				t.Errorf("spoofed header reached the upstream: %s: %s", name, v)
			}
		}
	}
}

func TestSpoofedIdentityHeadersNeverReachUpstream(t *testing.T) {
	t.Parallel()
	s := start(t, options{env: []string{"GATEHOUSE_UPSTREAM_SKIP_AUTH_ROUTES=^/public/"}})
	c := httpClient(t)
	if resp := signInWithClient(t, c, s, "/", alice); resp.StatusCode != http.StatusFound {
		t.Fatalf("sign-in ended with %d", resp.StatusCode)
	}
	code, e := getJSON(t, c, s.URL+"/api/me", spoofed)
	if code != http.StatusOK {
		t.Fatalf("signed-in request: %d", code)
	}
	assertNoSpoof(t, e)
	if got := e.Headers["X-Forwarded-Email"]; len(got) != 1 || got[0] != "alice@example.com" {
		t.Errorf("X-Forwarded-Email upstream = %v, want [alice@example.com]", got)
	}
	if got := e.Headers["Cookie"]; len(got) > 0 && strings.Contains(got[0], "_gatehouse") {
		t.Errorf("the session cookie was forwarded upstream: %v", got)
	}

	// Unauthenticated: refused, nothing forwarded.
	if code, _ := getJSON(t, httpClient(t), s.URL+"/api/me", spoofed); code != http.StatusUnauthorized {
		t.Errorf("anonymous with spoofed headers: %d, want 401", code)
	}
	// A skip-auth route passes without sign-in, but the headers are still scrubbed.
	code, e = getJSON(t, httpClient(t), s.URL+"/public/info", spoofed)
	if code != http.StatusOK {
		t.Fatalf("skip-auth route: %d", code)
	}
	assertNoSpoof(t, e)
	// "/public/../admin" is "/admin": not a skip-auth route. It is sent
	// there (308), and /admin needs sign-in.
	if code, _ := getJSON(t, httpClient(t), s.URL+"/public/%2e%2e/admin", nil); code != http.StatusPermanentRedirect {
		t.Errorf("/public/%%2e%%2e/admin without sign-in: %d, want 308", code)
	}
	if code, _ := getJSON(t, httpClient(t), s.URL+"/admin", nil); code != http.StatusUnauthorized {
		t.Errorf("/admin without sign-in: %d, want 401", code)
	}
}

func TestConfigFromYAMLOnly(t *testing.T) {
	t.Parallel()
	s := start(t, options{yamlOnly: true})
	c := httpClient(t)
	resp := signInWithClient(t, c, s, "/dash", alice)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/dash" {
		t.Fatalf("sign-in: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	code, e := getJSON(t, c, s.URL+"/dash", nil)
	if code != http.StatusOK || e.Headers["X-Forwarded-User"][0] != "alice" {
		t.Fatalf("after sign-in: %d %v", code, e.Headers)
	}
}

func TestConfigFromEnvOnly(t *testing.T) {
	t.Parallel()
	s := start(t, options{})
	c := httpClient(t)
	resp := signInWithClient(t, c, s, "/dash", alice)
	resp.Body.Close()
	code, e := getJSON(t, c, s.URL+"/dash", nil)
	if code != http.StatusOK || e.Headers["X-Forwarded-Email"][0] != "alice@example.com" {
		t.Fatalf("after sign-in: %d %v", code, e.Headers)
	}
}

func TestOpenRedirectRejected(t *testing.T) {
	t.Parallel()
	s := start(t, options{})
	for _, rd := range []string{"//evil.com/x", "https://evil.com", "/\\evil.com", "http://evil.com@127.0.0.1/", "/%09/evil.com", "javascript:alert(1)"} {
		c := httpClient(t)
		resp := signInWithClient(t, c, s, rd, alice)
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		u, err := url.Parse(loc)
		if resp.StatusCode != http.StatusFound || err != nil || u.Host != "" || !strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") {
			t.Errorf("rd=%q: after sign-in went to %q (%d), want a path on this host", rd, loc, resp.StatusCode)
		}
	}
}
