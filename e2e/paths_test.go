package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// startNginxUpstream runs Debian's nginx as an upstream that answers
// ADMIN, PUBLIC or ROOT by its own reading of the path (it decodes,
// resolves dot segments and merges slashes before choosing a location).
func startNginxUpstream(t *testing.T) string {
	t.Helper()
	return runNginx(t, `
    location /admin { return 200 "ADMIN\n"; }
    location /public/ { return 200 "PUBLIC\n"; }
    location / { return 200 "ROOT\n"; }`)
}

// serveMuxUpstream is a Go app routing with http.ServeMux.
func serveMuxUpstream(t *testing.T) string {
	mux := http.NewServeMux()
	answer := func(s string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, s+"\n") }
	}
	mux.Handle("/admin", answer("ADMIN"))
	mux.Handle("/admin/", answer("ADMIN"))
	mux.Handle("/public/", answer("PUBLIC"))
	mux.Handle("/", answer("ROOT"))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// sendRaw writes one request with the target exactly as given.
func sendRaw(t *testing.T, base, target string, cookie *http.Cookie) (int, string, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET " + target + " HTTP/1.1\r\nHost: " + strings.TrimPrefix(base, "http://") + "\r\nAccept: application/json\r\nConnection: close\r\n"
	if cookie != nil {
		req += "Cookie: " + cookie.Name + "=" + cookie.Value + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(body)
}

// TestPathClassesAgainstRealUpstreams sends every class of ambiguous path
// from SPEC "Canonical requests" through the real binary to a Go ServeMux
// app and to nginx: an anonymous client only ever reaches the skip-auth
// route, and a signed-in user outside the admin policy never gets an
// answer the upstream meant for /admin.
func TestPathClassesAgainstRealUpstreams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		target      string
		anon, alice int
		location    string // for 308
		body        string // for 200
	}{
		{"/public/x", 200, 200, "", "PUBLIC"},
		{"/admin", 401, 403, "", ""},
		{"/app", 401, 200, "", "ROOT"},
		{"/public/../admin", 308, 308, "/admin", ""},
		{"/public/%2e%2e/admin", 308, 308, "/admin", ""},
		{"/public/.%2E/admin/", 308, 308, "/admin/", ""},
		{"/public/..//admin", 308, 308, "//admin", ""}, // absolute URL on our host
		{"/public%2F..%2Fadmin", 400, 400, "", ""},
		{"/public/..%2fadmin", 400, 400, "", ""},
		{`/public\..\admin`, 400, 400, "", ""},
		{"/public/%5C..%5Cadmin", 400, 400, "", ""},
		{"/public/..;/admin", 400, 400, "", ""},
		{"/public/..%3B/admin", 400, 400, "", ""},
		{"/admin;x/users", 400, 400, "", ""},
		{"/public/%c0%ae%c0%ae/admin", 400, 400, "", ""},
		{"/public/x%00", 400, 400, "", ""},
		{"//admin", 401, 403, "", ""},
		{"///admin/users", 401, 403, "", ""},
		{"/%61dmin", 401, 403, "", ""},
		{"/public/%252e%252e/admin", 200, 200, "", "PUBLIC"}, // decoded once: a segment named "%2e%2e"
	}
	for _, up := range []struct {
		name string
		url  func(*testing.T) string
	}{{"ServeMux", serveMuxUpstream}, {"nginx", startNginxUpstream}} {
		t.Run(up.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, options{env: []string{
				"GATEHOUSE_UPSTREAM_URL=" + up.url(t),
				"GATEHOUSE_UPSTREAM_SKIP_AUTH_ROUTES=^/public/",
				`GATEHOUSE_POLICIES=[{"path":"^/+admin(/|$)","allowed_groups":["admins"]}]`,
			}})
			c := httpClient(t)
			signInFor(t, c, s, "corp", alice) // alice is not in admins
			var cookie *http.Cookie
			for _, ck := range c.Jar.Cookies(mustURL(t, s.URL)) {
				if ck.Name == "_gatehouse" {
					cookie = ck
				}
			}
			if cookie == nil {
				t.Fatal("no session cookie after sign-in")
			}
			for _, tt := range tests {
				for _, who := range []struct {
					name   string
					cookie *http.Cookie
					want   int
				}{{"anonymous", nil, tt.anon}, {"alice", cookie, tt.alice}} {
					code, loc, body := sendRaw(t, s.URL, tt.target, who.cookie)
					if strings.Contains(body, "ADMIN") {
						t.Errorf("%s %s: reached the admin route through %s", who.name, tt.target, up.name)
					}
					if code != who.want {
						t.Errorf("%s %s: %d, want %d (%s)", who.name, tt.target, code, who.want, strings.TrimSpace(body))
						continue
					}
					wantLoc := tt.location
					if strings.HasPrefix(wantLoc, "//") {
						wantLoc = s.URL + wantLoc
					}
					if code == 308 && loc != wantLoc {
						t.Errorf("%s %s: Location %q, want %q", who.name, tt.target, loc, wantLoc)
					}
					if code == 200 && strings.TrimSpace(body) != tt.body {
						t.Errorf("%s %s: upstream answered %q, want %q", who.name, tt.target, body, tt.body)
					}
				}
			}
		})
	}
}
