package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/demo/echo"
	"github.com/gatehouse/gatehouse/demo/idp"
)

// demoUsers are the accounts of the demo's embedded provider: one that the
// demo's filter (allowed_domains: example.com) lets in and one it denies.
var demoUsers = []idp.User{
	{Subject: "1001", Email: "alice@example.com", EmailVerified: true, Name: "Alice Example",
		PreferredUsername: "alice", Groups: []string{"staff", "ops"}, Password: "demo"},
	{Subject: "1002", Email: "mallory@evil.test", EmailVerified: true, Name: "Mallory",
		PreferredUsername: "mallory", Groups: []string{"staff"}, Password: "demo"},
}

func newDemoCommand(stdout, stderr io.Writer) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a self-contained local demo: a demo OIDC provider, an echo upstream and the proxy, on loopback",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, listen, stdout, stderr)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:4180", "address for the proxy")
	return cmd
}

func runDemo(ctx context.Context, listen string, stdout, stderr io.Writer) error {
	proxyLn, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w (choose another with --listen)", listen, err)
	}
	public := "http://" + proxyLn.Addr().String()

	echoURL, err := serveBackground(ctx, "127.0.0.1:0", echo.NewHandler())
	if err != nil {
		return err
	}
	idpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	issuer := "http://" + idpLn.Addr().String()
	clientSecret := randomString()
	provider, err := idp.New(idp.Config{
		Issuer: issuer,
		Users:  demoUsers,
		Clients: []idp.Client{{
			ID: "gatehouse-demo", Secret: clientSecret,
			RedirectURIs: []string{public + "/oauth2/callback/demo"},
		}},
	})
	if err != nil {
		return err
	}
	startServer(ctx, idpLn, provider)

	// The demo is configured exactly as an operator would from the
	// environment, so it exercises the same loading and validation.
	env := []string{
		"GATEHOUSE_SERVER_LISTEN=" + proxyLn.Addr().String(),
		"GATEHOUSE_SERVER_PUBLIC_URL=" + public,
		"GATEHOUSE_SERVER_METRICS_LISTEN=",
		"GATEHOUSE_UPSTREAM_URL=" + echoURL,
		"GATEHOUSE_AUTH_ALLOWED_DOMAINS=example.com",
		"GATEHOUSE_AUTH_OIDC_DEMO_DISPLAY_NAME=Demo SSO",
		"GATEHOUSE_AUTH_OIDC_DEMO_ISSUER_URL=" + issuer,
		"GATEHOUSE_AUTH_OIDC_DEMO_CLIENT_ID=gatehouse-demo",
		"GATEHOUSE_AUTH_OIDC_DEMO_CLIENT_SECRET=" + clientSecret,
		"GATEHOUSE_SESSION_SECRET=" + randomString(),
		"GATEHOUSE_SESSION_COOKIE_SECURE=false", // plain HTTP on loopback
		"GATEHOUSE_LOGGING_FORMAT=text",
	}
	l, err := loadConfig("", env)
	if err != nil {
		return err
	}
	log := newLogger(stderr, l.Config.Logging)
	handler, err := newApp(l, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, `
  Gatehouse demo
  ──────────────
  Open            %s/
  Upstream        %s  (echo: shows the headers it receives)
  OIDC provider   %s

  Demo accounts (password "demo" for both):
    alice@example.com    allowed (allowed_domains: example.com)
    mallory@evil.test    denied  (wrong domain)

  Press Ctrl-C to stop.

`, public, echoURL, issuer)
	return serveOn(ctx, proxyLn, handler, l, log)
}

// serveBackground serves h on addr until ctx ends and returns its URL.
func serveBackground(ctx context.Context, addr string, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	startServer(ctx, ln, h)
	return "http://" + ln.Addr().String(), nil
}

func startServer(ctx context.Context, ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
}

func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
