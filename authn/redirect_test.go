package authn

import (
	"net/url"
	"strings"
	"testing"
)

var public, _ = url.Parse("https://dash.example.com")

func TestSafeRedirect(t *testing.T) {
	for in, want := range map[string]string{
		"/x?y=1":                              "/x?y=1",
		"":                                    "/",
		"//evil.com":                          "/",
		"//evil.com/x":                        "/",
		"/\\evil.com":                         "/",
		"/\t/evil.com":                        "/",
		"/\n/evil.com":                        "/",
		"https://evil.com":                    "/",
		"http://dash.example.com/x":           "/", // scheme downgrade
		"https://DASH.example.com/x":          "https://DASH.example.com/x",
		"https://dash.example.com.evil/x":     "/",
		"https://user@dash.example.com/":      "/",
		"javascript:alert(1)":                 "/",
		"data:text/html,x":                    "/",
		"evil.com":                            "/",
		"/" + strings.Repeat("a", 5000):       "/",
		"/%2F%2Fevil.com":                     "/%2F%2Fevil.com", // a path, percent-encoded: stays on this host
		"https:/\\evil.com":                   "/",
		"https://dash.example.com:8443/x":     "/",
		"https://dash.example.com/a#frag":     "https://dash.example.com/a#frag",
		"/ok#frag":                            "/ok#frag",
		"HTTPS://dash.example.com/x":          "https://dash.example.com/x",
		"https:dash.example.com/x":            "/", // no authority: not a URL on the public host
		"https:///dash.example.com/x":         "/",
		"//dash.example.com/x":                "/", // scheme-relative, even to the public host
		"https://evil.com#@dash.example.com":  "/",
		"https://evil.com\\@dash.example.com": "/",
		"https://dash.example.com@evil.com/":  "/",
		" https://evil.com":                   "/",
		"\x00/x":                              "/",
		"/x\x00":                              "/",
		"/x\r\nSet-Cookie: a=b":               "/",
		"/x\x7f":                              "/",
		"/\\/evil.com":                        "/",
		"https://[::1]/":                      "/",
		"/a/b?rd=https://evil.com":            "/a/b?rd=https://evil.com", // a query on our own path is fine
	} {
		if got := SafeRedirect(in, public); got != want {
			t.Errorf("SafeRedirect(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSafeRedirectWithoutPublicURLKeepsOnlyPaths(t *testing.T) {
	for in, want := range map[string]string{
		"/x":                         "/x",
		"https://dash.example.com/x": "/",
		"//evil.com":                 "/",
	} {
		if got := SafeRedirect(in, nil); got != want {
			t.Errorf("SafeRedirect(%q, nil) = %q, want %q", in, got, want)
		}
	}
}

func FuzzSafeRedirect(f *testing.F) {
	for _, s := range []string{"/", "/x?y", "//evil.com", "/\\evil.com", "https://dash.example.com/x", "https://evil.com", "/\t/x", "javascript:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rd string) {
		got := SafeRedirect(rd, public)
		if strings.HasPrefix(got, "/") {
			if strings.HasPrefix(got, "//") || strings.HasPrefix(got, "/\\") || strings.ContainsAny(got, "\\\t\r\n") {
				t.Fatalf("SafeRedirect(%q) = %q leaves the host", rd, got)
			}
			return
		}
		u, err := url.Parse(got)
		if err != nil || !strings.EqualFold(u.Host, public.Host) || u.Scheme != "https" || u.User != nil {
			t.Fatalf("SafeRedirect(%q) = %q is not on the public host", rd, got)
		}
	})
}
