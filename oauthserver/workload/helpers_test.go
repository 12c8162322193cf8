package workload

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// t0 is the tests' "now": tokens and clocks are built around it, so no
// test depends on the wall clock or sleeps.
var t0 = time.Unix(1_800_000_000, 0)

// clock is an injectable, advanceable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testKey is a signing key with its kid and algorithm.
type testKey struct {
	kid  string
	alg  string
	priv crypto.Signer
}

// Key generation is slow under -race, so each key is made once.
var (
	keysOnce              sync.Once
	rsaA, rsaB, rsaC, ecA testKey
)

func keys(t testing.TB) (a, b, c, e testKey) {
	t.Helper()
	keysOnce.Do(func() {
		gen := func(kid string) testKey {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			return testKey{kid: kid, alg: "RS256", priv: k}
		}
		rsaA, rsaB, rsaC = gen("key-a"), gen("key-b"), gen("key-c")
		ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		ecA = testKey{kid: "ec-a", alg: "ES256", priv: ek}
	})
	return rsaA, rsaB, rsaC, ecA
}

func (k testKey) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: k.alg, Use: "sig"}
}

func jwksOf(t testing.TB, ks ...testKey) []byte {
	t.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range ks {
		set.Keys = append(set.Keys, k.jwk())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func jwksFile(t testing.TB, ks ...testKey) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "jwks.json")
	writeFile(t, p, jwksOf(t, ks...))
	return p
}

func b64(v any) string {
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			panic(err)
		}
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// mint signs claims with k. hdr entries override the default header
// {alg, kid, typ}; a nil value removes the entry. Signing is done by hand
// so tests can produce headers no library would.
func mint(t testing.TB, k testKey, hdr map[string]any, claims map[string]any) string {
	t.Helper()
	h := map[string]any{"alg": k.alg, "kid": k.kid, "typ": "JWT"}
	for name, v := range hdr {
		if v == nil {
			delete(h, name)
		} else {
			h[name] = v
		}
	}
	input := b64(h) + "." + b64(claims)
	digest := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	switch key := k.priv.(type) {
	case *rsa.PrivateKey:
		if strings.HasPrefix(h["alg"].(string), "PS") {
			sig, err = rsa.SignPSS(rand.Reader, key, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			sig, err = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
		}
	case ed25519.PrivateKey:
		sig = ed25519.Sign(key, []byte(input))
	case *ecdsa.PrivateKey:
		r, s, e := ecdsa.Sign(rand.Reader, key, digest[:])
		sig, err = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...), e
	default:
		t.Fatalf("unsupported key %T", key)
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// mintHMAC signs with HS256 and secret: the key-confusion attack.
func mintHMAC(kid string, secret []byte, claims map[string]any) string {
	input := b64(map[string]any{"alg": "HS256", "kid": kid, "typ": "JWT"}) + "." + b64(claims)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// mintNone is an unsigned token.
func mintNone(kid string, claims map[string]any) string {
	return b64(map[string]any{"alg": "none", "kid": kid}) + "." + b64(claims) + "."
}

// keyServer serves a discovery document and a key set and counts key
// set fetches.
type keyServer struct {
	*httptest.Server
	mu      sync.Mutex
	jwks    []byte
	status  int
	fetches atomic.Int32
	// entered, when set, receives once per key set request before it is
	// answered; release then lets it go on. Tests use the pair to hold a
	// fetch open while others pile up.
	entered chan struct{}
	release chan struct{}
}

func newKeyServer(t testing.TB, jwks []byte) *keyServer {
	t.Helper()
	ks := &keyServer{jwks: jwks, status: http.StatusOK}
	ks.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, ks.URL, ks.URL+"/keys")
		case "/keys":
			ks.fetches.Add(1)
			if ks.entered != nil {
				ks.entered <- struct{}{}
				<-ks.release
			}
			ks.mu.Lock()
			status, body := ks.status, ks.jwks
			ks.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write(body)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(ks.Close)
	return ks
}

func (ks *keyServer) set(status int, jwks []byte) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.status, ks.jwks = status, jwks
}

// k8sClaims is a projected service-account token as the kubelet
// requests it.
func k8sClaims(now time.Time) map[string]any {
	return map[string]any{
		"iss": "https://kubernetes.default.svc",
		"sub": "system:serviceaccount:ns:name",
		"aud": []string{"gatehouse"},
		"exp": now.Add(time.Hour).Unix(),
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"kubernetes.io": map[string]any{
			"namespace":      "ns",
			"pod":            map[string]any{"name": "app-7c9f", "uid": "0b2d0c1e-1111-2222-3333-444455556666"},
			"serviceaccount": map[string]any{"name": "name", "uid": "9a8b7c6d-1111-2222-3333-444455556666"},
		},
	}
}

// ghaClaims is a GitHub Actions OIDC token.
func ghaClaims(now time.Time) map[string]any {
	return map[string]any{
		"iss":              "https://token.actions.githubusercontent.com",
		"sub":              "repo:acme/app:ref:refs/heads/main",
		"aud":              "https://gatehouse.example.com",
		"exp":              now.Add(5 * time.Minute).Unix(),
		"iat":              now.Unix(),
		"nbf":              now.Unix(),
		"jti":              "5b2ba5b2-0000-4000-8000-000000000000",
		"repository":       "acme/app",
		"repository_owner": "acme",
		"ref":              "refs/heads/main",
		"run_attempt":      "1",
		"run_number":       42,
		"workflow":         "deploy",
	}
}

func with(claims map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range claims {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func k8sConfig(file string) IssuerConfig {
	return IssuerConfig{
		Issuer:    "https://kubernetes.default.svc",
		JWKSFile:  file,
		Audiences: []string{"gatehouse"},
		Scopes:    []string{"read"},
	}
}

func newVerifier(t testing.TB, c *clock, issuers map[string]IssuerConfig) *Verifier {
	t.Helper()
	v, err := New(issuers, nil, c.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
