// Package tokens issues and checks the bearer tokens machines and CLIs use:
// tokens from the device flow (kept, encrypted, in the session store) and
// static machine tokens from the configuration (known by their SHA-256).
package tokens

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/internal/sealed"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// Prefix starts every token Gatehouse issues, so secret scanners can spot
// a leaked one.
const Prefix = "gth_"

// rawLen is the length of an issued token: the prefix and 32 random bytes.
var rawLen = len(Prefix) + base64.RawURLEncoding.EncodedLen(32)

// ErrUnknown means the token is not one Gatehouse knows: never issued,
// expired, or revoked.
var ErrUnknown = errors.New("tokens: unknown, expired or revoked token")

// ErrEnded is returned by Issue when the grant the token was to carry (a
// device approval) was ended since by sign out everywhere, or its
// generation can no longer be found.
var ErrEnded = errors.New("tokens: the grant was ended by sign out everywhere")

// Token is what a bearer token stands for.
type Token struct {
	Identity  identity.Identity `json:"identity"`
	Scopes    []string          `json:"scopes"`
	ClientID  string            `json:"client_id,omitempty"`
	IssuedAt  time.Time         `json:"iat"`
	ExpiresAt time.Time         `json:"exp"` // zero: never (static tokens only)
	// Generation is the user's generation (see session.Manager.EndAll)
	// the grant was made under; the token works only while it is current.
	Generation string `json:"gen,omitempty"`
	Static     bool   `json:"-"`
	// ID is a hash of the token, safe for logs and the assertion's sid.
	ID string `json:"-"`
}

// Store issues, finds and revokes tokens.
type Store struct {
	store   sessionstore.Store
	scopes  Scopes
	statics Statics
	now     func() time.Time
}

// NewStore returns a Store. now may be nil (time.Now).
func NewStore(store sessionstore.Store, scopes Scopes, statics Statics, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{store: store, scopes: scopes, statics: statics, now: now}
}

// Scopes returns the configured scopes.
func (s *Store) Scopes() Scopes { return s.scopes }

// Issue stores t and returns the new bearer token for it. A token
// carries the approval it comes from: with t.Generation set (the
// approving session's), Issue fails with ErrEnded when that generation is
// no longer the user's current one, so sign out everywhere between an
// approval and its token ends the token before it exists. With it empty
// the token belongs to the current generation.
func (s *Store) Issue(ctx context.Context, t Token) (string, error) {
	if t.Generation == "" {
		gen, err := session.EnsureGeneration(ctx, s.store, t.Identity)
		if err != nil {
			return "", fmt.Errorf("tokens: %w", err)
		}
		t.Generation = gen
	} else {
		switch err := session.KeepGeneration(ctx, s.store, t.Identity, t.Generation); {
		case errors.Is(err, session.ErrNoSession):
			return "", ErrEnded
		case err != nil:
			return "", fmt.Errorf("tokens: %w", err)
		}
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	raw := Prefix + base64.RawURLEncoding.EncodeToString(b)
	plain, err := json.Marshal(t)
	if err != nil {
		return "", err
	}
	key, enc := derive(raw)
	rec, err := sealed.Seal(&enc, []byte(key), plain)
	if err != nil {
		return "", err
	}
	ttl := t.ExpiresAt.Sub(s.now())
	if ttl <= 0 {
		return "", errors.New("tokens: token would already be expired")
	}
	if err := s.store.Add(ctx, key, rec, ttl); err != nil {
		return "", fmt.Errorf("tokens: storing: %w", err)
	}
	return raw, nil
}

// Lookup returns what raw stands for, ErrUnknown, or a store error (the
// caller must then fail closed).
func (s *Store) Lookup(ctx context.Context, raw string) (*Token, error) {
	now := s.now()
	if st, ok := s.statics[sha256.Sum256([]byte(raw))]; ok {
		if !st.expires.IsZero() && !now.Before(st.expires) {
			return nil, ErrUnknown
		}
		return &Token{
			ID:        publicID(raw),
			Identity:  identity.Identity{Provider: "static", Subject: st.name, User: st.name, Groups: []string{}},
			Scopes:    st.scopes,
			ExpiresAt: st.expires,
			Static:    true,
		}, nil
	}
	if len(raw) != rawLen || !strings.HasPrefix(raw, Prefix) {
		return nil, ErrUnknown
	}
	key, enc := derive(raw)
	rec, err := s.store.Get(ctx, key)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return nil, ErrUnknown
	}
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	plain, err := sealed.Open(&enc, []byte(key), rec)
	if err != nil {
		return nil, ErrUnknown
	}
	var t Token
	if err := json.Unmarshal(plain, &t); err != nil || !now.Before(t.ExpiresAt) {
		return nil, ErrUnknown
	}
	// "Sign out everywhere" ends the user's tokens too: a token works only
	// while its generation is current and can be found.
	switch err := session.CheckGeneration(ctx, s.store, t.Identity, t.Generation); {
	case errors.Is(err, session.ErrNoSession):
		return nil, ErrUnknown
	case err != nil:
		return nil, fmt.Errorf("tokens: %w", err)
	}
	t.ID = publicID(raw)
	return &t, nil
}

// Revoke ends an issued token. Unknown tokens are not an error (RFC 7009
// §2.2); static tokens end by removing them from the configuration.
func (s *Store) Revoke(ctx context.Context, raw string) error {
	if len(raw) != rawLen || !strings.HasPrefix(raw, Prefix) {
		return nil
	}
	key, _ := derive(raw)
	return s.store.Delete(ctx, key)
}

// derive gives the store key and the encryption key of a token. Both come
// from the token itself, so the store holds neither the token nor anything
// that decrypts its record.
func derive(raw string) (key string, enc [32]byte) {
	id := sha256.Sum256([]byte("gatehouse token id v1\x00" + raw))
	enc = sha256.Sum256([]byte("gatehouse token key v1\x00" + raw))
	return "t1:" + base64.RawURLEncoding.EncodeToString(id[:]), enc
}

func publicID(raw string) string {
	h := sha256.Sum256([]byte("gatehouse token sid v1\x00" + raw))
	return base64.RawURLEncoding.EncodeToString(h[:16])
}

// Names returns the public id of an issued token (as Lookup reports it)
// and the store key of its record, for the per-user index: neither can be
// used as the token.
func Names(raw string) (id, record string) {
	record, _ = derive(raw)
	return publicID(raw), record
}
