package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	jwtv5 "github.com/golang-jwt/jwt/v5"
)

const (
	k8sIssuer = "https://kubernetes.default.svc"
	ghaIssuer = "https://token.actions.githubusercontent.com"
	// readScope lets a token GET and HEAD anything and nothing else.
	readScope = `GATEHOUSE_TOKENS_SCOPES={"read":[{"methods":["GET","HEAD"],"paths":["^/"]}]}`
)

// TestWorkloadKubernetesServiceAccountToken: a pod's projected
// service-account token, checked against a JWKS mounted as a file (as the
// cluster's keys would be), reaches the upstream as its service account
// and nothing else does. The issuer is configured from the environment
// alone, claims included (as JSON), as a Helm chart would set it.
func TestWorkloadKubernetesServiceAccountToken(t *testing.T) {
	t.Parallel()
	key := newRSAKey(t)
	const kid = "k8s-sa-key-1"
	jwksFile := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwksFile, jwksJSON(t, key, kid), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, options{env: []string{
		readScope,
		"GATEHOUSE_AUTH_JWT_ISSUERS_K8S_ISSUER=" + k8sIssuer,
		"GATEHOUSE_AUTH_JWT_ISSUERS_K8S_JWKS_FILE=" + jwksFile,
		"GATEHOUSE_AUTH_JWT_ISSUERS_K8S_AUDIENCES=gatehouse,other-audience",
		"GATEHOUSE_AUTH_JWT_ISSUERS_K8S_SCOPES=read",
		`GATEHOUSE_AUTH_JWT_ISSUERS_K8S_CLAIMS={"sub":"system:serviceaccount:ns:*"}`,
	}})
	const sa = "system:serviceaccount:ns:name"
	now := time.Now()
	good := signRS256(t, key, kid, k8sClaims(sa, now))

	code, body, e := bearerRequest(t, http.MethodGet, s.URL+"/api/pods?watch=1", good)
	if code != http.StatusOK {
		t.Fatalf("GET with the service-account token: %d %s", code, body)
	}
	if got := e.Headers["X-Forwarded-User"]; len(got) != 1 || got[0] != sa {
		t.Errorf("X-Forwarded-User = %q, want %q", got, sa)
	}
	// The token is a credential for Gatehouse, not for the upstream: an
	// upstream that logged it would leak a replayable token.
	if got, ok := e.Headers["Authorization"]; ok {
		t.Errorf("the bearer token was forwarded upstream: %q", got)
	}
	a := e.Headers["X-Gatehouse-Assertion"]
	if len(a) != 1 {
		t.Fatalf("X-Gatehouse-Assertion = %q, want one", a)
	}
	claims := assertionClaims(t, s, a[0])
	if claims["sub"] != "jwt:k8s:"+sa || claims["provider"] != "jwt:k8s" {
		t.Errorf("assertion sub/provider = %v/%v, want jwt:k8s:%s/jwt:k8s", claims["sub"], claims["provider"], sa)
	}

	if code, body, _ := bearerRequest(t, http.MethodHead, s.URL+"/api/pods", good); code != http.StatusOK {
		t.Errorf("HEAD in the read scope: %d %s", code, body)
	}

	other := newRSAKey(t) // a key the cluster never published
	tests := []struct {
		name   string
		method string
		token  string
		status int
		rule   string // for 403: the rule the JSON must name
	}{
		{"POST outside the read scope", http.MethodPost, good, http.StatusForbidden, "scopes"},
		{"service account of another namespace", http.MethodGet,
			signRS256(t, key, kid, k8sClaims("system:serviceaccount:other:name", now)), http.StatusForbidden, "claims.sub"},
		{"wrong audience", http.MethodGet,
			signRS256(t, key, kid, withClaim(k8sClaims(sa, now), "aud", []string{"https://kubernetes.default.svc"})), http.StatusUnauthorized, ""},
		{"expired", http.MethodGet,
			signRS256(t, key, kid, k8sClaims(sa, now.Add(-2*time.Hour))), http.StatusUnauthorized, ""},
		{"not valid yet", http.MethodGet,
			signRS256(t, key, kid, withClaim(k8sClaims(sa, now), "nbf", now.Add(10*time.Minute).Unix())), http.StatusUnauthorized, ""},
		{"lifetime over max_lifetime", http.MethodGet,
			signRS256(t, key, kid, withClaim(k8sClaims(sa, now), "exp", now.Add(48*time.Hour).Unix())), http.StatusUnauthorized, ""},
		{"unknown kid", http.MethodGet,
			signRS256(t, key, "rotated-away", k8sClaims(sa, now)), http.StatusUnauthorized, ""},
		{"signed by another key under the published kid", http.MethodGet,
			signRS256(t, other, kid, k8sClaims(sa, now)), http.StatusUnauthorized, ""},
		{"untrusted issuer", http.MethodGet,
			signRS256(t, key, kid, withClaim(k8sClaims(sa, now), "iss", "https://evil.example")), http.StatusUnauthorized, ""},
		{"alg none", http.MethodGet, unsignedToken(t, kid, k8sClaims(sa, now)), http.StatusUnauthorized, ""},
		// The classic key confusion: the public key, which anyone may
		// read, used as an HMAC secret.
		{"HS256 keyed with the public key", http.MethodGet,
			hs256WithPublicKey(t, &key.PublicKey, kid, k8sClaims(sa, now)), http.StatusUnauthorized, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkRefusal(t, s, tc.method, tc.token, tc.status, tc.rule)
		})
	}
}

// TestWorkloadGitHubActionsTokenViaDiscovery: a CI job's OIDC token from an
// issuer whose keys are found through OpenID discovery; the claim rules
// decide which repositories and branches may deploy.
func TestWorkloadGitHubActionsTokenViaDiscovery(t *testing.T) {
	t.Parallel()
	key := newRSAKey(t)
	const kid = "gha-key-1"
	keySet := jwksJSON(t, key, kid)
	var discovered, keysServed atomic.Int32
	mux := http.NewServeMux()
	actions := httptest.NewServer(mux)
	t.Cleanup(actions.Close)
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		discovered.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                ghaIssuer,
			"jwks_uri":                              actions.URL + "/.well-known/jwks",
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /.well-known/jwks", func(w http.ResponseWriter, r *http.Request) {
		keysServed.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(keySet)
	})
	s := start(t, options{env: []string{
		readScope,
		"GATEHOUSE_AUTH_JWT_ISSUERS_GHA_ISSUER=" + ghaIssuer,
		"GATEHOUSE_AUTH_JWT_ISSUERS_GHA_ISSUER_URL=" + actions.URL,
		"GATEHOUSE_AUTH_JWT_ISSUERS_GHA_AUDIENCES=gatehouse-deploy",
		"GATEHOUSE_AUTH_JWT_ISSUERS_GHA_SCOPES=read",
		`GATEHOUSE_AUTH_JWT_ISSUERS_GHA_CLAIMS={"repository":"acme/*","ref":"refs/heads/main"}`,
	}})
	now := time.Now()

	code, body, e := bearerRequest(t, http.MethodGet, s.URL+"/deployments", signRS256(t, key, kid, ghaClaims("acme/app", "refs/heads/main", now)))
	if code != http.StatusOK {
		t.Fatalf("GET with acme/app's token: %d %s", code, body)
	}
	const sub = "repo:acme/app:ref:refs/heads/main"
	if got := e.Headers["X-Forwarded-User"]; len(got) != 1 || got[0] != sub {
		t.Errorf("X-Forwarded-User = %q, want %q", got, sub)
	}
	if a := e.Headers["X-Gatehouse-Assertion"]; len(a) != 1 {
		t.Errorf("X-Gatehouse-Assertion = %q, want one", a)
	} else if claims := assertionClaims(t, s, a[0]); claims["sub"] != "jwt:gha:"+sub || claims["provider"] != "jwt:gha" {
		t.Errorf("assertion sub/provider = %v/%v", claims["sub"], claims["provider"])
	}
	if discovered.Load() == 0 || keysServed.Load() == 0 {
		t.Errorf("keys were not found through discovery: %d discovery and %d key set requests", discovered.Load(), keysServed.Load())
	}

	tests := []struct {
		name       string
		repository string
		ref        string
		rule       string
	}{
		// "acme/*" must not be read as a prefix: acme-evil is another owner.
		{"another owner whose name starts alike", "acme-evil/app", "refs/heads/main", "claims.repository"},
		{"a branch other than main", "acme/app", "refs/heads/feature", "claims.ref"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := signRS256(t, key, kid, ghaClaims(tc.repository, tc.ref, now))
			checkRefusal(t, s, http.MethodGet, tok, http.StatusForbidden, tc.rule)
		})
	}
	t.Run("signed by a key the issuer does not publish", func(t *testing.T) {
		tok := signRS256(t, newRSAKey(t), kid, ghaClaims("acme/app", "refs/heads/main", now))
		checkRefusal(t, s, http.MethodGet, tok, http.StatusUnauthorized, "")
	})
}

// checkRefusal sends token and expects status: 401 with invalid_token, or
// 403 whose JSON names rule. A refused request never reaches the upstream,
// which would answer with its echo.
func checkRefusal(t *testing.T, s *stack, method, token string, status int, rule string) {
	t.Helper()
	code, body, _ := bearerRequest(t, method, s.URL+"/api/pods", token)
	if code != status {
		t.Fatalf("%s: %d %s, want %d", method, code, body, status)
	}
	var got struct {
		Error string `json:"error"`
		Rule  string `json:"rule"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("answer is not JSON: %q", body)
	}
	switch status {
	case http.StatusUnauthorized:
		if got.Error != "invalid_token" {
			t.Errorf("error = %q, want invalid_token (%s)", got.Error, body)
		}
	case http.StatusForbidden:
		if got.Error != "forbidden" || got.Rule != rule {
			t.Errorf("error/rule = %q/%q, want forbidden/%s (%s)", got.Error, got.Rule, rule, body)
		}
	}
}

// bearerRequest sends token as the bearer and returns the status, the
// body and, on 200, what the echo upstream received.
func bearerRequest(t *testing.T, method, u, token string) (int, string, echoed) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	var e echoed
	if resp.StatusCode == http.StatusOK && method != http.MethodHead {
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			t.Fatalf("upstream answer %q: %v", body, err)
		}
	}
	return resp.StatusCode, body, e
}

// assertionClaims verifies an assertion as an upstream would, with a JWT
// library of its own against the key set Gatehouse publishes, and returns
// its claims.
func assertionClaims(t *testing.T, s *stack, raw string) jwtv5.MapClaims {
	t.Helper()
	var set jose.JSONWebKeySet
	resp := mustGet(t, http.DefaultClient, s.URL+"/oauth2/jwks.json")
	if err := json.Unmarshal([]byte(readBody(t, resp)), &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("jwks: %v (%d keys)", err, len(set.Keys))
	}
	claims := jwtv5.MapClaims{}
	_, err := jwtv5.ParseWithClaims(raw, claims, func(tok *jwtv5.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		if keys := set.Key(kid); len(keys) == 1 {
			return keys[0].Key, nil
		}
		return nil, jwtv5.ErrTokenUnverifiable
	}, jwtv5.WithValidMethods([]string{"ES256", "RS256"}), jwtv5.WithIssuer(s.URL),
		jwtv5.WithAudience(strings.TrimPrefix(s.Upstream, "http://")), jwtv5.WithExpirationRequired())
	if err != nil {
		t.Fatalf("assertion does not verify: %v", err)
	}
	return claims
}

func newRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// jwksJSON is the public half of key as a JWKS, as a cluster or a CI
// provider publishes it.
func jwksJSON(t *testing.T, key *rsa.PrivateKey, kid string) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// k8sClaims are those of a projected service-account token (kubelet,
// audience "gatehouse"), issued at iat and valid for an hour.
func k8sClaims(sub string, iat time.Time) jwtv5.MapClaims {
	parts := strings.Split(sub, ":") // system:serviceaccount:NS:NAME
	return jwtv5.MapClaims{
		"iss": k8sIssuer,
		"sub": sub,
		"aud": []string{"gatehouse"},
		"iat": iat.Unix(),
		"nbf": iat.Unix(),
		"exp": iat.Add(time.Hour).Unix(),
		"jti": "4f8c-" + parts[2],
		"kubernetes.io": map[string]any{
			"namespace":      parts[2],
			"serviceaccount": map[string]any{"name": parts[3], "uid": "0b5a3f4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"},
			"pod":            map[string]any{"name": parts[3] + "-7d9f8b6c5d-x2x4z", "uid": "9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b"},
			"node":           map[string]any{"name": "node-1", "uid": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"},
		},
	}
}

// ghaClaims are those of a GitHub Actions OIDC token for a push workflow
// that asked for the audience "gatehouse-deploy" (any job may ask for any
// audience, so the audience alone says nothing about the repository).
func ghaClaims(repository, ref string, iat time.Time) jwtv5.MapClaims {
	owner, _, _ := strings.Cut(repository, "/")
	return jwtv5.MapClaims{
		"iss":              ghaIssuer,
		"sub":              "repo:" + repository + ":ref:" + ref,
		"aud":              "gatehouse-deploy",
		"iat":              iat.Unix(),
		"nbf":              iat.Add(-5 * time.Second).Unix(),
		"exp":              iat.Add(5 * time.Minute).Unix(),
		"jti":              "gha-" + repository + "-" + ref,
		"repository":       repository,
		"repository_owner": owner,
		"ref":              ref,
		"ref_type":         "branch",
		"sha":              "8d5d6a2b3c4e5f60718293a4b5c6d7e8f9012345",
		"workflow":         "deploy",
		"event_name":       "push",
		"actor":            "octo",
		"run_id":           "1234567890",
		"run_attempt":      "1",
		"job_workflow_ref": repository + "/.github/workflows/deploy.yml@" + ref,
	}
}

// withClaim returns claims with name set to v (a copy: the base stays intact).
func withClaim(claims jwtv5.MapClaims, name string, v any) jwtv5.MapClaims {
	out := jwtv5.MapClaims{}
	for k, x := range claims {
		out[k] = x
	}
	out[name] = v
	return out
}

func signRS256(t *testing.T, key *rsa.PrivateKey, kid string, claims jwtv5.MapClaims) string {
	t.Helper()
	tok := jwtv5.NewWithClaims(jwtv5.SigningMethodRS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsignedToken is an "alg": "none" JWT: claims anyone could have written.
func unsignedToken(t *testing.T, kid string, claims jwtv5.MapClaims) string {
	t.Helper()
	tok := jwtv5.NewWithClaims(jwtv5.SigningMethodNone, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(jwtv5.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// hs256WithPublicKey signs with HMAC keyed by the PEM of the public key: a
// verifier that let the token pick the algorithm would accept it.
func hs256WithPublicKey(t *testing.T, pub *rsa.PublicKey, kid string, claims jwtv5.MapClaims) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	tok := jwtv5.NewWithClaims(jwtv5.SigningMethodHS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
