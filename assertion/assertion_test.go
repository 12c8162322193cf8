package assertion

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse/gatehouse/identity"
)

func writePEM(t *testing.T, typ string, der []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestLoadKey(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	sec1, _ := x509.MarshalECPrivateKey(p256)
	pkcs8EC, _ := x509.MarshalPKCS8PrivateKey(p256)
	sec1384, _ := x509.MarshalECPrivateKey(p384)
	pkcs8RSA, _ := x509.MarshalPKCS8PrivateKey(rsa2048)

	tests := []struct {
		name    string
		file    string
		wantAlg jose.SignatureAlgorithm
		wantErr string
	}{
		{"EC SEC1", writePEM(t, "EC PRIVATE KEY", sec1), jose.ES256, ""},
		{"EC PKCS8", writePEM(t, "PRIVATE KEY", pkcs8EC), jose.ES256, ""},
		{"RSA PKCS1", writePEM(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa2048)), jose.RS256, ""},
		{"RSA PKCS8", writePEM(t, "PRIVATE KEY", pkcs8RSA), jose.RS256, ""},
		{"P-384 refused", writePEM(t, "EC PRIVATE KEY", sec1384), "", "P-256"},
		{"short RSA refused", writePEM(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa1024)), "", "2048"},
		{"public key refused", writePEM(t, "PUBLIC KEY", []byte("x")), "", "not a private key"},
		{"garbage", writePEM(t, "PRIVATE KEY", []byte("garbage")), "", "cannot parse"},
		{"missing file", filepath.Join(t.TempDir(), "nope.pem"), "", "cannot read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := LoadKey(tt.file)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Alg != tt.wantAlg || k.ID == "" {
				t.Fatalf("alg = %s kid = %q", k.Alg, k.ID)
			}
		})
	}
}

func TestSignVerifiesWithPublishedKeys(t *testing.T) {
	k1, _ := GenerateKey()
	k2, _ := GenerateKey()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	s, err := NewSigner([]Key{k1, k2}, "https://dash.example.com", "app.internal:8080", 5*time.Minute, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.Sign(identity.Identity{Provider: "corp", Subject: "42", Email: "a@example.com", EmailVerified: true}, "sid123")
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(s.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 {
		t.Fatalf("JWKS has %d keys, want both (rotation)", len(set.Keys))
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	if kid := tok.Headers[0].KeyID; kid != k1.ID {
		t.Fatalf("kid = %q, want the first key's %q", kid, k1.ID)
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatal("signing key not published")
	}
	var c Claims
	if err := tok.Claims(keys[0].Key, &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Claims.ValidateWithLeeway(jwt.Expected{Issuer: "https://dash.example.com", AnyAudience: jwt.Audience{"app.internal:8080"}, Time: now.Add(time.Minute)}, 0); err != nil {
		t.Fatal(err)
	}
	if c.Subject != "corp:42" || c.SessionID != "sid123" || c.Provider != "corp" || c.Groups == nil || c.ID == "" {
		t.Fatalf("claims = %+v", c)
	}
	if err := c.Claims.ValidateWithLeeway(jwt.Expected{Time: now.Add(6 * time.Minute)}, 0); err == nil {
		t.Fatal("assertion still valid after its lifetime")
	}
	// The groups claim is always an array, [] when there are none.
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatal("not a compact JWS")
	}
	var payload map[string]any
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &payload); err != nil {
		t.Fatal(err)
	}
	if g, ok := payload["groups"].([]any); !ok || len(g) != 0 {
		t.Fatalf("groups = %#v, want []", payload["groups"])
	}
}

func TestSignCachedReusesUntilHalfLife(t *testing.T) {
	k, _ := GenerateKey()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	s, _ := NewSigner([]Key{k}, "https://d", "u", 4*time.Minute, func() time.Time { return now })
	id := identity.Identity{Provider: "p", Subject: "1"}
	a1, _ := s.SignCached("sid|v1", id, "sid")
	a2, _ := s.SignCached("sid|v1", id, "sid")
	if a1 != a2 {
		t.Fatal("assertion not reused within its first half-life")
	}
	if b, _ := s.SignCached("sid|v2", id, "sid"); b == a1 {
		t.Fatal("a new identity version reused the old assertion")
	}
	now = now.Add(2*time.Minute + time.Second)
	if a3, _ := s.SignCached("sid|v1", id, "sid"); a3 == a1 {
		t.Fatal("assertion reused past half its lifetime")
	}
}

func TestSignCachedForKeepsAudiencesApart(t *testing.T) {
	k, _ := GenerateKey()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	s, _ := NewSigner([]Key{k}, "https://auth.example.com", "default.internal", 4*time.Minute, func() time.Time { return now })
	id := identity.Identity{Provider: "p", Subject: "1"}
	audOf := func(raw string) []string {
		t.Helper()
		tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		var c Claims
		if err := tok.Claims(k.key.Public(), &c); err != nil {
			t.Fatal(err)
		}
		return c.Audience
	}
	tests := []struct {
		name     string
		sign     func() (string, error)
		wantAuds []string
	}{
		{"default audience", func() (string, error) { return s.SignCached("sid|v1", id, "sid") }, []string{"default.internal"}},
		{"grafana", func() (string, error) { return s.SignCachedFor("grafana.example.com", "sid|v1", id, "sid") }, []string{"grafana.example.com"}},
		{"prometheus", func() (string, error) { return s.SignCachedFor("prometheus.example.com", "sid|v1", id, "sid") }, []string{"prometheus.example.com"}},
		{"uncached", func() (string, error) { return s.SignFor("alerts.example.com", id, "sid") }, []string{"alerts.example.com"}},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := tt.sign()
			if err != nil {
				t.Fatal(err)
			}
			if got := audOf(raw); len(got) != 1 || got[0] != tt.wantAuds[0] {
				t.Fatalf("aud = %v, want %v", got, tt.wantAuds)
			}
			if other, ok := seen[raw]; ok {
				t.Fatalf("the assertion for %s was reused for %s", other, tt.name)
			}
			seen[raw] = tt.name
		})
	}
	// Within one audience the cache still works.
	a1, _ := s.SignCachedFor("grafana.example.com", "sid|v1", id, "sid")
	a2, _ := s.SignCachedFor("grafana.example.com", "sid|v1", id, "sid")
	if a1 != a2 {
		t.Fatal("assertion for one audience not reused")
	}
	if s.Audience() != "default.internal" {
		t.Fatalf("Audience() = %q", s.Audience())
	}
}

// An assertion made for a credential that expires sooner (a workload JWT)
// never outlives it, nor is it reused past it.
func TestSignCachedUntilCapsTheExpiry(t *testing.T) {
	k, _ := GenerateKey()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	s, _ := NewSigner([]Key{k}, "https://d", "u", 5*time.Minute, func() time.Time { return now })
	id := identity.Identity{Provider: "jwt:k8s", Subject: "sa"}
	until := now.Add(time.Minute)
	exp := func(raw string) time.Time {
		tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
		if err != nil {
			t.Fatal(err)
		}
		var c jwt.Claims
		if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
			t.Fatal(err)
		}
		return c.Expiry.Time()
	}
	a1, err := s.SignCachedUntil("u", "j|1", id, "j1", until)
	if err != nil {
		t.Fatal(err)
	}
	if got := exp(a1); !got.Equal(until) {
		t.Fatalf("exp %v, want the credential's %v", got, until)
	}
	if a2, _ := s.SignCachedUntil("u", "j|1", id, "j1", until); a2 != a1 {
		t.Fatal("not reused before the credential expires")
	}
	now = until.Add(time.Second)
	if a3, _ := s.SignCachedUntil("u", "j|1", id, "j1", until); a3 == a1 {
		t.Fatal("reused past the credential's expiry")
	}
	if got := exp(mustSign(t, s, id)); !got.Equal(now.Add(5 * time.Minute)) {
		t.Fatalf("without a cap: exp %v, want the full lifetime", got)
	}
}

func mustSign(t *testing.T, s *Signer, id identity.Identity) string {
	t.Helper()
	raw, err := s.SignCachedUntil("u", "other", id, "x", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
