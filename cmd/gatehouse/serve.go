package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/account"
	"github.com/gatehouse/gatehouse/assertion"
	"github.com/gatehouse/gatehouse/authn"
	"github.com/gatehouse/gatehouse/handoff"
	"github.com/gatehouse/gatehouse/metrics"
	"github.com/gatehouse/gatehouse/oauthserver"
	"github.com/gatehouse/gatehouse/oauthserver/workload"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/proxy"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
	"github.com/gatehouse/gatehouse/tokens"
)

// shutdownGrace bounds how long in-flight requests may finish on SIGTERM.
const shutdownGrace = 20 * time.Second

func newLogger(w io.Writer, c LoggingConfig) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// app holds what lives as long as the process, across configuration
// reloads: the session store (so sessions survive a reload), the metrics,
// and a generated assertion key (so upstreams' cached key sets stay good).
// The handler and the TLS certificate are swapped by reloads.
type app struct {
	log     *slog.Logger
	metrics *metrics.Metrics
	store   sessionstore.Store // instrumented
	raw     sessionstore.Store // as built, for Close
	genKey  *assertion.Key
	current atomic.Pointer[http.Handler]
	cert    atomic.Pointer[tls.Certificate] // nil: plain HTTP
}

func newApp(l *Loaded, log *slog.Logger) (*app, error) {
	cert, err := loadCertificate(l)
	if err != nil {
		return nil, fmt.Errorf("server.tls_cert_file: %w", err)
	}
	store, err := sessionstore.New(l.Config.Session.Store, sessionstore.WithLogger(log))
	if err != nil {
		return nil, err
	}
	m := metrics.New()
	m.SetBuildInfo(version, commit)
	a := &app{log: log, metrics: m, raw: store, store: m.InstrumentStore(store, l.Config.Session.Store.Type)}
	h, err := a.build(l)
	if err != nil {
		return nil, err
	}
	a.current.Store(&h)
	a.setCertificate(cert)
	return a, nil
}

// setCertificate serves cert from the next handshake on and reports its
// expiry; nil (TLS off) changes nothing.
func (a *app) setCertificate(cert *tls.Certificate) {
	if cert == nil {
		return
	}
	a.cert.Store(cert)
	if cert.Leaf != nil {
		a.metrics.SetCertificateExpiry(cert.Leaf.NotAfter)
	}
}

// GetCertificate serves the certificate of the configuration now serving,
// so that a renewed certificate applies without a restart.
func (a *app) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := a.cert.Load()
	if c == nil {
		return nil, errors.New("no TLS certificate is configured")
	}
	return c, nil
}

// close releases the store's connections and background work.
func (a *app) close() {
	if c, ok := a.raw.(io.Closer); ok {
		_ = c.Close()
	}
}

// ServeHTTP serves with the current configuration's handler.
func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) { (*a.current.Load()).ServeHTTP(w, r) }

// swap replaces the handler; requests in flight finish on the old one.
func (a *app) swap(h http.Handler) { a.current.Store(&h) }

// build wires the packages together from a validated configuration.
func (a *app) build(l *Loaded) (http.Handler, error) {
	cfg := l.Config
	sessions := session.NewManager(cfg.Session, a.store, nil)
	pg := l.Pages
	if pg == nil {
		pg = pages.New()
	}
	providerClient := newProviderClient(l.ProviderRoots)
	var providers []authn.Provider
	callback := func(name string) string { return authn.CallbackURL(l.PublicURL, cfg.Server.PathPrefix, name) }
	if cfg.Auth.GitHub.Enabled {
		gh, err := authn.NewGitHub(cfg.Auth.GitHub, l.Global, callback("github"), providerClient)
		if err != nil {
			return nil, err
		}
		providers = append(providers, gh)
	}
	if cfg.Auth.Google.Enabled {
		g, err := authn.NewGoogle(cfg.Auth.Google, l.Global, callback("google"), providerClient)
		if err != nil {
			return nil, err
		}
		providers = append(providers, g)
	}
	if cfg.Auth.Microsoft.Enabled {
		ms, err := authn.NewMicrosoft(cfg.Auth.Microsoft, l.Global, callback("microsoft"), providerClient)
		if err != nil {
			return nil, err
		}
		providers = append(providers, ms)
	}
	if cfg.Auth.GitLab.Enabled {
		providers = append(providers, authn.NewGitLab(cfg.Auth.GitLab, l.Global, callback("gitlab"), providerClient))
	}
	backchannel := map[string]http.Handler{}
	for _, name := range cfg.Auth.OIDCNames() {
		p := authn.NewOIDC(name, cfg.Auth.OIDC[name], l.Global, callback(name), providerClient)
		providers = append(providers, p)
		if p.BackchannelLogout() {
			backchannel[name] = oauthserver.BackchannelLogout(oauthserver.BackchannelConfig{
				Provider: name, Verifier: p, Sessions: sessions, Store: a.store, Logger: a.log,
			})
		}
	}
	// Counters with known label values start at 0, so rates work from the
	// first scrape (also after a reload adds a provider).
	names := make([]string, 0, len(providers))
	for _, p := range providers {
		names = append(names, p.Name())
	}
	a.metrics.Init(names)
	// With routes, sign-in may send browsers back to any route host; one
	// that cannot read the session cookie (no shared cookie_domain) gets
	// its own session through a hand-off.
	var routeHost func(string) bool
	var ho *handoff.Handoff
	if l.RouteTable != nil {
		routeHost = l.RouteTable.IsRouteHost
		if cfg.Session.CookieDomain == "" {
			ho = handoff.New(handoff.Config{
				Store: a.store, Sessions: sessions, Pages: pg, PublicURL: l.PublicURL, Prefix: cfg.Server.PathPrefix,
				Cookie: cfg.Session.CookieName, Secure: cfg.Session.CookieSecure, RouteHost: l.RouteTable.IsRouteHost,
				ClientIP: proxy.ClientIP(l.Trusted), Logger: a.log,
			})
		}
	}
	var loginHandoff authn.Handoff
	var proxyHandoff proxy.Handoff
	if ho != nil { // never a typed nil in an interface
		loginHandoff, proxyHandoff = ho, ho
	}
	login := authn.NewLogin(authn.LoginConfig{
		Providers: providers, Sessions: sessions, Pages: pg, PublicURL: l.PublicURL,
		Prefix: cfg.Server.PathPrefix, Secret: cfg.Session.Secret, Cookie: cfg.Session.CookieName,
		Secure: cfg.Session.CookieSecure, Logger: a.log, Metrics: a.metrics,
		LinkAccountsByVerifiedEmail: cfg.Auth.LinkAccountsByVerifiedEmail,
		SkipProviderButton:          cfg.UI.SkipProviderButton,
		RouteHost:                   routeHost, Handoff: loginHandoff,
		ClientIP: proxy.ClientIP(l.Trusted),
	})
	signer, err := a.signer(l)
	if err != nil {
		return nil, err
	}
	toks := tokens.NewStore(a.store, l.Scopes, l.Statics, nil)
	// One revalidator for requests and device approvals, so both share
	// provider round trips.
	revalid := authn.NewRevalidator(login, sessions, cfg.Session.RevalidateInterval, nil)
	var device *oauthserver.Device
	if cfg.DeviceFlow.Enabled {
		device = oauthserver.NewDevice(oauthserver.DeviceConfig{
			Flow: cfg.DeviceFlow, Store: a.store, Tokens: toks, Sessions: sessions,
			People:    authn.People{Login: login, Revalidator: revalid},
			PublicURL: l.PublicURL, Prefix: cfg.Server.PathPrefix,
			Pages: pg, Secret: cfg.Session.Secret, Logger: a.log, Metrics: a.metrics,
			ClientIP: proxy.ClientIP(l.Trusted),
		})
	}
	machines := oauthserver.New(oauthserver.Config{Device: device, Revoke: oauthserver.Revoke(toks, a.log), Logout: backchannel})
	var workloads *workload.Verifier
	if len(cfg.Auth.JWTIssuers) > 0 {
		var err error
		if workloads, err = workload.New(cfg.Auth.JWTIssuers, providerClient, nil, a.log); err != nil {
			return nil, err
		}
	}
	h := proxy.New(proxy.Options{
		Server: cfg.Server, Upstream: cfg.Upstream, Headers: cfg.Headers,
		PublicURL: l.PublicURL, Target: l.Target, Trusted: l.Trusted, Routes: l.Routes,
		Policies: l.Policies, Login: login, Sessions: sessions,
		Revalid:   revalid,
		Assertion: signer, Tokens: toks, Workload: workloads, OAuth: machines, Cookie: cfg.Session.CookieName,
		Pages: pg, Logger: a.log, Metrics: a.metrics,
		RouteTable: l.RouteTable, Handoff: proxyHandoff,
		Account: account.New(account.Config{
			Sessions: sessions, Tokens: toks, Pages: pg, Secret: cfg.Session.Secret, Prefix: cfg.Server.PathPrefix,
			SignInURL: login.SignInURL, Logger: a.log,
		}),
	})
	return proxy.Observe(h, a.log, l.Trusted, a.metrics), nil
}

// newProviderClient is the HTTP client of every provider (discovery,
// token and user-info calls, JWKS, workload issuers). roots is auth.ca_file
// added to the system's roots; nil keeps Go's defaults.
func newProviderClient(roots *x509.CertPool) *http.Client {
	c := &http.Client{Timeout: 30 * time.Second}
	if roots == nil {
		return c
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	c.Transport = t
	return c
}

// signer builds the assertion signer, generating a key once per process
// when no key files are configured.
func (a *app) signer(l *Loaded) (*assertion.Signer, error) {
	c := l.Config.Headers.Assertion
	if !c.Enabled {
		return nil, nil
	}
	keys := l.Keys
	if len(keys) == 0 {
		if a.genKey == nil {
			k, err := assertion.GenerateKey()
			if err != nil {
				return nil, err
			}
			a.genKey = &k
			a.log.Warn("headers.assertion.signing_key_files is empty: signing with a key generated at start; " +
				"replicas need shared key files so upstreams can verify any of them")
		}
		keys = []assertion.Key{*a.genKey}
	}
	// Each route's assertions name its host; the default audience is for
	// the single upstream, or, with routes, forward-auth answers.
	aud := l.Target.Host
	if l.RouteTable != nil {
		aud = l.PublicURL.Host
	}
	return assertion.NewSigner(keys, l.PublicURL.String(), aud, c.Lifetime, nil)
}

// serve runs the proxy until ctx ends, then drains in-flight requests.
func serve(ctx context.Context, l *Loaded, log *slog.Logger, environ []string) error {
	for _, w := range l.Warnings {
		log.Warn(w)
	}
	a, err := newApp(l, log)
	if err != nil {
		return err
	}
	defer a.close()
	if addr := l.Config.Server.MetricsListen; addr != "" {
		stop, err := serveMetrics(addr, a.metrics, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	ln, err := net.Listen("tcp", l.Config.Server.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", l.Config.Server.Listen, err)
	}
	// Watch even without a config file: the environment may name files
	// (e-mails, secrets, the TLS pair), and SIGHUP must never end the
	// process.
	go watchConfig(ctx, a, l, environ, reloadPoll)
	return serveOn(ctx, ln, a, l, log)
}

func serveMetrics(addr string, m *metrics.Metrics, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s for metrics: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("metrics serving", "listen", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}

func serveOn(ctx context.Context, ln net.Listener, a *app, l *Loaded, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           a,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() {
		var err error
		if l.Config.Server.TLSCertFile != "" {
			// The certificate is looked up per handshake, so that one
			// renewed on disk is served after the reload that reads it.
			srv.TLSConfig = &tls.Config{GetCertificate: a.GetCertificate}
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		errc <- err
	}()
	if l.RouteTable != nil {
		log.Info("gatehouse serving", "listen", ln.Addr().String(), "public_url", l.PublicURL.String(), "routes", len(l.RouteTable.Routes()))
	} else {
		log.Info("gatehouse serving", "listen", ln.Addr().String(), "public_url", l.PublicURL.String(), "upstream", l.Target.String())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down; finishing in-flight requests", "grace", shutdownGrace.String())
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}
