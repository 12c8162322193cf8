package e2e

import (
	"html"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"testing"
	"time"
)

func TestReplicasShareSessionsThroughMemcached(t *testing.T) {
	t.Parallel()
	mc1, _ := startMemcached(t)
	mc2, _ := startMemcached(t)
	s := start(t, options{env: []string{
		"GATEHOUSE_SESSION_STORE_TYPE=memcache",
		"GATEHOUSE_SESSION_STORE_MEMCACHE_SERVERS=" + mc1 + "," + mc2,
	}})
	second := s.replica()

	c := httpClient(t)
	signInFor(t, c, s, "corp", alice) // through the first replica
	// The cookie jar sends the cookie to the second replica too (cookies
	// ignore ports), as a browser behind a load balancer would.
	code, e := getJSON(t, c, second+"/app", nil)
	if code != http.StatusOK || e.Headers["X-Forwarded-Email"][0] != "alice@example.com" {
		t.Fatalf("second replica: %d %v", code, e.Headers)
	}
	// Sign out through the second replica: the first refuses the session.
	resp := mustGet(t, c, second+"/oauth2/sign_out")
	resp.Body.Close()
	c2 := httpClient(t)
	signInFor(t, c2, s, "corp", alice)
	// (the jar of c was cleared by sign-out; replay the old cookie by hand)
	if code, _ := getJSON(t, c, s.URL+"/app", nil); code != http.StatusUnauthorized {
		t.Fatalf("first replica after sign-out on the second: %d, want 401", code)
	}
	// c2 signed in again; "sign out everywhere" on one replica ends every
	// session of the user on all of them.
	c3 := httpClient(t)
	signInFor(t, c3, s, "corp", alice)
	// A GET only shows the confirmation; its form posts the CSRF token.
	page := readBody(t, mustGet(t, c2, second+"/oauth2/sign_out?all=true"))
	action, tok := formAction.FindStringSubmatch(page), hiddenInput.FindStringSubmatch(page)
	if action == nil || tok == nil || tok[1] != "csrf_token" {
		t.Fatalf("no confirmation form: %s", page)
	}
	resp, err := c2.PostForm(second+html.UnescapeString(action[1]), url.Values{"csrf_token": {tok[2]}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, base := range []string{s.URL, second} {
		if code, _ := getJSON(t, c3, base+"/app", nil); code != http.StatusUnauthorized {
			t.Fatalf("%s: other session of the user survived sign-out everywhere: %d", base, code)
		}
	}
}

func TestSignedOutCookieReplayRejectedOnOtherReplica(t *testing.T) {
	t.Parallel()
	mc, _ := startMemcached(t)
	s := start(t, options{env: []string{"GATEHOUSE_SESSION_STORE_TYPE=memcache", "GATEHOUSE_SESSION_STORE_MEMCACHE_SERVERS=" + mc}})
	second := s.replica()
	c := httpClient(t)
	signInFor(t, c, s, "corp", alice)
	var ticket string
	for _, ck := range c.Jar.Cookies(mustURL(t, s.URL)) {
		if ck.Name == "_gatehouse" {
			ticket = ck.Value
		}
	}
	if ticket == "" {
		t.Fatal("no session cookie")
	}
	resp := mustGet(t, c, second+"/oauth2/sign_out")
	resp.Body.Close()
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/app", nil)
	req.Header.Set("Accept", "application/json")
	req.AddCookie(&http.Cookie{Name: "_gatehouse", Value: ticket})
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("replayed ticket on the first replica: %d, want 401", r.StatusCode)
	}
}

func TestMemcachedDownFailsClosedAndRecovers(t *testing.T) {
	t.Parallel()
	mc, stop := startMemcached(t)
	s := start(t, options{env: []string{"GATEHOUSE_SESSION_STORE_TYPE=memcache", "GATEHOUSE_SESSION_STORE_MEMCACHE_SERVERS=" + mc}})
	c := httpClient(t)
	signInFor(t, c, s, "corp", alice)
	stop()
	start := time.Now()
	code, _ := getJSON(t, c, s.URL+"/app", nil)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("memcached down: %d, want 503", code)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("failing closed took %s", d)
	}
	resp := mustGet(t, c, s.URL+"/ready")
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/ready with memcached down: %d", resp.StatusCode)
	}
	// Bring memcached back on the same port: Gatehouse recovers by itself.
	_, port, _ := net.SplitHostPort(mc)
	cmd := exec.Command("memcached", "-l", "127.0.0.1", "-p", port, "-U", "0", "-m", "64", "-u", "root")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, 15*time.Second, "/ready after memcached returned", func() bool {
		r, err := http.Get(s.URL + "/ready")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	})
	// The old session lived in the memcached that died; signing in works again.
	c2 := httpClient(t)
	signInFor(t, c2, s, "corp", alice)
	if code, _ := getJSON(t, c2, s.URL+"/app", nil); code != http.StatusOK {
		t.Fatalf("after recovery: %d", code)
	}
}
