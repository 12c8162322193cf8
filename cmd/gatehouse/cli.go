package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/oauthserver"
)

// The CLI side of the device flow: `gatehouse login URL` signs in,
// `gatehouse token URL` prints the token, `gatehouse logout URL` revokes it.

// tokenFile is where the CLI keeps tokens: the user's config dir, 0600.
type tokenFile struct {
	path string
}

type storedToken struct {
	AccessToken string    `json:"access_token"`
	Expiry      time.Time `json:"expiry"`
	Scope       string    `json:"scope,omitempty"`
}

func defaultTokenFile() (*tokenFile, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return nil, fmt.Errorf("cannot find your config directory: %w", err)
	}
	return &tokenFile{path: filepath.Join(dir, "gatehouse", "tokens.json")}, nil
}

func (f *tokenFile) load() (map[string]storedToken, error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]storedToken{}, nil
	}
	if err != nil {
		return nil, err
	}
	m := map[string]storedToken{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v); delete it and sign in again", f.path, err)
	}
	return m, nil
}

func (f *tokenFile) save(m map[string]storedToken) error {
	if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	// Write a new file and rename it over the old one, so a crash never
	// leaves a half-written file, and the file is 0600 from its first byte.
	tmp, err := os.CreateTemp(filepath.Dir(f.path), ".tokens-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), f.path)
}

// openTokens normalizes a server URL and loads the stored tokens.
func openTokens(rawURL string) (base string, tf *tokenFile, all map[string]storedToken, err error) {
	if base, err = serverKey(rawURL); err != nil {
		return "", nil, nil, err
	}
	if tf, err = defaultTokenFile(); err != nil {
		return "", nil, nil, err
	}
	all, err = tf.load()
	return base, tf, all, err
}

// storedTokenFor returns the normalized server URL and its stored,
// unexpired token.
func storedTokenFor(rawURL string) (base string, t storedToken, err error) {
	base, _, all, err := openTokens(rawURL)
	if err != nil {
		return "", storedToken{}, err
	}
	t, ok := all[base]
	if !ok || (!t.Expiry.IsZero() && time.Now().After(t.Expiry)) {
		return "", storedToken{}, fmt.Errorf("no valid token for %s; run: gatehouse login %s", base, base)
	}
	return base, t, nil
}

// serverKey normalizes a Gatehouse URL to scheme://host.
func serverKey(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not a Gatehouse URL such as https://dash.example.com", raw)
	}
	return u.Scheme + "://" + strings.ToLower(u.Host), nil
}

type serverMetadata struct {
	DeviceEndpoint     string `json:"device_authorization_endpoint"`
	TokenEndpoint      string `json:"token_endpoint"`
	RevocationEndpoint string `json:"revocation_endpoint"`
}

// discover reads the server's RFC 8414 metadata.
func discover(ctx context.Context, client *http.Client, base string) (*serverMetadata, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/.well-known/oauth-authorization-server", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s does not offer device sign-in (metadata answered %s); is device_flow.enabled set?", base, resp.Status)
	}
	var m serverMetadata
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&m); err != nil || m.DeviceEndpoint == "" || m.TokenEndpoint == "" {
		return nil, fmt.Errorf("%s sent unusable metadata", base)
	}
	return &m, nil
}

func newLoginCommand(stdout, stderr io.Writer) *cobra.Command {
	var scopes []string
	var noBrowser bool
	cmd := &cobra.Command{
		Use:   "login URL",
		Short: "Sign in to a Gatehouse from the command line (device flow) and keep the token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			base, err := serverKey(args[0])
			if err != nil {
				return err
			}
			tf, err := defaultTokenFile()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			client := &http.Client{Timeout: 30 * time.Second}
			meta, err := discover(ctx, client, base)
			if err != nil {
				return err
			}
			cfg := &oauth2.Config{
				ClientID: oauthserver.CLIClientID,
				Scopes:   scopes,
				Endpoint: oauth2.Endpoint{DeviceAuthURL: meta.DeviceEndpoint, TokenURL: meta.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams},
			}
			ctx = context.WithValue(ctx, oauth2.HTTPClient, client)
			da, err := cfg.DeviceAuth(ctx)
			if err != nil {
				return fmt.Errorf("starting device sign-in: %w", err)
			}
			fmt.Fprintf(stderr, "To sign in, open %s\nand enter the code: %s\n", da.VerificationURI, da.UserCode)
			if !noBrowser && da.VerificationURIComplete != "" {
				openBrowser(da.VerificationURIComplete)
			}
			fmt.Fprintln(stderr, "Waiting for approval...")
			tok, err := cfg.DeviceAccessToken(ctx, da)
			if err != nil {
				return fmt.Errorf("device sign-in did not complete: %w", err)
			}
			all, err := tf.load()
			if err != nil {
				return err
			}
			scope, _ := tok.Extra("scope").(string)
			all[base] = storedToken{AccessToken: tok.AccessToken, Expiry: tok.Expiry, Scope: scope}
			if err := tf.save(all); err != nil {
				return fmt.Errorf("saving the token: %w", err)
			}
			fmt.Fprintf(stdout, "Signed in to %s (token valid until %s).\n", base, tok.Expiry.Local().Format(time.RFC1123))
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&scopes, "scope", nil, "scopes to ask for (default: the server's default, read)")
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "do not try to open a browser")
	return cmd
}

func newTokenCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "token URL",
		Short: "Print the stored token for URL (for curl -H \"Authorization: Bearer $(gatehouse token URL)\")",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			_, t, err := storedTokenFor(args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(stdout, t.AccessToken)
			return err
		},
	}
}

func newLogoutCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "logout URL",
		Short: "Revoke the stored token for URL at the server and forget it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			base, tf, all, err := openTokens(args[0])
			if err != nil {
				return err
			}
			t, ok := all[base]
			if !ok {
				fmt.Fprintf(stdout, "No token stored for %s.\n", base)
				return nil
			}
			client := &http.Client{Timeout: 30 * time.Second}
			revoke := base + "/oauth2/revoke"
			// The token goes only to the server it came from, whatever the
			// metadata names.
			if meta, err := discover(cmd.Context(), client, base); err == nil && strings.HasPrefix(meta.RevocationEndpoint, base+"/") {
				revoke = meta.RevocationEndpoint
			}
			resp, err := client.PostForm(revoke, url.Values{"token": {t.AccessToken}, "client_id": {oauthserver.CLIClientID}})
			if err != nil {
				return fmt.Errorf("revoking at %s failed (%v); the token is kept so you can retry", base, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("revoking at %s failed (%s); the token is kept so you can retry", base, resp.Status)
			}
			delete(all, base)
			if err := tf.save(all); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Signed out of %s.\n", base)
			return nil
		},
	}
}

// openBrowser tries to show url; failing is fine, the URL is printed.
func openBrowser(url string) {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", url)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
			return
		}
		cmd = exec.Command("xdg-open", url)
	}
	_ = cmd.Start()
}
