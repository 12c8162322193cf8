package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/assertion"
	"github.com/gatehouse/gatehouse/canonical"
	"github.com/gatehouse/gatehouse/internal/confcheck"
)

// ServerConfig is the server section.
type ServerConfig struct {
	Listen         string   `mapstructure:"listen"`
	PublicURL      string   `mapstructure:"public_url"`
	PathPrefix     string   `mapstructure:"path_prefix"`
	MetricsListen  string   `mapstructure:"metrics_listen"`
	TLSCertFile    string   `mapstructure:"tls_cert_file"`
	TLSKeyFile     string   `mapstructure:"tls_key_file"`
	TrustedProxies []string `mapstructure:"trusted_proxies"`
}

// UpstreamConfig is the upstream section.
type UpstreamConfig struct {
	URL            string        `mapstructure:"url"`
	PassHostHeader bool          `mapstructure:"pass_host_header"`
	Timeout        time.Duration `mapstructure:"timeout"`
	SkipAuthRoutes []string      `mapstructure:"skip_auth_routes"`
	APIRoutes      []string      `mapstructure:"api_routes"`
	// EncodedSlashes and PathParameters say what %2F and ";" in a path
	// mean (SPEC "Canonical requests"); both refuse by default.
	EncodedSlashes string `mapstructure:"encoded_slashes"`
	PathParameters string `mapstructure:"path_parameters"`
	// TLS is how an https upstream's certificate is checked.
	TLS UpstreamTLSConfig `mapstructure:"tls"`
	// SetAuthorization sends the upstream "Authorization: Bearer" with the
	// assertion or the provider's access token: none (""), assertion or
	// access_token. With routes it is their default.
	SetAuthorization string `mapstructure:"set_authorization"`
}

// DefaultUpstreamURL is upstream.url's default. With routes configured,
// the upstream section only lends its defaults to them, and any other URL
// there would be silently unused: it is refused instead.
const DefaultUpstreamURL = "http://127.0.0.1:8080"

// UpstreamTLSConfig is upstream.tls: trust for an https upstream on a
// private PKI.
type UpstreamTLSConfig struct {
	// CAFile is a PEM bundle the upstream's certificate must chain to,
	// instead of the system's roots: a private upstream is vouched for by
	// its own CA, and no public CA should be able to stand in for it.
	CAFile string `mapstructure:"ca_file"`
	// ServerName is the name the certificate must hold (and the SNI sent),
	// when the URL's host is not it, e.g. an IP address or a Service name.
	ServerName string `mapstructure:"server_name"`
	// InsecureSkipVerify checks no certificate at all; warned about at
	// start (see UpstreamConfig.Warnings).
	InsecureSkipVerify bool `mapstructure:"insecure_skip_verify"`
}

// set reports whether any key of the section is set.
func (t UpstreamTLSConfig) set() bool {
	return t.CAFile != "" || t.ServerName != "" || t.InsecureSkipVerify
}

// clientConfig is the TLS configuration of connections to the upstream:
// nil when the section is empty (Go's defaults: the system's roots, the
// URL's host).
func (t UpstreamTLSConfig) clientConfig() (*tls.Config, error) {
	if !t.set() {
		return nil, nil
	}
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, // opt-in, warned about at start
	}
	if t.CAFile != "" {
		pool, err := CertPool(t.CAFile, false)
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	return c, nil
}

// CertPool reads a PEM bundle of CA certificates. With system true the
// certificates are added to a copy of the system's roots; otherwise they
// are the only roots. A file that cannot be read, or that holds no
// certificate at all (a key, a DER file, an empty mount), is an error:
// trusting "nothing extra" by mistake would only show as failed
// handshakes much later.
func CertPool(file string, system bool) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read the CA bundle: %v", err)
	}
	pool := x509.NewCertPool()
	if system {
		if sys, err := x509.SystemCertPool(); err == nil {
			pool = sys
		}
	}
	var n int
	for rest := b; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: a certificate cannot be parsed: %v", file, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate (-----BEGIN CERTIFICATE-----)", file)
	}
	return pool, nil
}

// HeadersConfig is the headers section: what is sent upstream.
type HeadersConfig struct {
	User              string           `mapstructure:"user"`
	Email             string           `mapstructure:"email"`
	Groups            string           `mapstructure:"groups"`
	PreferredUsername string           `mapstructure:"preferred_username"`
	PassAccessToken   bool             `mapstructure:"pass_access_token"`
	Assertion         assertion.Config `mapstructure:"assertion"`
}

// Validate checks the server section and returns the parsed public URL
// and trusted networks.
func (c *ServerConfig) Validate() (*url.URL, []netip.Prefix, confcheck.Problems) {
	var ps confcheck.Problems
	if c.Listen == "" {
		ps.Addf("listen", "required, e.g. \":4180\"")
	}
	var public *url.URL
	if c.PublicURL == "" {
		ps.Addf("public_url", "required: the external base URL, e.g. https://dash.example.com; callbacks are built from it")
	} else if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		ps.Addf("public_url", "%q is not an absolute http(s) URL", c.PublicURL)
	} else if u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		ps.Addf("public_url", "must be a scheme and host only (Gatehouse serves at the root of its host), not %q", c.PublicURL)
	} else {
		public = &url.URL{Scheme: u.Scheme, Host: u.Host}
	}
	if !validPathPrefix(c.PathPrefix) {
		ps.Addf("path_prefix", "must start with '/', not end with one, and hold only letters, digits, '-', '.', '_', '~' between single slashes, e.g. \"/oauth2\"; got %q", c.PathPrefix)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		ps.Addf("tls_cert_file", "tls_cert_file and tls_key_file must be set together")
	} else if c.TLSCertFile != "" {
		if _, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			ps.Addf("tls_cert_file", "cannot load the certificate and key: %v", err)
		}
	}
	nets, bad := ParseCIDRs(c.TrustedProxies)
	for _, b := range bad {
		ps.Addf("trusted_proxies", "%q is not a CIDR or IP address", b)
	}
	return public, nets, ps
}

// validPathPrefix: "/name" or "/a/b", each segment of unreserved
// characters and never a dot segment, so the prefix reads the same
// escaped and decoded (the Envoy check matches it on the raw path).
func validPathPrefix(p string) bool {
	if !strings.HasPrefix(p, "/") || p == "/" || strings.HasSuffix(p, "/") {
		return false
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
				return false
			}
		}
	}
	return true
}

// ParseCIDRs parses CIDRs and bare IP addresses; it returns the entries
// that are neither.
func ParseCIDRs(in []string) (nets []netip.Prefix, bad []string) {
	for _, s := range in {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			nets = append(nets, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			nets = append(nets, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		bad = append(bad, s)
	}
	return nets, bad
}

// Validate checks the upstream section and compiles its routes.
func (c *UpstreamConfig) Validate() (*url.URL, Routes, confcheck.Problems) {
	var ps confcheck.Problems
	var target *url.URL
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		ps.Addf("url", "%q is not an absolute http(s) URL", c.URL)
	} else if u.RawQuery != "" || u.Fragment != "" {
		ps.Addf("url", "must not have a query or fragment")
	} else {
		target = u
	}
	if c.Timeout <= 0 {
		ps.Addf("timeout", "must be a positive duration such as 30s")
	}
	var routes Routes
	var err error
	if routes.Paths.EncodedSlashes, err = canonical.ParseSlashMode(c.EncodedSlashes); err != nil {
		ps.Addf("encoded_slashes", "%v", err)
	}
	if routes.Paths.PathParameters, err = canonical.ParseParamMode(c.PathParameters); err != nil {
		ps.Addf("path_parameters", "%v", err)
	}
	c.TLS.validate(&ps, target, "url", c.URL)
	if _, err := parseAuthorizationMode(c.SetAuthorization); err != nil {
		ps.Addf("set_authorization", "%v", err)
	}
	for _, raw := range c.SkipAuthRoutes {
		m, err := parseRoute(raw, true)
		if err != nil {
			ps.Addf("skip_auth_routes", "%v", err)
			continue
		}
		routes.SkipAuth = append(routes.SkipAuth, m)
	}
	for _, raw := range c.APIRoutes {
		m, err := parseRoute(raw, false)
		if err != nil {
			ps.Addf("api_routes", "%v", err)
			continue
		}
		routes.API = append(routes.API, m)
	}
	return target, routes, ps
}

// validate checks the section for an upstream at target (nil when its
// URL, the key urlKey with value raw, is invalid).
func (t UpstreamTLSConfig) validate(ps *confcheck.Problems, target *url.URL, urlKey, raw string) {
	if t.set() && target != nil && target.Scheme != "https" {
		ps.Addf("tls", "applies to an https upstream only; %s is %q", urlKey, raw)
	}
	if t.CAFile != "" {
		if _, err := CertPool(t.CAFile, false); err != nil {
			ps.Addf("tls.ca_file", "%v", err)
		}
	}
	if t.ServerName != "" && !validServerName(t.ServerName) {
		ps.Addf("tls.server_name", "%q is not a host name", t.ServerName)
	}
	if t.InsecureSkipVerify && (t.CAFile != "" || t.ServerName != "") {
		ps.Addf("tls.insecure_skip_verify", "checks no certificate, so ca_file and server_name would be ignored; set one or the other")
	}
}

// ValidateWithRoutes checks the section when routes are configured: it is
// then the one-route shorthand's defaults only (pass_host_header,
// timeout, set_authorization, encoded_slashes, path_parameters), and the
// keys that describe the single upstream itself must stay unset, or they
// would be silently ignored.
func (c *UpstreamConfig) ValidateWithRoutes() confcheck.Problems {
	var ps confcheck.Problems
	if c.URL != DefaultUpstreamURL && c.URL != "" {
		ps.Addf("url", "must be left unset when routes are configured: upstream is the shorthand for one route; "+
			"give each upstream its own routes entry (its to: %q)", c.URL)
	}
	if len(c.SkipAuthRoutes) > 0 {
		ps.Addf("skip_auth_routes", "must be empty when routes are configured; set skip_auth_routes on each route")
	}
	if len(c.APIRoutes) > 0 {
		ps.Addf("api_routes", "must be empty when routes are configured; set api_routes on each route")
	}
	if c.TLS.set() {
		ps.Addf("tls", "must be empty when routes are configured; set tls on each route")
	}
	return ps
}

// Warnings are the upstream section's start-up warnings.
func (c *UpstreamConfig) Warnings() []string {
	if c.TLS.InsecureSkipVerify {
		return []string{"upstream.tls.insecure_skip_verify is true: THE UPSTREAM'S CERTIFICATE IS NOT CHECKED, so anybody " +
			"on the network path can pose as the upstream and read every request, identity headers and assertions included; " +
			"use upstream.tls.ca_file (and server_name) instead"}
	}
	return nil
}

var serverName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

// validServerName: a DNS name, or an IP address (certificates can hold
// those too).
func validServerName(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	return len(s) <= 253 && serverName.MatchString(s)
}

// Validate checks the headers section.
func (c *HeadersConfig) Validate() confcheck.Problems {
	var ps confcheck.Problems
	for key, name := range map[string]string{
		"user": c.User, "email": c.Email, "groups": c.Groups, "preferred_username": c.PreferredUsername,
		"assertion.header": c.Assertion.Header,
	} {
		if name != "" && !validHeaderName(name) {
			ps.Addf(key, "%q is not a valid HTTP header name", name)
		}
	}
	if c.Assertion.Enabled && c.Assertion.Header == "" {
		ps.Addf("assertion.header", "required when assertion.enabled is true")
	}
	return ps
}

var headerName = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

func validHeaderName(s string) bool { return headerName.MatchString(s) }

func parseRoute(raw string, allowMethod bool) (routeMatcher, error) {
	var m routeMatcher
	expr := raw
	if allowMethod {
		if method, rest, ok := strings.Cut(raw, "="); ok && isMethodToken(strings.ToUpper(method)) {
			method = strings.ToUpper(method)
			m.method = method
			expr = rest
		}
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return m, fmt.Errorf("%q is not a valid regular expression: %v", raw, err)
	}
	if expr == "" {
		return m, fmt.Errorf("%q has an empty regular expression, which would match every path", raw)
	}
	m.path = re
	return m, nil
}

func isMethodToken(s string) bool {
	switch s {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE":
		return true
	}
	return false
}
