package workload

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func remoteConfig(srv *keyServer) IssuerConfig {
	return IssuerConfig{Issuer: "https://kubernetes.default.svc", JWKSURL: srv.URL + "/keys", Audiences: []string{"gatehouse"}}
}

func wantUnavailable(t *testing.T, err error) {
	t.Helper()
	var e *Error
	if err == nil || errors.As(err, &e) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v; want one wrapping ErrUnavailable that is no *Error", err)
	}
}

func TestNewDoesNoIO(t *testing.T) {
	a, _, _, _ := keys(t)
	srv := newKeyServer(t, jwksOf(t, a))
	cfg := remoteConfig(srv)
	cfg.JWKSURL, cfg.IssuerURL = "", srv.URL
	newVerifier(t, newClock(), map[string]IssuerConfig{"k8s": cfg})
	if n := srv.fetches.Load(); n != 0 {
		t.Fatalf("New fetched keys %d times", n)
	}
}

func TestUnknownKidRefreshIsRateLimited(t *testing.T) {
	a, _, _, _ := keys(t)
	srv := newKeyServer(t, jwksOf(t, a))
	c := newClock()
	v := newVerifier(t, c, map[string]IssuerConfig{"k8s": remoteConfig(srv)})
	ctx := context.Background()
	if _, err := v.Verify(ctx, mint(t, a, nil, k8sClaims(c.now()))); err != nil {
		t.Fatal(err)
	}
	forge := func(i int) {
		t.Helper()
		res, err := v.Verify(ctx, mint(t, a, map[string]any{"kid": fmt.Sprintf("forged-%d", i)}, k8sClaims(c.now())))
		wantRefusal(t, res, err, 401, "")
	}
	for i := range 100 {
		forge(i)
		if i%10 == 0 {
			c.advance(time.Second) // 10 s in all: still within the minute
		}
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("after 100 forged kids within a minute: %d fetches; want 1", n)
	}
	c.advance(time.Minute)
	forge(100)
	forge(101)
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("after the minute: %d fetches; want 2", n)
	}
}

func TestNewKidIsPickedUp(t *testing.T) {
	a, b, _, _ := keys(t)
	srv := newKeyServer(t, jwksOf(t, a))
	c := newClock()
	v := newVerifier(t, c, map[string]IssuerConfig{"k8s": remoteConfig(srv)})
	ctx := context.Background()
	if _, err := v.Verify(ctx, mint(t, a, nil, k8sClaims(c.now()))); err != nil {
		t.Fatal(err)
	}
	srv.set(http.StatusOK, jwksOf(t, a, b)) // the issuer rotates in b
	c.advance(time.Minute)
	if _, err := v.Verify(ctx, mint(t, b, nil, k8sClaims(c.now()))); err != nil {
		t.Fatalf("token with the new kid: %v", err)
	}
}

func TestConcurrentVerifiesShareOneFetch(t *testing.T) {
	a, _, _, _ := keys(t)
	srv := newKeyServer(t, jwksOf(t, a))
	srv.entered, srv.release = make(chan struct{}, 1), make(chan struct{})
	c := newClock()
	v := newVerifier(t, c, map[string]IssuerConfig{"k8s": remoteConfig(srv)})
	raw := mint(t, a, nil, k8sClaims(c.now()))
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := v.Verify(context.Background(), raw)
			errs <- err
		})
	}
	<-srv.entered // one fetch is open; whoever comes now must wait for it
	close(srv.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches; want 1", n)
	}
}

func TestKeysRefetchedAfterAnHour(t *testing.T) {
	a, b, _, _ := keys(t)
	srv := newKeyServer(t, jwksOf(t, a))
	c := newClock()
	v := newVerifier(t, c, map[string]IssuerConfig{"k8s": remoteConfig(srv)})
	ctx := context.Background()
	verifyA := func() error { _, err := v.Verify(ctx, mint(t, a, nil, k8sClaims(c.now()))); return err }
	if err := verifyA(); err != nil {
		t.Fatal(err)
	}
	srv.set(http.StatusOK, jwksOf(t, b)) // a is withdrawn
	c.advance(59 * time.Minute)
	if err := verifyA(); err != nil || srv.fetches.Load() != 1 {
		t.Fatalf("within the hour: %v, %d fetches", err, srv.fetches.Load())
	}
	c.advance(time.Minute)
	res, err := v.Verify(ctx, mint(t, a, nil, k8sClaims(c.now())))
	wantRefusal(t, res, err, 401, "")
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches; want 2", n)
	}
}

func TestFetchFailure(t *testing.T) {
	a, _, _, _ := keys(t)
	srv := newKeyServer(t, []byte(`oops`))
	srv.set(http.StatusInternalServerError, []byte(`oops`))
	c := newClock()
	v := newVerifier(t, c, map[string]IssuerConfig{"k8s": remoteConfig(srv)})
	ctx := context.Background()
	verifyA := func(kid string) error {
		_, err := v.Verify(ctx, mint(t, a, map[string]any{"kid": kid}, k8sClaims(c.now())))
		return err
	}
	wantUnavailable(t, verifyA(a.kid))
	wantUnavailable(t, verifyA(a.kid)) // no retry storm: within failureRetry, the failure is reused
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches; want 1", n)
	}
	if err := v.Ready(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ready = %v", err)
	}

	srv.set(http.StatusOK, jwksOf(t, a))
	c.advance(failureRetry)
	if err := v.Ready(ctx); err != nil {
		t.Fatalf("Ready = %v", err)
	}
	if err := verifyA(a.kid); err != nil {
		t.Fatal(err)
	}

	// The issuer goes down and the keys age: cached keys still verify
	// their own kids; a kid we cannot look up is an outage, not a 401.
	srv.set(http.StatusBadGateway, nil)
	c.advance(2 * time.Hour)
	if err := verifyA(a.kid); err != nil {
		t.Fatalf("cached kid during an outage: %v", err)
	}
	c.advance(time.Minute)
	wantUnavailable(t, verifyA("new-kid"))
}

func TestWaiterHonoursItsContext(t *testing.T) {
	a, _, _, _ := keys(t)
	srv := newKeyServer(t, jwksOf(t, a))
	srv.entered, srv.release = make(chan struct{}, 1), make(chan struct{})
	defer close(srv.release)
	c := newClock()
	v := newVerifier(t, c, map[string]IssuerConfig{"k8s": remoteConfig(srv)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := v.Verify(ctx, mint(t, a, nil, k8sClaims(c.now())))
		done <- err
	}()
	<-srv.entered
	cancel()
	err := <-done
	wantUnavailable(t, err)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatal(err)
	}
}

func TestResponseSizeLimit(t *testing.T) {
	a, _, _, _ := keys(t)
	big := jwksOf(t, a)
	big = append(big[:len(big)-1], []byte(`,"pad":"`+strings.Repeat("x", maxJWKSBytes)+`"}`)...)
	srv := newKeyServer(t, big)
	v := newVerifier(t, newClock(), map[string]IssuerConfig{"k8s": remoteConfig(srv)})
	wantUnavailable(t, v.Ready(context.Background()))
}

func TestDiscovery(t *testing.T) {
	a, _, _, _ := keys(t)
	srv := newKeyServer(t, jwksOf(t, a))
	c := newClock()
	cfg := remoteConfig(srv)
	cfg.JWKSURL, cfg.IssuerURL = "", srv.URL+"/"
	v := newVerifier(t, c, map[string]IssuerConfig{"k8s": cfg})
	if _, err := v.Verify(context.Background(), mint(t, a, nil, k8sClaims(c.now()))); err != nil {
		t.Fatal(err)
	}

	cfg.IssuerURL = srv.URL + "/nowhere"
	v = newVerifier(t, c, map[string]IssuerConfig{"k8s": cfg})
	wantUnavailable(t, v.Ready(context.Background()))
}

func TestJWKSFileChanges(t *testing.T) {
	a, b, _, _ := keys(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	writeFile(t, path, jwksOf(t, a))
	c := newClock()
	v := newVerifier(t, c, map[string]IssuerConfig{"k8s": k8sConfig(path)})
	ctx := context.Background()
	verify := func(k testKey) error { _, err := v.Verify(ctx, mint(t, k, nil, k8sClaims(c.now()))); return err }
	if err := verify(a); err != nil {
		t.Fatal(err)
	}

	writeFile(t, path, jwksOf(t, b)) // rotated: a out, b in
	c.advance(fileCheck)
	if err := verify(b); err != nil {
		t.Fatalf("new key after the file changed: %v", err)
	}
	var e *Error
	if err := verify(a); !errors.As(err, &e) || e.Status != 401 {
		t.Fatalf("removed key: %v", err)
	}

	writeFile(t, path, []byte(`{"keys": [`)) // half-written
	c.advance(fileCheck)
	if err := verify(b); err != nil {
		t.Fatalf("a broken file must keep the last good keys: %v", err)
	}
	writeFile(t, path, jwksOf(t, a))
	c.advance(fileCheck)
	if err := verify(a); err != nil {
		t.Fatalf("a repaired file: %v", err)
	}
}

func TestJWKSFileMissing(t *testing.T) {
	c := newClock()
	v := newVerifier(t, c, map[string]IssuerConfig{"k8s": k8sConfig(filepath.Join(t.TempDir(), "absent.json"))})
	wantUnavailable(t, v.Ready(context.Background()))
	a, _, _, _ := keys(t)
	_, err := v.Verify(context.Background(), mint(t, a, nil, k8sClaims(c.now())))
	wantUnavailable(t, err)
}

func TestParseJWKS(t *testing.T) {
	a, _, _, ec := keys(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	keyJSON := func(k jose.JSONWebKey) string {
		b, err := json.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	good := keyJSON(a.jwk())
	set := func(ks ...string) []byte { return []byte(`{"keys":[` + strings.Join(ks, ",") + `]}`) }
	tests := []struct {
		name    string
		data    []byte
		kept    int
		skipped int
		fails   bool
	}{
		{"rsa and ec", set(good, keyJSON(ec.jwk())), 2, 0, false},
		{"symmetric key never kept", set(good, `{"kty":"oct","kid":"h","k":"c2VjcmV0c2VjcmV0c2VjcmV0"}`), 1, 1, false},
		{"only a symmetric key", set(`{"kty":"oct","kid":"h","k":"c2VjcmV0"}`), 0, 1, true},
		{"private key dropped", set(good, keyJSON(jose.JSONWebKey{Key: a.priv, KeyID: "p"})), 1, 1, false},
		{"encryption key dropped", set(good, keyJSON(jose.JSONWebKey{Key: ec.priv.Public(), KeyID: "e", Use: "enc"})), 1, 1, false},
		{"short RSA key dropped", set(good, keyJSON(jose.JSONWebKey{Key: small.Public(), KeyID: "s"})), 1, 1, false},
		{"unknown key type skipped", set(good, `{"kty":"XYZ","kid":"x"}`), 1, 1, false},
		{"no keys member", []byte(`{}`), 0, 0, true},
		{"not JSON", []byte(`<html>`), 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, skipped, err := parseJWKS(tt.data)
			if (err != nil) != tt.fails || len(got) != tt.kept || skipped != tt.skipped {
				t.Fatalf("kept %d skipped %d err %v; want %d, %d, fails %v", len(got), skipped, err, tt.kept, tt.skipped, tt.fails)
			}
		})
	}
}

func TestKeyFits(t *testing.T) {
	a, _, _, ec := keys(t)
	rsaKey, ecKey := a.jwk(), ec.jwk()
	rsaKey.Algorithm, ecKey.Algorithm = "", ""
	for _, tt := range []struct {
		key  jose.JSONWebKey
		alg  string
		want bool
	}{
		{rsaKey, "RS256", true}, {rsaKey, "PS512", true}, {rsaKey, "ES256", false}, {rsaKey, "HS256", false},
		{ecKey, "ES256", true}, {ecKey, "ES384", false}, {ecKey, "RS256", false}, {ecKey, "EdDSA", false},
		{a.jwk(), "PS256", false}, // the key names RS256
	} {
		if got := keyFits(&tt.key, tt.alg); got != tt.want {
			t.Errorf("keyFits(%s key, %s) = %v", tt.key.Algorithm, tt.alg, got)
		}
	}
}
