package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/assertion"
	"github.com/gatehouse/gatehouse/internal/confcheck"
)

// problemKeys lists the keys of ps, for comparing with a want list.
func problemKeys(ps confcheck.Problems) []string {
	keys := []string{}
	for _, p := range ps {
		keys = append(keys, p.Key)
	}
	return keys
}

func TestServerConfigValidate(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := func() ServerConfig {
		return ServerConfig{Listen: ":4180", PublicURL: "https://dash.example.com", PathPrefix: "/oauth2"}
	}
	tests := []struct {
		name   string
		mutate func(*ServerConfig)
		want   []string // problem keys
	}{
		{"valid", func(*ServerConfig) {}, nil},
		{"trailing slash on public_url", func(c *ServerConfig) { c.PublicURL = "https://dash.example.com/" }, nil},
		{"public_url with a port", func(c *ServerConfig) { c.PublicURL = "http://localhost:4180" }, nil},
		{"public_url with a path", func(c *ServerConfig) { c.PublicURL = "https://dash.example.com/app" }, []string{"public_url"}},
		{"public_url with a query", func(c *ServerConfig) { c.PublicURL = "https://dash.example.com/?x=1" }, []string{"public_url"}},
		{"public_url with user info", func(c *ServerConfig) { c.PublicURL = "https://u:p@dash.example.com" }, []string{"public_url"}},
		{"public_url without scheme", func(c *ServerConfig) { c.PublicURL = "dash.example.com" }, []string{"public_url"}},
		{"public_url ftp", func(c *ServerConfig) { c.PublicURL = "ftp://dash.example.com" }, []string{"public_url"}},
		{"no public_url", func(c *ServerConfig) { c.PublicURL = "" }, []string{"public_url"}},
		{"no listen", func(c *ServerConfig) { c.Listen = "" }, []string{"listen"}},
		{"prefix without slash", func(c *ServerConfig) { c.PathPrefix = "oauth2" }, []string{"path_prefix"}},
		{"prefix with trailing slash", func(c *ServerConfig) { c.PathPrefix = "/oauth2/" }, []string{"path_prefix"}},
		{"prefix is the root", func(c *ServerConfig) { c.PathPrefix = "/" }, []string{"path_prefix"}},
		{"prefix with //", func(c *ServerConfig) { c.PathPrefix = "/a//b" }, []string{"path_prefix"}},
		{"prefix with a query", func(c *ServerConfig) { c.PathPrefix = "/a?b" }, []string{"path_prefix"}},
		{"nested prefix", func(c *ServerConfig) { c.PathPrefix = "/_/auth" }, nil},
		{"prefix with ;", func(c *ServerConfig) { c.PathPrefix = "/auth;x" }, []string{"path_prefix"}},
		{"prefix with non-ASCII", func(c *ServerConfig) { c.PathPrefix = "/ауth" }, []string{"path_prefix"}},
		{"prefix with a dot segment", func(c *ServerConfig) { c.PathPrefix = "/a/../b" }, []string{"path_prefix"}},
		{"cert without key", func(c *ServerConfig) { c.TLSCertFile = notPEM }, []string{"tls_cert_file"}},
		{"unloadable cert", func(c *ServerConfig) { c.TLSCertFile, c.TLSKeyFile = notPEM, notPEM }, []string{"tls_cert_file"}},
		{"trusted proxies", func(c *ServerConfig) { c.TrustedProxies = []string{"10.0.0.0/8", "192.0.2.7", "::1"} }, nil},
		{"bad trusted proxy", func(c *ServerConfig) { c.TrustedProxies = []string{"10.0.0.0/8", "banana"} }, []string{"trusted_proxies"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.mutate(&c)
			public, _, ps := c.Validate()
			if got := problemKeys(ps); !slices.Equal(got, append([]string{}, tt.want...)) {
				t.Fatalf("problems = %v, want keys %v", ps, tt.want)
			}
			if len(tt.want) == 0 && (public == nil || public.Path != "" || public.Host == "") {
				t.Fatalf("public URL = %v, want scheme and host only", public)
			}
		})
	}
}

func TestParseCIDRs(t *testing.T) {
	nets, bad := ParseCIDRs([]string{"10.1.2.3/8", " 192.0.2.7 ", "2001:db8::/32", "::ffff:198.51.100.1", "10.0.0.0/33", "banana", ""})
	want := []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "198.51.100.1/32"}
	var got []string
	for _, n := range nets {
		got = append(got, n.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("nets = %v, want %v", got, want)
	}
	if !slices.Equal(bad, []string{"10.0.0.0/33", "banana", ""}) {
		t.Errorf("bad = %q", bad)
	}
}

func TestUpstreamConfigValidate(t *testing.T) {
	base := func() UpstreamConfig {
		return UpstreamConfig{URL: "http://127.0.0.1:8080", Timeout: 30 * time.Second}
	}
	tests := []struct {
		name   string
		mutate func(*UpstreamConfig)
		want   []string
	}{
		{"valid", func(*UpstreamConfig) {}, nil},
		{"https with a path", func(c *UpstreamConfig) { c.URL = "https://app.internal/base" }, nil},
		{"no scheme", func(c *UpstreamConfig) { c.URL = "127.0.0.1:8080" }, []string{"url"}},
		{"not a URL", func(c *UpstreamConfig) { c.URL = "not a url" }, []string{"url"}},
		{"query", func(c *UpstreamConfig) { c.URL = "http://app/?x=1" }, []string{"url"}},
		{"zero timeout", func(c *UpstreamConfig) { c.Timeout = 0 }, []string{"timeout"}},
		{"routes", func(c *UpstreamConfig) {
			c.SkipAuthRoutes = []string{"^/health$", "POST=^/hook", "GET=^/public/"}
			c.APIRoutes = []string{"^/api/"}
		}, nil},
		{"bad skip regex", func(c *UpstreamConfig) { c.SkipAuthRoutes = []string{"^/(health"} }, []string{"skip_auth_routes"}},
		{"bad regex after a method", func(c *UpstreamConfig) { c.SkipAuthRoutes = []string{"POST=^/(hook"} }, []string{"skip_auth_routes"}},
		{"empty regex after a method", func(c *UpstreamConfig) { c.SkipAuthRoutes = []string{"GET="} }, []string{"skip_auth_routes"}},
		{"empty skip regex", func(c *UpstreamConfig) { c.SkipAuthRoutes = []string{""} }, []string{"skip_auth_routes"}},
		{"bad api regex", func(c *UpstreamConfig) { c.APIRoutes = []string{"["} }, []string{"api_routes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.mutate(&c)
			target, _, ps := c.Validate()
			if got := problemKeys(ps); !slices.Equal(got, append([]string{}, tt.want...)) {
				t.Fatalf("problems = %v, want keys %v", ps, tt.want)
			}
			if len(tt.want) == 0 && target == nil {
				t.Fatal("no target URL")
			}
		})
	}
}

func TestSkipAuthRouteForms(t *testing.T) {
	c := UpstreamConfig{URL: "http://app", Timeout: time.Second,
		SkipAuthRoutes: []string{"POST=^/hook$", "^/health$", "^/a=b$"}}
	_, routes, ps := c.Validate()
	if len(ps) != 0 {
		t.Fatal(ps)
	}
	tests := []struct {
		method, path string
		want         bool
	}{
		{"POST", "/hook", true},
		{"GET", "/hook", false}, // the method form limits the route
		{"GET", "/health", true},
		{"DELETE", "/health", true}, // no method: every method
		{"GET", "/a=b", true},       // '=' in a regex without a method
		{"GET", "/health/x", false},
	}
	for _, tt := range tests {
		if got := matchAny(routes.SkipAuth, tt.method, tt.path); got != tt.want {
			t.Errorf("%s %s: skip = %v, want %v", tt.method, tt.path, got, tt.want)
		}
	}
}

func TestHeadersConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*HeadersConfig)
		want   []string
	}{
		{"defaults", func(*HeadersConfig) {}, nil},
		{"header turned off", func(c *HeadersConfig) { c.Email = "" }, nil},
		{"space in a name", func(c *HeadersConfig) { c.User = "X Forwarded User" }, []string{"user"}},
		{"colon in a name", func(c *HeadersConfig) { c.Groups = "X-Groups:" }, []string{"groups"}},
		{"newline in a name", func(c *HeadersConfig) { c.PreferredUsername = "X-A\r\nX-B" }, []string{"preferred_username"}},
		{"bad assertion header", func(c *HeadersConfig) { c.Assertion.Header = "X(JWT)" }, []string{"assertion.header"}},
		{"assertion on without a header", func(c *HeadersConfig) { c.Assertion.Header = "" }, []string{"assertion.header"}},
		{"assertion off without a header", func(c *HeadersConfig) { c.Assertion = assertion.Config{} }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := defaultHeaders
			tt.mutate(&c)
			if got := problemKeys(c.Validate()); !slices.Equal(got, append([]string{}, tt.want...)) {
				t.Fatalf("problem keys = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestClientIP(t *testing.T) {
	trusted, _ := ParseCIDRs([]string{"10.0.0.0/8", "192.0.2.1"})
	tests := []struct {
		name    string
		trusted []netip.Prefix
		peer    string
		xff     []string
		want    string
	}{
		{"no proxies: the peer", nil, "203.0.113.5:1234", nil, "203.0.113.5"},
		{"untrusted peer's X-Forwarded-For is ignored", nil, "203.0.113.5:1234", []string{"1.2.3.4"}, "203.0.113.5"},
		{"untrusted peer, trusted list set", trusted, "203.0.113.5:1234", []string{"1.2.3.4"}, "203.0.113.5"},
		{"trusted peer: right-most hop", trusted, "10.0.0.2:1234", []string{"1.2.3.4"}, "1.2.3.4"},
		{"spoofed left entries are skipped", trusted, "10.0.0.2:1234", []string{"6.6.6.6, 1.2.3.4"}, "1.2.3.4"},
		{"chain of trusted proxies", trusted, "10.0.0.2:1234", []string{"1.2.3.4, 192.0.2.1, 10.9.9.9"}, "1.2.3.4"},
		{"several header lines", trusted, "10.0.0.2:1234", []string{"6.6.6.6", "1.2.3.4, 10.1.1.1"}, "1.2.3.4"},
		{"garbage hop: the proxy itself", trusted, "10.0.0.2:1234", []string{"1.2.3.4, not-an-ip"}, "10.0.0.2"},
		{"trusted peer, no header", trusted, "10.0.0.2:1234", nil, "10.0.0.2"},
		{"all hops trusted", trusted, "10.0.0.2:1234", []string{"10.3.3.3"}, "10.0.0.2"},
		{"IPv4-mapped peer", trusted, "[::ffff:10.0.0.2]:1234", []string{"1.2.3.4"}, "1.2.3.4"},
		{"IPv6 client", trusted, "10.0.0.2:1234", []string{"2001:db8::1"}, "2001:db8::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.peer
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := ClientIP(tt.trusted)(r); got != tt.want {
				t.Fatalf("client IP = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSchemeBelievedOnlyFromTrustedPeers(t *testing.T) {
	trusted, _ := ParseCIDRs([]string{"10.0.0.0/8"})
	for _, tt := range []struct {
		peer, proto, want string
	}{
		{"10.0.0.2:1", "https", "https"},
		{"10.0.0.2:1", "HTTPS", "https"},
		{"10.0.0.2:1", "gopher", "http"},
		{"203.0.113.5:1", "https", "http"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tt.peer
		r.Header.Set("X-Forwarded-Proto", tt.proto)
		if got := trustedProxies(trusted).scheme(r); got != tt.want {
			t.Errorf("peer %s, X-Forwarded-Proto %s: scheme = %q, want %q", tt.peer, tt.proto, got, tt.want)
		}
	}
}
