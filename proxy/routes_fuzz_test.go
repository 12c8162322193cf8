package proxy

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/canonical"
)

// The routes of estate() on ops.example.com, as the test itself reads
// them (not through RouteTable): "/prometheus" (strip_prefix, skip-auth
// "^/prometheus/-/healthy$"), "/alertmanager" (allowed_groups ops) and the
// catch-all "ops" without filters.
const fuzzRouteHost = "ops.example.com"

var (
	fuzzRoutePrefixes = []struct{ name, prefix string }{
		{"alertmanager", "/alertmanager"},
		{"prometheus", "/prometheus"},
	}
	fuzzRouteSkipAuth = regexp.MustCompile(`^/prometheus/-/healthy$`)
	// keptSlashInSegment makes a kept %2F read as the ordinary character
	// SPEC says it is ("keep": "an ordinary character inside its segment
	// for every decision"): decoded once it is "%2F" again, never "/".
	keptSlashInSegment = strings.NewReplacer("%2F", "%252F", "%2f", "%252f")
)

// routeOf is the route a path picks: the longest prefix on a segment
// boundary, else the catch-all.
func routeOf(p string) string {
	for _, r := range fuzzRoutePrefixes {
		if rest, ok := strings.CutPrefix(p, r.prefix); ok && (rest == "" || rest[0] == '/') {
			return r.name
		}
	}
	return "ops"
}

// routeReading is one way an upstream server may read a path.
type routeReading struct{ name, path string }

// routeReadings are the readings of an escaped path that upstream servers
// may route on: every interpretation of differential_test.go (ServeMux's
// decode and clean, a raw router, decode then clean, "\" as "/", ";"
// parameters stripped per segment), and each of them with runs of slashes
// merged. With encoded slashes kept, %2F stays inside its segment (see
// keptSlashInSegment). failed names the interpretations that cannot read
// the path at all.
func routeReadings(escaped string, keptSlashes bool) (readings []routeReading, failed []string) {
	if keptSlashes {
		escaped = keptSlashInSegment.Replace(escaped)
	}
	for _, in := range interpretations {
		p, ok := in.read(escaped)
		if !ok {
			failed = append(failed, in.name)
			continue
		}
		readings = append(readings, routeReading{in.name, p}, routeReading{in.name + ", slashes merged", collapseSlashes(p)})
	}
	return readings, failed
}

// collapseSlashes is p with each run of slashes made one (written apart
// from routetable.go's mergeSlashes, which is under test).
func collapseSlashes(p string) string {
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	return p
}

// dotSegmentIn returns a "." or ".." segment some server could read in an
// escaped path (percent-decoded, %2F and "\" as "/", with and without ";"
// parameters), or "".
func dotSegmentIn(escaped string) string {
	for _, seg := range strings.Split(escaped, "/") {
		candidates := []string{seg}
		if d, err := url.PathUnescape(seg); err == nil {
			candidates = append(candidates, strings.FieldsFunc(d, func(r rune) bool { return r == '/' || r == '\\' })...)
		}
		for _, c := range candidates {
			name, _, _ := strings.Cut(c, ";")
			if c == "." || c == ".." || name == "." || name == ".." {
				return seg
			}
		}
	}
	return ""
}

// spliceWords are what FuzzRoutePath inserts into its input: nothing, and
// the route prefixes (the skip-auth path's too) without their first "/".
var spliceWords = [...]string{"", "alertmanager", "prometheus", "prometheus/-/healthy"}

// splice is s with spliceWords[word] inserted at byte at (both taken
// modulo their range).
func splice(s string, word, at uint8) string {
	i := int(at) % (len(s) + 1)
	return s[:i] + spliceWords[int(word)%len(spliceWords)] + s[i:]
}

// routeFuzzFixture is estate() in one path mode, with a session for a
// member of ops (alice) and for someone who is not (dave).
type routeFuzzFixture struct {
	*routesFixture
	mode        string
	alice, dave *http.Cookie
}

// routeFuzzAnswer is what one request came to.
type routeFuzzAnswer struct {
	code int
	// route is "" when no upstream was called; forwarded is then "".
	route     string
	forwarded string // the escaped path the route's upstream received
}

func (f *routeFuzzFixture) serve(raw string, cookie *http.Cookie) (routeFuzzAnswer, bool) {
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(
		"GET " + raw + " HTTP/1.1\r\nHost: " + fuzzRouteHost + "\r\nAccept: application/json\r\n\r\n")))
	if err != nil {
		return routeFuzzAnswer{}, false // Go's server would refuse it before any handler
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	a := routeFuzzAnswer{code: rec.Code}
	select {
	case up := <-f.seen:
		// Each route's to is the recording upstream's URL plus
		// "/<route name>" (newRoutesFixture): the first segment of what
		// it received names the route, the rest is what the route
		// forwarded.
		received, _, _ := strings.Cut(up.RequestURI, "?")
		name, rest, _ := strings.Cut(strings.TrimPrefix(received, "/"), "/")
		a.route, a.forwarded = name, "/"+rest
	default:
	}
	return a, true
}

// newRouteFuzzFixtures makes estate() in each path mode, and checks that
// each routes, filters and strips at all: the invariants of FuzzRoutePath
// would hold vacuously for a fixture that forwards nothing.
func newRouteFuzzFixtures(t testing.TB) []*routeFuzzFixture {
	t.Helper()
	dave := aliceID
	dave.Subject, dave.User, dave.Email, dave.Groups = "2", "dave", "dave@example.com", []string{"staff"}
	var out []*routeFuzzFixture
	for _, paths := range [][2]string{{"reject", "reject"}, {"decode", "reject"}, {"reject", "keep"}, {"keep", "keep"}} {
		f := newRoutesFixture(t, UpstreamConfig{EncodedSlashes: paths[0], PathParameters: paths[1]}, estate(), nil)
		fx := &routeFuzzFixture{routesFixture: f, mode: "encoded_slashes=" + paths[0] + " path_parameters=" + paths[1],
			alice: f.signIn(t, aliceID), dave: f.signIn(t, dave)}
		for _, c := range []struct {
			raw, who         string
			cookie           *http.Cookie
			code             int
			route, forwarded string
		}{
			{"/alertmanager/api", "alice", fx.alice, 200, "alertmanager", "/alertmanager/api"},
			{"/alertmanager/api", "dave", fx.dave, 403, "", ""},
			{"/prometheus/graph", "dave", fx.dave, 200, "prometheus", "/graph"},
			{"/prometheus", "dave", fx.dave, 200, "prometheus", "/"},
			{"/prometheus/-/healthy", "nobody", nil, 200, "prometheus", "/-/healthy"},
			{"/other", "dave", fx.dave, 200, "ops", "/other"},
			{"/alertmanager", "nobody", nil, 401, "", ""},
		} {
			a, _ := fx.serve(c.raw, c.cookie)
			if a.code != c.code || a.route != c.route || a.forwarded != c.forwarded {
				t.Fatalf("%s: %s for %s: %d to %q as %q, want %d to %q as %q", fx.mode, c.raw, c.who,
					a.code, a.route, a.forwarded, c.code, c.route, c.forwarded)
			}
		}
		out = append(out, fx)
	}
	return out
}

// FuzzRoutePath checks, for any request target on a host with several
// routes (estate()'s ops.example.com), in each of the four
// encoded_slashes/path_parameters modes, for someone without a session,
// someone outside group ops (dave) and someone in it (alice), that a
// route's rules hold for every way an upstream may read the path:
//
//  1. no request gets a 5xx (or panics);
//  2. a request an upstream answered went to the route whose prefix the
//     canonical path lies under (on a segment boundary), that upstream got
//     the canonical path (less the prefix with strip_prefix), and every
//     reading of the path as forwarded (routeReadings) picks that route;
//  3. dave reaches no upstream with a path that any reading, of the path
//     as sent or (by 2) as forwarded, puts under /alertmanager;
//  4. a forwarded path, strip_prefix's output included, begins with "/"
//     and has no "." or ".." segment under any reading;
//  5. without a session only prometheus's skip-auth route is reached, and
//     every reading of the forwarded path is that route.
//
// With encoded_slashes keep, a kept %2F is an ordinary character of its
// segment (SPEC), also for the readings: a server that decodes it reads
// another path by the operator's choice.
//
// The request target is skeleton with one of spliceWords inserted at byte
// at (word 0: none), so that the fuzzer's mutations of a short skeleton
// such as "//;x/../" meet the route prefixes.
func FuzzRoutePath(f *testing.F) {
	fixtures := newRouteFuzzFixtures(f)
	f.Fuzz(func(t *testing.T, skeleton string, word, at uint8) {
		raw := splice(skeleton, word, at)
		if raw == "" || strings.ContainsAny(raw, " \r\n") {
			return // not one request target
		}
		rawPath, _ := canonical.RawPath(raw)
		for _, fx := range fixtures {
			opts := fx.h.(*Handler).o.Routes.Paths
			keptSlashes := opts.EncodedSlashes == canonical.KeepSlashes
			for _, user := range []struct {
				name   string
				cookie *http.Cookie
			}{{"nobody", nil}, {"dave (not in ops)", fx.dave}, {"alice (in ops)", fx.alice}} {
				a, ok := fx.serve(raw, user.cookie)
				if !ok {
					return
				}
				fail := func(format string, args ...any) {
					t.Helper()
					t.Fatalf("%s, %s, %q: "+format, append([]any{fx.mode, user.name, raw}, args...)...)
				}
				if a.code >= 500 { // (1)
					fail("status %d", a.code)
				}
				if a.route == "" {
					continue // no upstream was called
				}
				if a.code != 200 {
					fail("route %s's upstream answered 200, the client got %d", a.route, a.code)
				}
				if user.cookie == fx.dave { // (3), on the path as sent
					if a.route == "alertmanager" {
						fail("reached alertmanager (allowed_groups ops) as %q", a.forwarded)
					}
					sent, _ := routeReadings(rawPath, keptSlashes)
					for _, r := range sent {
						if routeOf(r.path) == "alertmanager" {
							fail("reached route %s as %q, though %s reads the path sent as %q", a.route, a.forwarded, r.name, r.path)
						}
					}
				}
				// (2)
				decided, err := canonical.Parse(rawPath, opts)
				if err != nil {
					fail("reached route %s as %q but is not canonical: %v", a.route, a.forwarded, err)
				}
				if want := routeOf(decided.Decoded); a.route != want {
					fail("reached route %s as %q; the canonical path %q is %s's", a.route, a.forwarded, decided.Decoded, want)
				}
				want := decided.Escaped
				if a.route == "prometheus" {
					// (4) strip_prefix takes the prefix and nothing else,
					// and leaves a path beginning with "/". Joining it to
					// the to path would add a missing "/", so the function
					// is checked on its own too.
					if want = strings.TrimPrefix(want, "/prometheus"); want == "" {
						want = "/"
					}
					for _, p := range []string{decided.Escaped, unescapePath(decided.Escaped)} {
						if s := stripPathPrefix(p, "/prometheus"); !strings.HasPrefix(s, "/") {
							fail("stripPathPrefix(%q, \"/prometheus\") = %q", p, s)
						}
					}
				}
				if a.forwarded != want {
					fail("decided on %q, route %s forwarded %q, want %q", decided.Escaped, a.route, a.forwarded, want)
				}
				if seg := dotSegmentIn(a.forwarded); seg != "" || !strings.HasPrefix(a.forwarded, "/") { // (4)
					fail("route %s forwarded %q (dot segment %q)", a.route, a.forwarded, seg)
				}
				// Every reading of the path as Gatehouse forwards it
				// (before strip_prefix) picks the route it went to.
				readings, failed := routeReadings(decided.Escaped, keptSlashes)
				if len(failed) > 0 {
					fail("%v cannot read the forwarded path %q", failed, decided.Escaped)
				}
				for _, r := range readings {
					if got := routeOf(r.path); got != a.route {
						fail("went to route %s as %q; %s reads %q, route %s's", a.route, a.forwarded, r.name, r.path, got)
					}
					if user.cookie == nil && !fuzzRouteSkipAuth.MatchString(r.path) { // (5)
						fail("reached route %s without a session; %s reads %q as %q", a.route, r.name, decided.Escaped, r.path)
					}
				}
			}
		}
	})
}
