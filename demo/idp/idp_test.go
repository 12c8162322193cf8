package idp

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

const redirect = "https://app.example/callback"

func newServer(t *testing.T) (*Provider, *httptest.Server) {
	t.Helper()
	return newServerWith(t, nil)
}

// newServerWith is newServer with the configuration adjusted by edit;
// cfg.Issuer starts as the server's URL.
func newServerWith(t *testing.T, edit func(cfg *Config)) (*Provider, *httptest.Server) {
	t.Helper()
	var p *Provider
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	cfg := Config{Issuer: srv.URL, Clients: []Client{{ID: "app", Secret: "s", RedirectURIs: []string{redirect}}},
		Users: []User{{Subject: "1", Email: "a@example.com", EmailVerified: true, PreferredUsername: "a", Groups: []string{"g"}, Password: "pw"}}}
	if edit != nil {
		edit(&cfg)
	}
	var err error
	p, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p, srv
}

var hidden = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// authorize fills the login form and returns the code from the redirect.
func authorize(t *testing.T, authURL string) (code string, resp *http.Response) {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	page, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	form := url.Values{"username": {"a@example.com"}, "password": {"pw"}}
	for _, m := range hidden.FindAllStringSubmatch(string(body), -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	u, _ := url.Parse(authURL)
	resp, err = c.PostForm(u.Scheme+"://"+u.Host+"/auth", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	return loc.Query().Get("code"), resp
}

func TestCodeFlowWithPKCEAndNonce(t *testing.T) {
	_, srv := newServer(t)
	ctx := oidc.ClientContext(context.Background(), srv.Client())
	provider, err := oidc.NewProvider(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg := oauth2.Config{ClientID: "app", ClientSecret: "s", RedirectURL: redirect, Endpoint: provider.Endpoint(), Scopes: []string{"openid", "email"}}
	verifier := oauth2.GenerateVerifier()
	code, resp := authorize(t, cfg.AuthCodeURL("st", oidc.Nonce("n1"), oauth2.S256ChallengeOption(verifier)))
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "state=st") || !strings.Contains(loc, "iss=") {
		t.Fatalf("redirect = %s", loc)
	}
	if _, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
		t.Fatal("a wrong code_verifier was accepted")
	}
	code, _ = authorize(t, cfg.AuthCodeURL("st", oidc.Nonce("n1"), oauth2.S256ChallengeOption(verifier)))
	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	idt, err := provider.Verifier(&oidc.Config{ClientID: "app"}).Verify(ctx, tok.Extra("id_token").(string))
	if err != nil || idt.Nonce != "n1" {
		t.Fatalf("id token: %v nonce %q", err, idt.Nonce)
	}
	if _, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier)); err == nil {
		t.Fatal("a code was accepted twice")
	}
}

func TestBadRedirectURIIsNeverFollowed(t *testing.T) {
	_, srv := newServer(t)
	u := srv.URL + "/auth?response_type=code&client_id=app&scope=openid&state=x&code_challenge=c&code_challenge_method=S256&redirect_uri=" + url.QueryEscape("https://evil.example/cb")
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Fatalf("unregistered redirect_uri: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}
