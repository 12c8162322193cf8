package workload

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary strings to Verify. None may panic, and none
// may be accepted: without the private key, no input is a valid token.
// Seeds are in testdata/fuzz/FuzzVerify and below (tokens signed by the
// real key, then spoiled).
func FuzzVerify(f *testing.F) {
	a, _, _, ec := keys(f)
	c := newClock()
	gha := IssuerConfig{
		Issuer:      "https://token.actions.githubusercontent.com",
		JWKSFile:    jwksFile(f, ec),
		Audiences:   []string{"https://gatehouse.example.com"},
		Claims:      map[string]string{"repository": "acme/*"},
		GroupsClaim: "groups",
		EmailClaim:  "email",
	}
	v := newVerifier(f, c, map[string]IssuerConfig{"k8s": k8sConfig(jwksFile(f, a)), "gha": gha})

	good := mint(f, a, nil, k8sClaims(t0))
	f.Add(good[:len(good)-2] + "AA")                                              // bad signature
	f.Add(mint(f, a, nil, with(k8sClaims(t0), "exp", t0.Add(-time.Hour).Unix()))) // expired
	f.Add(mint(f, a, nil, with(k8sClaims(t0), "aud", "other")))                   // wrong audience
	f.Add(mint(f, ec, nil, with(ghaClaims(t0), "repository", "acme/app/x")))      // claim rule
	f.Add(mint(f, a, map[string]any{"kid": "other"}, k8sClaims(t0)))              // unknown kid
	f.Add(strings.Replace(good, ".", "..", 1))                                    // extra part
	f.Add(mintHMAC(a.kid, []byte("secret"), k8sClaims(t0)))                       // HS256

	f.Fuzz(func(t *testing.T, raw string) {
		_ = LooksLikeJWT(raw)
		res, err := v.Verify(context.Background(), raw)
		if err == nil {
			t.Fatalf("accepted %q: %+v", raw, res)
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("%q: %v is not a refusal", raw, err)
		}
		if e.Status != 401 && e.Status != 403 {
			t.Fatalf("%q: status %d", raw, e.Status)
		}
	})
}
