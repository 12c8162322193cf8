// Package session turns signed-in identities into server-side sessions: it
// issues the opaque ticket the browser keeps in the session cookie,
// encrypts the record it puts in the session store, and enforces the
// absolute lifetime and idle timeout.
package session

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// ErrNoSession means the request carries no usable session: no cookie, a
// malformed or foreign ticket, or a session that ended. It is the only
// error after which a request may be treated as anonymous; any other error
// from Load means the store failed and the request must fail closed.
var ErrNoSession = errors.New("session: no session")

// Session is one signed-in browser (or device-flow grant).
type Session struct {
	Identity    identity.Identity `json:"identity"`
	CreatedAt   time.Time         `json:"created_at"`
	LastSeen    time.Time         `json:"last_seen"`
	ValidatedAt time.Time         `json:"validated_at"` // when membership was last checked with the provider
	Token       *ProviderToken    `json:"provider_token,omitempty"`

	ticket ticket
}

// ProviderToken is what the provider issued at sign-in, kept (encrypted)
// to re-check membership and to forward the access token when configured.
type ProviderToken struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitempty"`
}

// ID is a hash of the session id, safe for logs and the assertion's sid.
func (s *Session) ID() string { return s.ticket.publicID() }

// Manager creates, loads and ends sessions.
type Manager struct {
	cfg   Config
	store sessionstore.Store
	now   func() time.Time
}

// NewManager returns a Manager over store. cfg must have been validated.
// now may be nil (time.Now).
func NewManager(cfg Config, store sessionstore.Store, now func() time.Time) *Manager {
	if now == nil {
		now = time.Now
	}
	return &Manager{cfg: cfg, store: store, now: now}
}

// Store returns the underlying store (for readiness checks).
func (m *Manager) Store() sessionstore.Store { return m.store }

// Create starts a new session for id with a fresh session id (never one
// the browser brought) and sets the cookie on w.
func (m *Manager) Create(ctx context.Context, w http.ResponseWriter, id identity.Identity, tok *ProviderToken) (*Session, error) {
	t, err := newTicket()
	if err != nil {
		return nil, err
	}
	now := m.now()
	s := &Session{Identity: id, CreatedAt: now, LastSeen: now, ValidatedAt: now, Token: tok, ticket: t}
	if err := m.Save(ctx, s); err != nil {
		return nil, err
	}
	http.SetCookie(w, m.cookie(t.String(), int(m.cfg.Lifetime/time.Second)))
	return s, nil
}

// Save writes s back to the store, e.g. after revalidation.
func (m *Manager) Save(ctx context.Context, s *Session) error {
	ttl := m.remaining(s)
	if ttl <= 0 {
		return ErrNoSession
	}
	plain, err := json.Marshal(s)
	if err != nil {
		return err
	}
	rec, err := s.ticket.seal(plain)
	if err != nil {
		return err
	}
	return m.store.Set(ctx, s.ticket.storeKey(), rec, ttl)
}

// Load returns the session the request's cookie names. It returns
// ErrNoSession when there is none, and another error when the store could
// not answer (the caller must then fail closed).
func (m *Manager) Load(ctx context.Context, r *http.Request) (*Session, error) {
	var lastErr error = ErrNoSession
	// Several cookies of the same name can arrive (one set by a sibling
	// domain, say); try each rather than trusting the first.
	for i, c := range r.CookiesNamed(m.cfg.CookieName) {
		if i == 4 {
			break
		}
		t, err := parseTicket(c.Value)
		if err != nil {
			continue
		}
		s, err := m.load(ctx, t)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, ErrNoSession) {
			lastErr = err
		}
	}
	return nil, lastErr
}

func (m *Manager) load(ctx context.Context, t ticket) (*Session, error) {
	rec, err := m.store.Get(ctx, t.storeKey())
	if errors.Is(err, sessionstore.ErrNotFound) {
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("session store: %w", err)
	}
	plain, err := t.open(rec)
	if err != nil {
		// Corrupt, foreign or swapped data is no session, never a crash.
		return nil, ErrNoSession
	}
	s := &Session{ticket: t}
	if err := json.Unmarshal(plain, s); err != nil {
		return nil, ErrNoSession
	}
	now := m.now()
	if m.remaining(s) <= 0 {
		_ = m.store.Delete(ctx, t.storeKey())
		return nil, ErrNoSession
	}
	// "Sign out everywhere" marks the user; sessions from before the mark
	// are over, on every replica, from the next request on.
	ended, err := EndedBefore(ctx, m.store, s.Identity)
	if err != nil {
		return nil, fmt.Errorf("session store: %w", err)
	}
	if !s.CreatedAt.After(ended) {
		_ = m.store.Delete(ctx, t.storeKey())
		return nil, ErrNoSession
	}
	// Refresh the idle clock only now and then, so a busy session does not
	// cost a store write per request. The idle timeout is thus enforced to
	// within touchEvery.
	if now.Sub(s.LastSeen) >= m.touchEvery() {
		s.LastSeen = now
		if err := m.Save(ctx, s); err != nil && !errors.Is(err, ErrNoSession) {
			return nil, fmt.Errorf("session store: %w", err)
		}
	}
	return s, nil
}

// Delete ends s server-side and, when w is not nil, clears the cookie.
func (m *Manager) Delete(ctx context.Context, w http.ResponseWriter, s *Session) error {
	if w != nil {
		m.ClearCookie(w)
	}
	if s == nil {
		return nil
	}
	return m.store.Delete(ctx, s.ticket.storeKey())
}

// EndAll ends every session (and, through EndedBefore, every token) of
// the user id, on every replica.
func (m *Manager) EndAll(ctx context.Context, id identity.Identity) error {
	now := m.now()
	b, _ := now.MarshalBinary()
	// Kept for a year: longer than any session or token can live, so
	// nothing issued before the mark can outlive it.
	return m.store.Set(ctx, userKey(id), b, 366*24*time.Hour)
}

// EndedBefore returns the time before which everything of id was ended by
// "sign out everywhere", or the zero time.
func EndedBefore(ctx context.Context, store sessionstore.Store, id identity.Identity) (time.Time, error) {
	b, err := store.Get(ctx, userKey(id))
	if errors.Is(err, sessionstore.ErrNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	var t time.Time
	if t.UnmarshalBinary(b) != nil {
		return time.Time{}, nil
	}
	return t, nil
}

func userKey(id identity.Identity) string {
	h := sha256.Sum256([]byte("gatehouse user v1\x00" + id.Provider + "\x00" + id.Subject))
	return "u1:" + base64.RawURLEncoding.EncodeToString(h[:])
}

// ClearCookie expires the session cookie.
func (m *Manager) ClearCookie(w http.ResponseWriter) {
	http.SetCookie(w, m.cookie("", -1))
}

// remaining is how long s may still live: the earlier of its absolute end
// and its idle end.
func (m *Manager) remaining(s *Session) time.Duration {
	now := m.now()
	end := s.CreatedAt.Add(m.cfg.Lifetime)
	if idleEnd := s.LastSeen.Add(m.cfg.IdleTimeout); idleEnd.Before(end) {
		end = idleEnd
	}
	return end.Sub(now)
}

func (m *Manager) touchEvery() time.Duration {
	d := m.cfg.IdleTimeout / 20
	if d > 5*time.Minute {
		d = 5 * time.Minute
	}
	return d
}

func (m *Manager) cookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     m.cfg.CookieName,
		Value:    value,
		Path:     "/",
		Domain:   m.cfg.CookieDomain,
		MaxAge:   maxAge,
		Secure:   m.cfg.CookieSecure,
		HttpOnly: true,
		SameSite: m.cfg.sameSite(),
	}
}
