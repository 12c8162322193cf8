package workload

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"
)

// wantRefusal checks that err is an *Error with that status and rule.
func wantRefusal(t *testing.T, res *Result, err error, status int, rule string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Verify = %+v, %v; want *Error %d", res, err, status)
	}
	if e.Status != status || e.Rule != rule {
		t.Fatalf("refused with %d rule %q (%s); want %d rule %q", e.Status, e.Rule, e.Description, status, rule)
	}
	wantCode := map[int]string{401: "invalid_token", 403: "forbidden"}[status]
	if e.Code != wantCode || e.Description == "" {
		t.Fatalf("code %q description %q; want code %q and a description", e.Code, e.Description, wantCode)
	}
}

func TestKubernetesServiceAccount(t *testing.T) {
	a, _, _, _ := keys(t)
	c := newClock()
	v := newVerifier(t, c, map[string]IssuerConfig{"k8s": k8sConfig(jwksFile(t, a))})
	raw := mint(t, a, nil, k8sClaims(t0))
	if !LooksLikeJWT(raw) {
		t.Fatal("LooksLikeJWT = false for a service-account token")
	}
	res, err := v.Verify(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	id := res.Identity
	if id.User != "system:serviceaccount:ns:name" || id.Subject != id.User || id.Provider != "jwt:k8s" {
		t.Errorf("identity = %+v", id)
	}
	if id.Groups == nil || len(id.Groups) != 0 || id.Email != "" || id.EmailVerified {
		t.Errorf("groups %#v email %q verified %v; want [] and nothing", id.Groups, id.Email, id.EmailVerified)
	}
	if res.Issuer != "k8s" || len(res.Scopes) != 1 || res.Scopes[0] != "read" {
		t.Errorf("issuer %q scopes %v", res.Issuer, res.Scopes)
	}
	if len(res.TokenID) != 64 || strings.Contains(raw, res.TokenID) {
		t.Errorf("TokenID = %q; want a 64-hex hash", res.TokenID)
	}
	if !res.Expiry.Equal(t0.Add(time.Hour)) {
		t.Errorf("Expiry = %v", res.Expiry)
	}
	again, _ := v.Verify(context.Background(), raw)
	if again == nil || again.TokenID != res.TokenID {
		t.Error("TokenID is not stable")
	}
}

func TestVerifyRefusals(t *testing.T) {
	a, b, _, ec := keys(t)
	pub, err := x509.MarshalPKIXPublicKey(a.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	base := k8sClaims(t0)
	sec := func(d time.Duration) int64 { return t0.Add(d).Unix() }
	evilKid := b
	evilKid.kid = a.kid // another key claiming a's kid

	tests := []struct {
		name   string
		token  string
		status int // 0: accepted
		rule   string
	}{
		{"aud string", mint(t, a, nil, with(base, "aud", "gatehouse")), 0, ""},
		{"aud among others", mint(t, a, nil, with(base, "aud", []string{"vault", "gatehouse"})), 0, ""},
		{"ES256 key", mint(t, ec, nil, base), 0, ""},
		{"exp within leeway", mint(t, a, nil, with(base, "exp", sec(-29*time.Second))), 0, ""},
		{"nbf within leeway", mint(t, a, nil, with(base, "nbf", sec(29*time.Second))), 0, ""},
		{"fractional dates", mint(t, a, nil, with(base, "exp", float64(sec(time.Hour))+0.5, "iat", float64(t0.Unix())-0.25)), 0, ""},
		{"no kid tries all keys", mint(t, a, map[string]any{"kid": nil}, base), 0, ""},

		{"wrong audience", mint(t, a, nil, with(base, "aud", []string{"vault"})), 401, ""},
		{"no audience", mint(t, a, nil, with(base, "aud", nil)), 401, ""},
		{"audience not a string", mint(t, a, nil, with(base, "aud", 7)), 401, ""},
		{"expired", mint(t, a, nil, with(base, "exp", sec(-31*time.Second))), 401, ""},
		{"no exp", mint(t, a, nil, with(base, "exp", nil)), 401, ""},
		{"exp a string", mint(t, a, nil, with(base, "exp", "1900000000")), 401, ""},
		{"exp absurd", mint(t, a, nil, with(base, "exp", 1e300)), 401, ""},
		{"nbf in the future", mint(t, a, nil, with(base, "nbf", sec(31*time.Second))), 401, ""},
		{"iat in the future", mint(t, a, nil, with(base, "iat", sec(31*time.Second), "nbf", nil)), 401, ""},
		{"lifetime exp-iat too long", mint(t, a, nil, with(base, "exp", sec(24*time.Hour+time.Second))), 401, ""},
		{"lifetime exp-nbf too long", mint(t, a, nil, with(base, "iat", nil, "nbf", sec(-time.Minute), "exp", sec(24*time.Hour))), 401, ""},
		{"lifetime exp-now too long", mint(t, a, nil, with(base, "iat", nil, "nbf", nil, "exp", sec(25*time.Hour))), 401, ""},
		{"unknown kid", mint(t, a, map[string]any{"kid": "nope"}, base), 401, ""},
		{"other key with a known kid", mint(t, evilKid, nil, base), 401, ""},
		{"unknown key without kid", mint(t, b, map[string]any{"kid": nil}, base), 401, ""},
		{"alg none", mintNone(a.kid, base), 401, ""},
		{"HS256 with the RSA public key as secret", mintHMAC(a.kid, pubPEM, base), 401, ""},
		{"HS256 with the DER public key as secret", mintHMAC(a.kid, pub, base), 401, ""},
		{"RS384 not listed", mint(t, a, map[string]any{"alg": "RS384"}, base), 401, ""},
		{"crit header", mint(t, a, map[string]any{"crit": []string{"b64"}, "b64": false}, base), 401, ""},
		{"unknown issuer", mint(t, a, nil, with(base, "iss", "https://evil.example")), 401, ""},
		{"issuer differs in case", mint(t, a, nil, with(base, "iss", "https://Kubernetes.default.svc")), 401, ""},
		{"issuer key in capitals", mint(t, a, nil, with(base, "iss", nil, "ISS", "https://kubernetes.default.svc")), 401, ""},
		{"no issuer", mint(t, a, nil, with(base, "iss", nil)), 401, ""},
		{"tampered payload", func() string {
			p := strings.Split(mint(t, a, nil, base), ".")
			return p[0] + "." + b64(with(base, "sub", "system:serviceaccount:kube-system:admin")) + "." + p[2]
		}(), 401, ""},
		{"JWE", "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d", 401, ""},
		{"too large", mint(t, a, nil, with(base, "pad", strings.Repeat("x", 16<<10))), 401, ""},
		{"not a JWT", "gth_abcdef", 401, ""},
		{"no user claim", mint(t, a, nil, with(base, "sub", nil)), 403, "user_claim"},
		{"empty user claim", mint(t, a, nil, with(base, "sub", "")), 403, "user_claim"},
		{"user claim not a string", mint(t, a, nil, with(base, "sub", 12)), 403, "user_claim"},
		{"user claim with a newline", mint(t, a, nil, with(base, "sub", "a\r\nX-Evil: 1")), 403, "user_claim"},
	}
	c := newClock()
	v := newVerifier(t, c, map[string]IssuerConfig{"k8s": k8sConfig(jwksFile(t, a, ec))})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := v.Verify(context.Background(), tt.token)
			if tt.status == 0 {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			wantRefusal(t, res, err, tt.status, tt.rule)
		})
	}
}

func TestGitHubActionsClaimRules(t *testing.T) {
	_, _, _, ec := keys(t)
	srv := newKeyServer(t, jwksOf(t, ec))
	c := newClock()
	v := newVerifier(t, c, map[string]IssuerConfig{"gha": {
		Issuer:    "https://token.actions.githubusercontent.com",
		IssuerURL: srv.URL, // discovery somewhere other than the issuer
		Audiences: []string{"https://gatehouse.example.com"},
		Claims: map[string]string{
			"repository":  "acme/*",
			"ref":         "refs/heads/main",
			"run_attempt": "?",
			"run_number":  "4?",
		},
	}})
	base := ghaClaims(t0)
	tests := []struct {
		name   string
		claims map[string]any
		status int
		rule   string
	}{
		{"acme/app on main", base, 0, ""},
		{"number rendered as JSON text", with(base, "run_attempt", 3), 0, ""},
		{"neighbouring owner", with(base, "repository", "acme-evil/app"), 403, "claims.repository"},
		{"glob must not cross /", with(base, "repository", "acme/app/x"), 403, "claims.repository"},
		{"star needs a character", with(base, "repository", "acme/"), 403, "claims.repository"},
		{"glob must not cross :", with(base, "repository", "acme/a:b"), 403, "claims.repository"},
		{"rule claim missing", with(base, "repository", nil), 403, "claims.repository"},
		{"rule claim an array", with(base, "repository", []string{"acme/app"}), 403, "claims.repository"},
		{"other branch", with(base, "ref", "refs/heads/main-evil"), 403, "claims.ref"},
		{"exact value has no prefix match", with(base, "ref", "refs/heads/mai"), 403, "claims.ref"},
		{"number does not match", with(base, "run_number", 420), 403, "claims.run_number"},
		{"null never matches", with(base, "run_attempt", json.RawMessage("null")), 403, "claims.run_attempt"},
		{"wrong audience", with(base, "aud", "https://other.example.com"), 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := v.Verify(context.Background(), mint(t, ec, nil, tt.claims))
			if tt.status == 0 {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if res.Identity.User != tt.claims["sub"] || res.Identity.Provider != "jwt:gha" {
					t.Errorf("identity = %+v", res.Identity)
				}
				return
			}
			wantRefusal(t, res, err, tt.status, tt.rule)
		})
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Errorf("key set fetched %d times; want 1", n)
	}
}

func TestIssuerConfusion(t *testing.T) {
	a, b, _, _ := keys(t)
	c := newClock()
	v := newVerifier(t, c, map[string]IssuerConfig{
		"clustera": {Issuer: "https://a.example", JWKSFile: jwksFile(t, a), Audiences: []string{"gatehouse"}},
		"clusterb": {Issuer: "https://b.example", JWKSFile: jwksFile(t, b), Audiences: []string{"gatehouse"}},
	})
	claims := with(k8sClaims(t0), "iss", "https://b.example")
	for name, raw := range map[string]string{
		"kid of A":           mint(t, a, nil, claims),
		"no kid":             mint(t, a, map[string]any{"kid": nil}, claims),
		"kid of B, A signed": mint(t, testKey{kid: b.kid, alg: "RS256", priv: a.priv}, nil, claims),
	} {
		t.Run(name, func(t *testing.T) {
			res, err := v.Verify(context.Background(), raw)
			wantRefusal(t, res, err, 401, "")
		})
	}
	res, err := v.Verify(context.Background(), mint(t, b, nil, claims))
	if err != nil || res.Issuer != "clusterb" || res.Identity.Provider != "jwt:clusterb" {
		t.Fatalf("B's own token: %+v, %v", res, err)
	}
}

func TestEmailAndGroups(t *testing.T) {
	a, _, _, _ := keys(t)
	c := newClock()
	cfg := k8sConfig(jwksFile(t, a))
	cfg.EmailClaim, cfg.GroupsClaim = "email", "groups"
	v := newVerifier(t, c, map[string]IssuerConfig{"k8s": cfg})
	base := k8sClaims(t0)
	tests := []struct {
		name     string
		claims   map[string]any
		email    string
		verified bool
		groups   []string
	}{
		{"none", base, "", false, []string{}},
		// An address the issuer does not vouch for is not used at all:
		// an upstream trusting X-Forwarded-Email must not see it.
		{"unverified", with(base, "email", "ci@example.com"), "", false, []string{}},
		{"verified", with(base, "email", "ci@example.com", "email_verified", true), "ci@example.com", true, []string{}},
		{"verified as a string does not count", with(base, "email", "ci@example.com", "email_verified", "true"), "", false, []string{}},
		{"group string", with(base, "groups", "ops"), "", false, []string{"ops"}},
		{"group array, odd items dropped", with(base, "groups", []any{"ops", 3, "", "dev", "x\ny"}), "", false, []string{"ops", "dev"}},
		{"groups an object", with(base, "groups", map[string]any{"a": "b"}), "", false, []string{}},
		// A comma would split one group into two in X-Forwarded-Groups.
		{"group with a comma dropped", with(base, "groups", []any{"ops", "admin,ops"}), "", false, []string{"ops"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := v.Verify(context.Background(), mint(t, a, nil, tt.claims))
			if err != nil {
				t.Fatal(err)
			}
			id := res.Identity
			if id.Email != tt.email || id.EmailVerified != tt.verified || id.Groups == nil || strings.Join(id.Groups, ",") != strings.Join(tt.groups, ",") {
				t.Errorf("email %q verified %v groups %#v; want %q %v %v", id.Email, id.EmailVerified, id.Groups, tt.email, tt.verified, tt.groups)
			}
		})
	}
}

func TestLooksLikeJWT(t *testing.T) {
	a, _, _, _ := keys(t)
	for raw, want := range map[string]bool{
		mint(t, a, nil, k8sClaims(t0)):                           true,
		mintNone("k", k8sClaims(t0)):                             true,
		"eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d": true, // JWE: refused by Verify with a reason
		"gth_0123456789abcdef":                                   false,
		"abc.def.ghi":                                            false,
		"":                                                       false,
		"..":                                                     false,
		b64(map[string]any{"typ": "JWT"}) + ".e30.": false, // no alg
		b64([]string{"alg"}) + ".e30.":              false,
		"eyJhbGciOiJSUzI1NiJ9.e30.a+b/c=":           false, // not base64url
		"eyJhbGciOiJSUzI1NiJ9.a.b.c":                false, // four parts
	} {
		if got := LooksLikeJWT(raw); got != want {
			t.Errorf("LooksLikeJWT(%.40q) = %v; want %v", raw, got, want)
		}
	}
}

func TestOtherAlgorithms(t *testing.T) {
	a, _, _, _ := keys(t)
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed := testKey{kid: "ed", alg: "EdDSA", priv: edPriv}
	ps := testKey{kid: "ps", alg: "PS256", priv: a.priv}
	cfg := k8sConfig(jwksFile(t, ed, ps))
	cfg.Algorithms = []string{"EdDSA", "PS256"}
	c := newClock()
	v := newVerifier(t, c, map[string]IssuerConfig{"k8s": cfg})
	for _, k := range []testKey{ed, ps} {
		if _, err := v.Verify(context.Background(), mint(t, k, nil, k8sClaims(t0))); err != nil {
			t.Errorf("%s: %v", k.alg, err)
		}
	}
	// The PS256 key named its algorithm: RS256 with it is refused even
	// if the issuer listed RS256.
	res, err := v.Verify(context.Background(), mint(t, testKey{kid: "ps", alg: "RS256", priv: a.priv}, nil, k8sClaims(t0)))
	wantRefusal(t, res, err, 401, "")
}
