package proxy

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/canonical"
	"github.com/gatehouse/gatehouse/filters"
)

// interpretation is one way a real upstream reads the path it receives.
type interpretation struct {
	name string
	read func(raw string) (string, bool)
	// stripped: this reading drops ";" parameters, so it is compared with
	// the path's parameter-less reading.
	stripped bool
}

// interpretations are the readings servers behind Gatehouse are known to
// apply: Go's ServeMux (decode, then clean), a router on the raw path
// (Express, many Java routers: split first, decode each segment), a
// decode-then-clean server (nginx), one that reads "\" as "/" (IIS and
// some Windows stacks), and one that strips ";" parameters (Tomcat,
// Jetty, Spring).
var interpretations = []interpretation{
	{name: "ServeMux", read: func(raw string) (string, bool) {
		u, err := url.ParseRequestURI(raw)
		if err != nil {
			return "", false
		}
		return cleanKeepSlash(u.Path), true
	}},
	{name: "raw router", read: func(raw string) (string, bool) {
		segs := strings.Split(raw, "/")
		for i, s := range segs {
			d, err := url.PathUnescape(s)
			if err != nil {
				return "", false
			}
			segs[i] = d
		}
		return strings.Join(segs, "/"), true
	}},
	{name: "decode then clean", read: func(raw string) (string, bool) {
		d, err := url.PathUnescape(raw)
		return cleanKeepSlash(d), err == nil
	}},
	{name: "backslash as slash", read: func(raw string) (string, bool) {
		d, err := url.PathUnescape(raw)
		return cleanKeepSlash(strings.ReplaceAll(d, `\`, "/")), err == nil
	}},
	{name: "parameters stripped", stripped: true, read: func(raw string) (string, bool) {
		segs := strings.Split(raw, "/")
		for i, s := range segs {
			s, _, _ = strings.Cut(s, ";")
			d, err := url.PathUnescape(s)
			if err != nil {
				return "", false
			}
			d, _, _ = strings.Cut(d, ";")
			segs[i] = d
		}
		return cleanKeepSlash(strings.Join(segs, "/")), true
	}},
}

// cleanKeepSlash is path.Clean keeping a trailing slash, as ServeMux does.
func cleanKeepSlash(p string) string {
	if p == "" {
		return "/"
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

var (
	publicRoute = regexp.MustCompile(`^/public/`)
	adminRoute  = regexp.MustCompile(`^/+admin(/|$)`)
)

// FuzzForwardedPath is the differential test of "one canonical request":
// for any request target, the path that reaches the upstream — read by
// each interpretation above — is the path Gatehouse decided on, or the
// request never reached the upstream. Anonymous requests may only reach
// the skip-auth route "^/public/", and a signed-in user outside the
// "^/+admin" policy never reaches anything an interpretation reads as
// /admin.
func FuzzForwardedPath(f *testing.F) {
	for _, s := range []string{
		"/public/x", "/admin", "/public/../admin", "/public/%2e%2e/admin", "/public%2F..%2Fadmin",
		"/public/..%2Fadmin", `/public\..\admin`, "/public/%5C..%5Cadmin", "/public/..;/admin",
		"/public/..%3B/admin", "/admin;x/users", "/public;x/../admin", "//admin", "//public/x",
		"/public//..//admin", "/%61dmin", "/public/%252e%252e/admin", "/public/%c0%ae%c0%ae/admin",
		"/public/.%2e/admin", "/public/x/..", "/public/%u002e", "/public/%00", "http://h/public/../admin",
		"/public/x;/../../admin", "/public/%3B/../admin", "/public/x%2F..%2F..%2Fadmin",
		"/public/%61dmin", "/public/caf%c3%a9", "/x/%7e", "/public/a\"b", "/public/x;y",
		"/public;x%2F..%2Fadmin", "/public/x%2F..%2F..%2Fadmin", "/public%3Bx%2F..%2Fadmin",
	} {
		for mode := range uint8(4) {
			f.Add(s, mode)
		}
	}
	modes := []fixtureOpts{
		{paths: [2]string{"reject", "reject"}},
		{paths: [2]string{"decode", "reject"}},
		{paths: [2]string{"reject", "keep"}},
		{paths: [2]string{"keep", "keep"}}, // the operator's opt-in: only the security property is checked
	}
	fixtures := make([]*fixture, len(modes))
	for i, o := range modes {
		o.skipAuth = []string{"^/public/"}
		o.policies = []filters.PolicyConfig{{Path: adminRoute.String(), AllowedGroups: []string{"nobody"}}}
		fixtures[i] = newFixture(f, o)
	}
	cookies := make([]*http.Cookie, len(fixtures))
	for i, fx := range fixtures {
		cookies[i] = fx.signIn(f, aliceID)
	}
	f.Fuzz(func(t *testing.T, raw string, mode uint8) {
		if strings.ContainsAny(raw, " \r\n") || raw == "" {
			return // not one request target
		}
		i := int(mode) % len(fixtures)
		fx, opts := fixtures[i], fixtures[i].h.(*Handler).o.Routes.Paths
		for _, signedIn := range []bool{false, true} {
			req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + raw + " HTTP/1.1\r\nHost: dash.example.com\r\nAccept: application/json\r\n\r\n")))
			if err != nil {
				return // Go's server would refuse it before any handler
			}
			if signedIn {
				req.AddCookie(cookies[i])
			}
			rec := httptest.NewRecorder()
			fx.h.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("%q: status %d", raw, rec.Code)
			}
			var up *http.Request
			select {
			case up = <-fx.seen:
			default:
			}
			if up == nil {
				continue // never reached the upstream
			}
			rawPath, _ := canonical.RawPath(raw)
			decided, err := canonical.Parse(rawPath, opts)
			if err != nil {
				t.Fatalf("%q reached the upstream as %q but is not canonical: %v", raw, up.RequestURI, err)
			}
			got, _, _ := strings.Cut(up.RequestURI, "?")
			if got != decided.Escaped {
				t.Fatalf("%q: decided on %q, the upstream received %q", raw, decided.Escaped, got)
			}
			for _, in := range interpretations {
				read, ok := in.read(got)
				if !ok {
					t.Fatalf("%q: %s cannot read the forwarded path %q", raw, in.name, got)
				}
				want := decided.Decoded
				if in.stripped {
					want = decided.Stripped
				}
				if in.name != "raw router" {
					want = cleanKeepSlash(want)
				}
				// With encoded slashes kept, a server that decodes %2F
				// reads another path by design; what must hold still is
				// that nobody gets past a route below.
				keptSlashes := opts.EncodedSlashes == canonical.KeepSlashes
				if !keptSlashes && read != want {
					t.Fatalf("%q: %s reads the forwarded %q as %q; Gatehouse decided on %q", raw, in.name, got, read, want)
				}
				if !signedIn && !publicRoute.MatchString(read) {
					t.Fatalf("%q reached the upstream without a session; %s reads it as %q", raw, in.name, read)
				}
				if signedIn && adminRoute.MatchString(read) {
					t.Fatalf("%q evaded the admin policy; %s reads it as %q", raw, in.name, read)
				}
			}
		}
	})
}
