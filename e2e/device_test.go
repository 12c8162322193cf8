package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	jwtv5 "github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"
)

const staticToken = "gth_static-machine-token-for-e2e-0123456789"

func deviceStack(t *testing.T) *stack {
	sum := sha256.Sum256([]byte(staticToken))
	return start(t, options{env: []string{
		"GATEHOUSE_DEVICE_FLOW_ENABLED=true",
		"GATEHOUSE_DEVICE_FLOW_POLL_INTERVAL=1s",
		`GATEHOUSE_TOKENS_SCOPES={"read":[{"methods":["GET","HEAD"],"paths":["^/"]}],"deploy":[{"methods":["POST"],"paths":["^/deploy$"]}]}`,
		`GATEHOUSE_TOKENS_STATIC=[{"name":"ci-bot","sha256":"` + hex.EncodeToString(sum[:]) + `","scopes":["deploy"]},` +
			`{"name":"old-bot","sha256":"` + strings.Repeat("ab", 32) + `","scopes":["read"],"expires_at":"2020-01-01T00:00:00Z"}]`,
	}})
}

func bearerGet(t *testing.T, method, u, token string) (int, echoed) {
	t.Helper()
	code, _, e := bearerRequest(t, method, u, token)
	return code, e
}

func TestDeviceFlowWithOAuth2ClientAndBrowserApproval(t *testing.T) {
	t.Parallel()
	s := deviceStack(t)
	// Discover the endpoints like any client would (RFC 8414).
	var meta struct {
		Device string `json:"device_authorization_endpoint"`
		Token  string `json:"token_endpoint"`
		Revoke string `json:"revocation_endpoint"`
	}
	resp := mustGet(t, http.DefaultClient, s.URL+"/.well-known/oauth-authorization-server")
	if err := json.Unmarshal([]byte(readBody(t, resp)), &meta); err != nil || meta.Device == "" {
		t.Fatalf("metadata: %v %+v", err, meta)
	}
	cfg := &oauth2.Config{ClientID: "gatehouse-cli", Scopes: []string{"read"},
		Endpoint: oauth2.Endpoint{DeviceAuthURL: meta.Device, TokenURL: meta.Token, AuthStyle: oauth2.AuthStyleInParams}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(da.UserCode) != 9 || da.VerificationURIComplete == "" {
		t.Fatalf("device auth = %+v", da)
	}

	// The client polls (politely, as x/oauth2 does) while a person approves.
	type polled struct {
		tok *oauth2.Token
		err error
	}
	result := make(chan polled, 1)
	go func() {
		tok, err := cfg.DeviceAccessToken(ctx, da)
		result <- polled{tok, err}
	}()

	// The person: sign in, open the complete URI, see the request, approve.
	bctx := browser(t)
	signInWithBrowser(t, bctx, s, "/", alice)
	text(t, bctx, "#x-forwarded-user") // signed in and landed
	var scopes string
	if err := chromedp.Run(bctx,
		chromedp.Navigate(da.VerificationURIComplete),
		chromedp.WaitVisible("#approve", chromedp.ByID),
		chromedp.Text("#scopes", &scopes, chromedp.ByID),
		chromedp.Click("#approve", chromedp.ByID),
		chromedp.WaitVisible("#device-done", chromedp.ByID),
	); err != nil {
		t.Fatalf("approval in the browser: %v", err)
	}
	if !strings.Contains(scopes, "read") {
		t.Errorf("the approval page did not show the scopes: %q", scopes)
	}
	got := <-result
	if got.err != nil {
		t.Fatalf("polling for the token: %v", got.err)
	}
	tok := got.tok
	if !strings.HasPrefix(tok.AccessToken, "gth_") {
		t.Fatalf("token %q lacks gth_", tok.AccessToken)
	}

	code, e := bearerGet(t, http.MethodGet, s.URL+"/reports", tok.AccessToken)
	if code != 200 || e.Headers["X-Forwarded-Email"][0] != "alice@example.com" {
		t.Fatalf("GET with token: %d %v", code, e.Headers)
	}
	if _, ok := e.Headers["Authorization"]; ok {
		t.Fatal("the bearer token was forwarded upstream")
	}
	verifyAssertion(t, s, e.Headers["X-Gatehouse-Assertion"][0])
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/oauth2/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != 200 || !strings.Contains(readBody(t, r), "alice@example.com") {
		t.Fatalf("userinfo with the token: %v", err)
	}

	if code, _ := bearerGet(t, http.MethodPost, s.URL+"/reports", tok.AccessToken); code != http.StatusForbidden {
		t.Fatalf("POST outside the read scope: %d, want 403", code)
	}
	// RFC 7009: revoke, then the token is dead; unknown tokens get 200 too.
	for _, tk := range []string{tok.AccessToken, "gth_unknown"} {
		r, err := http.PostForm(meta.Revoke, url.Values{"token": {tk}})
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != 200 {
			t.Fatalf("revoke: %d", r.StatusCode)
		}
	}
	if code, _ := bearerGet(t, http.MethodGet, s.URL+"/reports", tok.AccessToken); code != http.StatusUnauthorized {
		t.Fatalf("revoked token: %d, want 401", code)
	}
}

func TestStaticTokensScopesAndExpiry(t *testing.T) {
	t.Parallel()
	s := deviceStack(t)
	if code, e := bearerGet(t, http.MethodPost, s.URL+"/deploy", staticToken); code != 200 || e.Headers["X-Forwarded-User"][0] != "ci-bot" {
		t.Fatalf("static token in scope: %d %v", code, e.Headers)
	}
	if code, _ := bearerGet(t, http.MethodGet, s.URL+"/deploy", staticToken); code != http.StatusForbidden {
		t.Fatalf("static token out of scope: %d, want 403", code)
	}
	if code, _ := bearerGet(t, http.MethodGet, s.URL+"/", "gth_"+strings.Repeat("x", 43)); code != http.StatusUnauthorized {
		t.Fatalf("unknown token: %d, want 401", code)
	}
	// A device code issued to gatehouse-cli cannot be redeemed by another client.
	r, _ := http.PostForm(s.URL+"/oauth2/device/code", url.Values{"client_id": {"gatehouse-cli"}})
	var dc struct {
		DeviceCode string `json:"device_code"`
	}
	_ = json.Unmarshal([]byte(readBody(t, r)), &dc)
	r, _ = http.PostForm(s.URL+"/oauth2/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {dc.DeviceCode}, "client_id": {"other"}})
	if body := readBody(t, r); r.StatusCode != 400 || !strings.Contains(body, "invalid_grant") {
		t.Fatalf("other client: %d %s", r.StatusCode, body)
	}
}

// verifyAssertion checks the assertion with an independent JWT library
// against the published key set, as an upstream would.
func verifyAssertion(t *testing.T, s *stack, raw string) {
	t.Helper()
	resp := mustGet(t, http.DefaultClient, s.URL+"/oauth2/jwks.json")
	var set struct {
		Keys []struct {
			Kid, Kty, Crv, X, Y, Alg string
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(readBody(t, resp)), &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("jwks: %v", err)
	}
	claims := jwtv5.MapClaims{}
	_, err := jwtv5.ParseWithClaims(raw, claims, func(tok *jwtv5.Token) (any, error) {
		for _, k := range set.Keys {
			if k.Kid == tok.Header["kid"] && k.Kty == "EC" && k.Crv == "P-256" {
				x, _ := base64.RawURLEncoding.DecodeString(k.X)
				y, _ := base64.RawURLEncoding.DecodeString(k.Y)
				point := append(append([]byte{4}, pad32(x)...), pad32(y)...)
				return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
			}
		}
		return nil, jwtv5.ErrTokenUnverifiable
	}, jwtv5.WithValidMethods([]string{"ES256"}), jwtv5.WithIssuer(s.URL), jwtv5.WithAudience(strings.TrimPrefix(s.Upstream, "http://")), jwtv5.WithExpirationRequired())
	if err != nil {
		t.Fatalf("assertion does not verify: %v", err)
	}
	if claims["sub"] != "corp:1001" || claims["email"] != "alice@example.com" || claims["sid"] == "" || claims["jti"] == "" {
		t.Fatalf("claims = %v", claims)
	}
	if g, ok := claims["groups"].([]any); !ok || len(g) != 2 {
		t.Fatalf("groups claim = %v", claims["groups"])
	}
}

// pad32 left-pads a P-256 coordinate to 32 bytes.
func pad32(b []byte) []byte {
	if len(b) >= 32 {
		return b
	}
	return append(make([]byte, 32-len(b)), b...)
}
