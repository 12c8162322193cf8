// Package assertion signs the identity Gatehouse forwards upstream as a
// short-lived JWT (the X-Gatehouse-Assertion header) and publishes the
// public keys that verify it as a JWK set.
package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/internal/bounded"
	"github.com/gatehouse/gatehouse/internal/confcheck"
)

// Config is headers.assertion.
type Config struct {
	Enabled         bool          `mapstructure:"enabled"`
	Header          string        `mapstructure:"header"`
	SigningKeyFiles []string      `mapstructure:"signing_key_files"`
	Lifetime        time.Duration `mapstructure:"lifetime"`
}

// Key is one signing key with its key id.
type Key struct {
	ID  string
	Alg jose.SignatureAlgorithm
	key crypto.Signer
}

// Validate checks the section and loads the keys. With no key files it
// returns no keys; the caller generates one.
func (c Config) Validate() ([]Key, confcheck.Problems) {
	var ps confcheck.Problems
	if !c.Enabled {
		return nil, nil
	}
	if c.Lifetime <= 0 {
		ps.Addf("lifetime", "must be a positive duration such as 5m")
	}
	var keys []Key
	for _, f := range c.SigningKeyFiles {
		k, err := LoadKey(f)
		if err != nil {
			ps.Addf("signing_key_files", "%s: %v", f, err)
			continue
		}
		keys = append(keys, k)
	}
	return keys, ps
}

// LoadKey reads a PEM private key: EC P-256 (ES256) or RSA of at least
// 2048 bits (RS256), in PKCS#8, SEC 1 or PKCS#1 form.
func LoadKey(file string) (Key, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return Key{}, fmt.Errorf("cannot read: %v", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return Key{}, errors.New("no PEM block found")
	}
	var parsed any
	switch block.Type {
	case "EC PRIVATE KEY":
		parsed, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return Key{}, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return Key{}, fmt.Errorf("cannot parse private key: %v", err)
	}
	return newKey(parsed)
}

func newKey(k any) (Key, error) {
	var alg jose.SignatureAlgorithm
	var signer crypto.Signer
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return Key{}, errors.New("EC keys must use curve P-256 (ES256)")
		}
		alg, signer = jose.ES256, k
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return Key{}, fmt.Errorf("RSA keys must have at least 2048 bits, got %d", k.N.BitLen())
		}
		alg, signer = jose.RS256, k
	default:
		return Key{}, fmt.Errorf("unsupported key type %T (use EC P-256 or RSA)", k)
	}
	jwk := jose.JSONWebKey{Key: signer.Public()}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return Key{}, err
	}
	return Key{ID: base64.RawURLEncoding.EncodeToString(thumb), Alg: alg, key: signer}, nil
}

// GenerateKey makes a fresh ES256 key. It lives only in this process, so
// replicas would each have their own: fine for one replica only.
func GenerateKey() (Key, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Key{}, err
	}
	return newKey(k)
}

// Signer signs assertions with the first key and publishes all of them.
type Signer struct {
	signer   jose.Signer
	issuer   string
	audience string
	lifetime time.Duration
	jwks     []byte
	now      func() time.Time

	// cache is keyed by audience and by session id and identity version:
	// an assertion made for one upstream must never be handed to another.
	cache *bounded.Map[string, cached]
}

type cached struct {
	jwt     string
	renewAt time.Time
}

// maxCached bounds the assertion cache; when full, one entry is evicted
// per new one (never the whole cache at once, which would make every
// session sign again in the same instant).
const maxCached = 50000

// NewSigner returns a Signer. keys[0] signs; every key is in the JWK set
// so a new key can be rolled in while upstreams still cache the old set.
func NewSigner(keys []Key, issuer, audience string, lifetime time.Duration, now func() time.Time) (*Signer, error) {
	if len(keys) == 0 {
		return nil, errors.New("assertion: no signing key")
	}
	if now == nil {
		now = time.Now
	}
	first := keys[0]
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: first.Alg, Key: jose.JSONWebKey{Key: first.key, KeyID: first.ID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.key.Public(), KeyID: k.ID, Algorithm: string(k.Alg), Use: "sig"})
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return nil, err
	}
	return &Signer{signer: signer, issuer: issuer, audience: audience, lifetime: lifetime, jwks: jwks, now: now,
		cache: bounded.New[string, cached](maxCached)}, nil
}

// Claims are the assertion's claims.
type Claims struct {
	jwt.Claims
	Email             string   `json:"email,omitempty"`
	EmailVerified     bool     `json:"email_verified"`
	Name              string   `json:"name,omitempty"`
	PreferredUsername string   `json:"preferred_username,omitempty"`
	Groups            []string `json:"groups"`
	Provider          string   `json:"provider"`
	SessionID         string   `json:"sid,omitempty"`
}

// Audience is the aud of assertions signed without one of their own.
func (s *Signer) Audience() string { return s.audience }

// Sign returns a JWT asserting id for the default audience. sid is a hash
// of the session id (never the id itself).
func (s *Signer) Sign(id identity.Identity, sid string) (string, error) {
	return s.SignFor(s.audience, id, sid)
}

// SignFor returns a JWT asserting id to audience: with several upstreams
// (routes), each gets assertions naming it, so one cannot replay what it
// received against another.
func (s *Signer) SignFor(audience string, id identity.Identity, sid string) (string, error) {
	return s.signUntil(audience, id, sid, time.Time{})
}

// signUntil signs with the expiry capped at until (zero: no cap).
func (s *Signer) signUntil(audience string, id identity.Identity, sid string, until time.Time) (string, error) {
	now := s.now()
	exp := now.Add(s.lifetime)
	if !until.IsZero() && until.Before(exp) {
		exp = until
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	groups := id.Groups
	if groups == nil {
		groups = []string{}
	}
	c := Claims{
		Claims: jwt.Claims{
			Issuer:   s.issuer,
			Audience: jwt.Audience{audience},
			Subject:  id.Key(),
			ID:       base64.RawURLEncoding.EncodeToString(jti),
			IssuedAt: jwt.NewNumericDate(now),
			Expiry:   jwt.NewNumericDate(exp),
		},
		Email: id.Email, EmailVerified: id.EmailVerified, Name: id.Name,
		PreferredUsername: id.PreferredUsername, Groups: groups, Provider: id.Provider, SessionID: sid,
	}
	return jwt.Signed(s.signer).Claims(c).Serialize()
}

// SignCached returns an assertion for id, reusing the one made for the same
// key (a session id and its identity's version) while it has more than
// half its lifetime left. Signing is the largest part of a proxied
// request's cost; an assertion is a bearer proof of identity for a short
// time, not a per-request nonce.
func (s *Signer) SignCached(key string, id identity.Identity, sid string) (string, error) {
	return s.SignCachedFor(s.audience, key, id, sid)
}

// SignCachedFor is SignCached for audience. The cache key holds the
// audience, so the same session reaching two upstreams gets one assertion
// for each.
func (s *Signer) SignCachedFor(audience, key string, id identity.Identity, sid string) (string, error) {
	return s.SignCachedUntil(audience, key, id, sid, time.Time{})
}

// SignCachedUntil is SignCachedFor with the assertion's expiry capped at
// until (zero: no cap): an assertion made for a credential that expires
// sooner (a workload JWT) never outlives it.
func (s *Signer) SignCachedUntil(audience, key string, id identity.Identity, sid string, until time.Time) (string, error) {
	now := s.now()
	// "\x00" cannot occur in a host name, so no audience and key pair
	// reads as another.
	ck := audience + "\x00" + key
	if c, ok := s.cache.Get(ck); ok && now.Before(c.renewAt) {
		return c.jwt, nil
	}
	jwt, err := s.signUntil(audience, id, sid, until)
	if err != nil {
		return "", err
	}
	renew := now.Add(s.lifetime / 2)
	if !until.IsZero() && until.Before(renew) {
		renew = until
	}
	s.cache.Put(ck, cached{jwt: jwt, renewAt: renew})
	return jwt, nil
}

// JWKS returns the JSON Web Key Set document.
func (s *Signer) JWKS() []byte { return s.jwks }
