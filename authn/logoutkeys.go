package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// ErrKeysUnavailable means a logout token could not be checked because
// the provider's discovery document or keys could not be had: the
// provider should try again later (503), unlike a token that was refused.
var ErrKeysUnavailable = errors.New("authn: the provider's keys are unavailable")

// asymmetricAlgs are the signature algorithms a logout token may use.
var asymmetricAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// keyRefetchEvery bounds how often an unknown kid makes the keys be
// fetched again.
const keyRefetchEvery = time.Minute

// logoutKeys is the provider's key set for logout tokens. Anybody can POST
// a logout token, and iss and aud are public, so unlike go-oidc's remote
// key set (which fetches the keys again whenever a signature fails) it
// fetches them at most once a minute: forged tokens cannot make
// Gatehouse hammer the provider.
type logoutKeys struct {
	uri    string
	client *http.Client
	now    func() time.Time

	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetched time.Time // last fetch, successful or not
}

// VerifySignature implements oidc.KeySet.
func (k *logoutKeys) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(raw, asymmetricAlgs)
	if err != nil {
		return nil, fmt.Errorf("malformed token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("a token must carry exactly one signature")
	}
	keys, err := k.candidates(ctx, jws.Signatures[0].Header.KeyID)
	if err != nil {
		return nil, err
	}
	for _, key := range keys {
		if payload, err := jws.Verify(key.Key); err == nil {
			return payload, nil
		}
	}
	return nil, errors.New("no key of the provider verifies the signature")
}

// candidates returns the keys that may have signed a token with kid,
// fetching the key set when it is not cached or does not know kid (at
// most once per keyRefetchEvery).
func (k *logoutKeys) candidates(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if found := matching(k.keys, kid); len(found) > 0 {
		return found, nil
	}
	if !k.fetched.IsZero() && k.now().Sub(k.fetched) < keyRefetchEvery {
		if len(k.keys) == 0 {
			return nil, ErrKeysUnavailable
		}
		return nil, nil // an unknown kid: refused without asking again
	}
	k.fetched = k.now()
	keys, err := fetchKeys(ctx, k.client, k.uri)
	if err != nil {
		if len(k.keys) == 0 {
			return nil, fmt.Errorf("%w: %v", ErrKeysUnavailable, err)
		}
		return nil, nil
	}
	k.keys = keys
	return matching(keys, kid), nil
}

// matching returns the public signing keys with kid (every one when kid
// is empty).
func matching(keys []jose.JSONWebKey, kid string) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, key := range keys {
		if (kid == "" || key.KeyID == kid) && key.Use != "enc" && key.IsPublic() {
			out = append(out, key)
		}
	}
	return out
}

func fetchKeys(ctx context.Context, client *http.Client, uri string) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(ctx, providerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, redactURLError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("keys: %s", resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return set.Keys, nil
}
