package workload

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Key refresh policy.
const (
	// kidRefresh: an unknown kid refetches the key set at most this often
	// per issuer, so tokens with made-up kids cannot make us hammer the
	// issuer (or be used to make us do so).
	kidRefresh = time.Minute
	// maxKeyAge: keys older than this are refetched on next use, so a
	// removed (compromised) key stops working without a restart.
	maxKeyAge = time.Hour
	// failureRetry: after a failed fetch with nothing cached, wait this
	// long before trying again, so an outage does not turn every request
	// into an outbound call.
	failureRetry = 5 * time.Second
	// fileCheck: how often a jwks_file is re-read; well within the 30 s
	// the contract promises.
	fileCheck = 10 * time.Second
	// fetchTimeout bounds one discovery + key set fetch.
	fetchTimeout = 15 * time.Second
	// maxJWKSBytes bounds a key set or discovery document.
	maxJWKSBytes = 1 << 20
	// minRSABits: shorter RSA keys are factorable or close to it.
	minRSABits = 2048
)

// ErrUnavailable is wrapped by errors that mean an issuer's keys cannot
// be had right now: the proxy answers 503, not 401.
var ErrUnavailable = errors.New("workload: issuer keys unavailable")

// keySource yields an issuer's public keys.
type keySource interface {
	// keys returns the keys that may have signed a token with kid (all
	// keys when kid is ""), refreshing by policy. An empty result with a
	// nil error means the kid is unknown. Errors wrap ErrUnavailable.
	keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error)
}

func unavailable(name string, err error) error {
	if err == nil {
		err = errors.New("keys not loaded yet")
	}
	return fmt.Errorf("%w: jwt_issuers.%s: %v", ErrUnavailable, name, err)
}

func findKeys(set []jose.JSONWebKey, kid string) []jose.JSONWebKey {
	if kid == "" {
		return set
	}
	var out []jose.JSONWebKey
	for _, k := range set {
		if k.KeyID == kid {
			out = append(out, k)
		}
	}
	return out
}

// remoteSource fetches keys from jwks_url, or from the jwks_uri of the
// discovery document at issuer_url.
type remoteSource struct {
	name      string
	issuerURL string
	jwksURL   string
	client    *http.Client
	now       func() time.Time
	log       *slog.Logger

	mu        sync.Mutex
	set       []jose.JSONWebKey
	loaded    bool
	fetchedAt time.Time     // last successful fetch
	attempt   time.Time     // start of the last fetch, successful or not
	lastErr   error         // of the last fetch; nil after a success
	inflight  chan struct{} // closed when the running fetch ends
}

func (s *remoteSource) keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	// Round 0 may start a fetch; later rounds only read what a fetch
	// (ours or another caller's) left, so the loop ends.
	for round := 0; ; round++ {
		s.mu.Lock()
		now := s.now()
		match := findKeys(s.set, kid)
		if ch := s.inflight; ch != nil {
			if len(match) > 0 && round == 0 {
				// Someone else is refreshing; what we have will do.
				s.mu.Unlock()
				return match, nil
			}
			s.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, unavailable(s.name, ctx.Err())
			}
		}
		if round > 0 || !s.due(now, len(match) > 0) {
			err := s.lastErr
			loaded := s.loaded
			s.mu.Unlock()
			switch {
			case !loaded:
				return nil, unavailable(s.name, err)
			case len(match) == 0 && err != nil:
				// The kid may be a new key we could not fetch: that is
				// an outage, not a bad token.
				return nil, unavailable(s.name, err)
			}
			return match, nil
		}
		ch := make(chan struct{})
		s.inflight, s.attempt = ch, now
		s.mu.Unlock()
		// The fetch runs apart from this request: callers waiting on it
		// share its result, so one of them hanging up must not fail it
		// for all. Every caller, this one included, waits above with its
		// own ctx.
		go s.run(context.WithoutCancel(ctx), ch)
	}
}

// due reports whether a fetch should start now. Called with mu held.
func (s *remoteSource) due(now time.Time, haveKid bool) bool {
	switch {
	case !s.loaded || now.Sub(s.fetchedAt) >= maxKeyAge:
		return s.attempt.IsZero() || now.Sub(s.attempt) >= failureRetry
	case !haveKid:
		return now.Sub(s.attempt) >= kidRefresh
	}
	return false
}

func (s *remoteSource) run(ctx context.Context, done chan struct{}) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	set, err := s.fetch(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.lastErr = err
		s.log.Warn("fetching workload JWT keys failed", "issuer", s.name, "err", err, "cached_keys", len(s.set))
	} else {
		s.set, s.loaded, s.fetchedAt, s.lastErr = set, true, s.now(), nil
		s.log.Debug("fetched workload JWT keys", "issuer", s.name, "keys", len(set))
	}
	s.inflight = nil
	close(done)
}

func (s *remoteSource) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	jwksURL := s.jwksURL
	if s.issuerURL != "" {
		body, err := s.get(ctx, strings.TrimSuffix(s.issuerURL, "/")+"/.well-known/openid-configuration")
		if err != nil {
			return nil, fmt.Errorf("discovery: %w", err)
		}
		var doc struct {
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(body, &doc); err != nil {
			return nil, fmt.Errorf("discovery: %w", err)
		}
		if err := httpURL(doc.JWKSURI, true); err != nil {
			return nil, fmt.Errorf("discovery: jwks_uri: %w", err)
		}
		jwksURL = doc.JWKSURI
	}
	body, err := s.get(ctx, jwksURL)
	if err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	set, skipped, err := parseJWKS(body)
	if skipped > 0 {
		s.log.Debug("skipped unusable keys in workload JWT key set", "issuer", s.name, "skipped", skipped)
	}
	return set, err
}

func (s *remoteSource) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("GET %s: response over %d bytes", url, maxJWKSBytes)
	}
	return body, nil
}

// fileSource reads keys from a mounted file and re-reads it when its
// content changes. A bad new version keeps the last good keys: a
// half-written file must not lock every workload out.
type fileSource struct {
	name string
	path string
	now  func() time.Time
	log  *slog.Logger

	mu      sync.Mutex // held while reading: a local file is quick
	set     []jose.JSONWebKey
	loaded  bool
	checked time.Time
	seen    [32]byte // SHA-256 of the content last read, good or bad
	lastErr error
}

func (s *fileSource) keys(_ context.Context, kid string) ([]jose.JSONWebKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := s.now(); s.checked.IsZero() || now.Sub(s.checked) >= fileCheck {
		s.checked = now
		s.reload()
	}
	if !s.loaded {
		return nil, unavailable(s.name, s.lastErr)
	}
	return findKeys(s.set, kid), nil
}

// reload compares content rather than trusting mtime and size alone:
// an edit within the file system's timestamp granularity that keeps the
// size would otherwise go unnoticed for good.
func (s *fileSource) reload() {
	data, err := readLimited(s.path)
	if err != nil {
		s.lastErr, s.seen = err, [32]byte{}
		s.log.Warn("reading workload JWT key file failed; keeping the last good keys",
			"issuer", s.name, "file", s.path, "err", err, "cached_keys", len(s.set))
		return
	}
	sum := sha256.Sum256(data)
	if sum == s.seen {
		return // handled already, good or bad
	}
	s.seen = sum
	set, skipped, err := parseJWKS(data)
	if err != nil {
		s.lastErr = fmt.Errorf("%s: %w", s.path, err)
		s.log.Warn("workload JWT key file is not a usable key set; keeping the last good keys",
			"issuer", s.name, "file", s.path, "err", err, "cached_keys", len(s.set))
		return
	}
	s.set, s.loaded, s.lastErr = set, true, nil
	s.log.Info("loaded workload JWT keys", "issuer", s.name, "file", s.path, "keys", len(set), "skipped", skipped)
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("%s: over %d bytes", path, maxJWKSBytes)
	}
	return data, nil
}

// parseJWKS reads a JWK Set and keeps the public signing keys. Keys it
// cannot use (unknown types, encryption keys, short RSA keys) are
// skipped so one odd entry does not take the whole issuer down. Symmetric
// keys are never kept: a key set is public, so a shared secret in it is
// no secret, and keeping it would allow HMAC forgeries. Private keys are
// dropped too rather than trusted: publishing them is a leak.
func parseJWKS(data []byte) (set []jose.JSONWebKey, skipped int, err error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(data), &doc); err != nil {
		return nil, 0, fmt.Errorf("not a JWK set: %w", err)
	}
	if doc.Keys == nil {
		return nil, 0, errors.New(`not a JWK set: no "keys" member`)
	}
	for _, raw := range doc.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil || !usableKey(&k) {
			skipped++
			continue
		}
		set = append(set, k)
	}
	if len(set) == 0 {
		return nil, skipped, errors.New("the key set holds no usable public signing key")
	}
	return set, skipped, nil
}

func usableKey(k *jose.JSONWebKey) bool {
	if (k.Use != "" && k.Use != "sig") || !k.Valid() || !k.IsPublic() {
		return false
	}
	switch key := k.Key.(type) {
	case *rsa.PublicKey:
		return key.N.BitLen() >= minRSABits
	case *ecdsa.PublicKey, ed25519.PublicKey:
		return true
	}
	return false
}

// keyFits reports whether key may verify a signature made with alg: the
// key type must match the algorithm family (and the curve the hash), and
// a key that names its algorithm is used for that one only.
func keyFits(k *jose.JSONWebKey, alg string) bool {
	if k.Algorithm != "" && k.Algorithm != alg {
		return false
	}
	switch key := k.Key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		if key.Curve == nil {
			return false
		}
		want := map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg]
		return want != "" && key.Curve.Params().Name == want
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}
