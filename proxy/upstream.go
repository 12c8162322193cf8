package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/metrics"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/tokens"
)

type ctxKey int

const forwardKey ctxKey = 0

// forwarded is the identity a request carries to the upstream.
type forwarded struct {
	identity    identity.Identity
	sid         string // hash of the session or token id, for the assertion
	cacheKey    string // what an assertion may be reused for
	accessToken string // provider access token, for pass_access_token
	bearer      bool   // authenticated by a bearer token: never forward it
	assertion   string // signed JWT, "" when assertions are off
	values      *identityValues
	// until caps the assertion's expiry: a workload JWT's own exp, so the
	// assertion never vouches for a token that has expired. Zero: no cap.
	until time.Time
}

// upstream is the reverse proxy to upstream.url. It rewrites each request
// once, after net/http/httputil has removed hop-by-hop headers, so a
// client cannot use "Connection: X-Forwarded-User" to drop what we set.
type upstream struct {
	rp      *httputil.ReverseProxy
	target  *url.URL
	cfg     UpstreamConfig
	auth    authorizationMode // set_authorization
	strip   string            // path prefix removed before forwarding (a route's strip_prefix); "" none
	headers *identityHeaders
	trusted trustedProxies
	cookie  string
	own     ownCookies // Gatehouse's cookies, never passed upstream
	pages   *pages.Renderer
	log     *slog.Logger
}

func newUpstream(target *url.URL, cfg UpstreamConfig, headers *identityHeaders, trusted trustedProxies,
	cookie string, pg *pages.Renderer, log *slog.Logger, m *metrics.Metrics) *upstream {
	u := &upstream{target: target, cfg: cfg, headers: headers, trusted: trusted, cookie: cookie, own: newOwnCookies(cookie), pages: pg, log: log}
	// Validated at load; should it not parse, no Authorization is set.
	u.auth, _ = parseAuthorizationMode(cfg.SetAuthorization)
	transport := &http.Transport{
		Proxy:                 nil, // never route upstream traffic through an environment proxy
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout,
		ExpectContinueTimeout: time.Second,
	}
	tlsConfig, err := cfg.TLS.clientConfig()
	if err != nil {
		// Validated at load moments ago, so the file changed in between;
		// the watcher sees that change and loads again. Until then no
		// handshake is trusted: falling back to the system's roots would
		// trust what the operator chose not to.
		log.Error("upstream.tls: the upstream cannot be trusted; every request fails until the configuration is fixed", "err", err)
		tlsConfig = &tls.Config{
			MinVersion: tls.VersionTLS12,
			VerifyConnection: func(tls.ConnectionState) error {
				return fmt.Errorf("upstream.tls.ca_file: %w", err)
			},
		}
	}
	transport.TLSClientConfig = tlsConfig
	u.rp = &httputil.ReverseProxy{
		Rewrite: u.rewrite,
		ModifyResponse: func(resp *http.Response) error {
			stripOwnSetCookies(resp.Header, u.own)
			return nil
		},
		Transport:    timedTransport{rt: transport, m: m},
		BufferPool:   newBufferPool(),
		ErrorHandler: u.errorHandler,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return u
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) { u.rp.ServeHTTP(w, r) }

func (u *upstream) rewrite(pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out
	if u.strip != "" {
		// The prefix matched whole segments of the canonical path, and
		// holds only unreserved characters, so it begins the decoded and
		// the escaped forms alike.
		out.URL.Path = stripPathPrefix(out.URL.Path, u.strip)
		if out.URL.RawPath != "" {
			out.URL.RawPath = stripPathPrefix(out.URL.RawPath, u.strip)
		}
	}
	pr.SetURL(u.target)
	// The query goes upstream exactly as received (ReverseProxy would drop
	// parameters it cannot parse); decisions never read it.
	out.URL.RawQuery = in.URL.RawQuery
	if u.cfg.PassHostHeader {
		out.Host = in.Host
	}
	// X-Forwarded-*: believed only from trusted proxies; otherwise
	// replaced by what this hop saw.
	if u.trusted.trusts(in) {
		if v := in.Header.Values("X-Forwarded-For"); len(v) > 0 {
			out.Header["X-Forwarded-For"] = append([]string(nil), v...)
		}
	}
	pr.SetXForwarded()
	out.Header["X-Forwarded-Proto"] = schemeValue(u.trusted.scheme(in))
	if h := in.Header.Get("X-Forwarded-Host"); h != "" && u.trusted.trusts(in) {
		out.Header.Set("X-Forwarded-Host", h)
	}
	out.Header.Set("X-Real-Ip", u.trusted.clientIP(in))

	u.headers.strip(out.Header)
	stripOwnCookies(out.Header, u.own)
	stripGatehouseTokens(out.Header)
	if u.auth != authorizeNone {
		// This upstream takes Authorization as Gatehouse's word: a
		// client's own never passes, skip-auth routes included.
		out.Header.Del("Authorization")
	}
	if f, ok := forwardedOf(in); ok {
		if f.bearer {
			out.Header.Del("Authorization")
		}
		u.headers.set(out.Header, f.values, f.accessToken)
		if f.assertion != "" {
			out.Header.Set(u.headers.cfg.Assertion.Header, f.assertion)
		}
		switch {
		case u.auth == authorizeAssertion && f.assertion != "":
			out.Header.Set("Authorization", "Bearer "+f.assertion)
		case u.auth == authorizeAccessToken && f.accessToken != "":
			out.Header.Set("Authorization", "Bearer "+sanitizeHeaderValue(f.accessToken))
		}
	}
}

// schemeValue is the header value of scheme ("http" or "https", what
// trustedProxies.scheme returns), shared between requests rather than
// allocated for each: nothing modifies an outgoing header's values.
func schemeValue(scheme string) []string {
	switch scheme {
	case "https":
		return httpsValue
	case "http":
		return httpValue
	}
	return []string{scheme}
}

var httpValue, httpsValue = []string{"http"}, []string{"https"}

// forwardedOf returns the identity gate attached to a request it let
// pass (see Handler.gate), if any.
func forwardedOf(r *http.Request) (*forwarded, bool) {
	ctx := r.Context()
	if n, ok := ctx.Value(noteKey).(*requestNote); ok && n.forward != nil {
		return n.forward, true
	}
	f, ok := ctx.Value(forwardKey).(*forwarded)
	return f, ok
}

// stripPathPrefix removes prefix (which p begins with, on a segment
// boundary) from p; what is left is at least "/".
func stripPathPrefix(p, prefix string) string {
	rest, ok := strings.CutPrefix(p, prefix)
	if !ok {
		return p
	}
	if rest == "" || rest[0] != '/' {
		return "/" + rest
	}
	return rest
}

func (u *upstream) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		// The client went away; nobody is left to read an error page.
		w.WriteHeader(499)
		return
	}
	status := http.StatusBadGateway
	title, msg := "Upstream unavailable", "The service behind this gateway could not be reached. Please try again in a moment."
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		status = http.StatusGatewayTimeout
		title, msg = "Upstream timed out", "The service behind this gateway did not answer in time."
	}
	u.log.Warn("upstream request failed", "status", status, "err", err.Error())
	if pages.WantsJSON(r) {
		pages.JSONError(w, status, "upstream_unavailable", msg)
		return
	}
	u.pages.Error(w, status, title, msg, "")
}

// timedTransport records how long the upstream takes to answer headers.
type timedTransport struct {
	rt http.RoundTripper
	m  *metrics.Metrics
}

func (t timedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.rt.RoundTrip(r)
	if t.m != nil {
		t.m.UpstreamDuration.Observe(time.Since(start).Seconds())
	}
	return resp, err
}

// stripGatehouseTokens removes credentials that carry a token Gatehouse
// issued (gth_...), whatever the route: such a token is for Gatehouse
// alone, and an upstream (or its logs) must never see it.
func stripGatehouseTokens(h http.Header) {
	for _, name := range []string{"Authorization", "Proxy-Authorization"} {
		for _, v := range h.Values(name) {
			_, cred, _ := strings.Cut(strings.TrimSpace(v), " ")
			if strings.HasPrefix(strings.TrimSpace(cred), tokens.Prefix) {
				h.Del(name)
				break
			}
		}
	}
}

// bufferPool lends ReverseProxy its copy buffers, so a response body does
// not cost a fresh 32 KiB allocation per request.
type bufferPool struct{ pool sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (p *bufferPool) Get() []byte  { return *(p.pool.Get().(*[]byte)) }
func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }
