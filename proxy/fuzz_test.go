package proxy

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzCleanPath checks the invariants route matching relies on: the path
// decisions are made on starts with '/', holds no "." or ".." segment and
// no "//", whatever the request said.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/public/%2e%2e/admin", "//x", "/a%2F..%2Fb", "/./", "/a/b/", "%00", "/%23/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.ParseRequestURI("http://h" + raw)
		if err != nil || !strings.HasPrefix(raw, "/") {
			return
		}
		got := CleanPath(&http.Request{URL: u})
		if !strings.HasPrefix(got, "/") || strings.Contains(got, "//") {
			t.Fatalf("CleanPath(%q) = %q", raw, got)
		}
		for _, seg := range strings.Split(got, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("CleanPath(%q) = %q keeps a dot segment", raw, got)
			}
		}
	})
}

// FuzzStripCookie checks that no cookie named like Gatehouse's survives.
func FuzzStripCookie(f *testing.F) {
	for _, s := range []string{"a=1; _gatehouse=x", "_gatehouse=x;_gatehouse_state_abc=y; b=2", ";;", "_gatehouse"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cookie string) {
		h := http.Header{"Cookie": {cookie}}
		stripCookie(h, "_gatehouse")
		r := &http.Request{Header: h}
		for _, c := range r.Cookies() {
			if c.Name == "_gatehouse" || strings.HasPrefix(c.Name, "_gatehouse_state_") {
				t.Fatalf("cookie %q survived in %q", c.Name, h.Get("Cookie"))
			}
		}
	})
}
