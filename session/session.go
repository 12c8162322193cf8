// Package session turns signed-in identities into server-side sessions: it
// issues the opaque ticket the browser keeps in the session cookie,
// encrypts the record it puts in the session store, and enforces the
// absolute lifetime and idle timeout.
package session

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
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
	// Generation is the user's generation when the session began (see
	// EndAll); the session lives only while it is still the current one.
	Generation string `json:"generation"`
	// Logout is the value of the session's back-channel logout record
	// when it has one (see logout.go); the session lives only while the
	// record holds it.
	Logout string `json:"logout,omitempty"`

	ticket ticket
}

// ProviderToken is what the provider issued at sign-in, kept (encrypted)
// to re-check membership and to forward the access token when configured.
type ProviderToken struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitempty"`
	// SID is the provider's session id (the ID token's sid claim), which
	// back-channel logout tokens name.
	SID string `json:"sid,omitempty"`
	// IDToken is kept only for RP-initiated logout (its id_token_hint).
	IDToken string `json:"id_token,omitempty"`
}

// ID is a hash of the session id, safe for logs and the assertion's sid.
func (s *Session) ID() string { return s.ticket.publicID() }

// FormToken is the anti-forgery token of a form that acts for s: bound
// to the session and keyed by key, which callers derive from
// session.secret (one key per kind of form), so it is the same on every
// replica and useless for any other session or form.
func (s *Session) FormToken(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s.ID()))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Manager creates, loads and ends sessions.
type Manager struct {
	cfg    Config
	store  sessionstore.Store
	now    func() time.Time
	opened *openCache
	index  *Index
}

// NewManager returns a Manager over store. cfg must have been validated.
// now may be nil (time.Now).
func NewManager(cfg Config, store sessionstore.Store, now func() time.Time) *Manager {
	if now == nil {
		now = time.Now
	}
	return &Manager{cfg: cfg, store: store, now: now, opened: newOpenCache(openCacheSize), index: NewIndex(store, cfg.Secret, now)}
}

// Index returns the per-user index of sessions and tokens.
func (m *Manager) Index() *Index { return m.index }

// Store returns the underlying store (for readiness checks).
func (m *Manager) Store() sessionstore.Store { return m.store }

// Create starts a new session for id with a fresh session id (never one
// the browser brought) and sets the cookie on w. The session belongs to
// the user's current generation (see EndAll).
func (m *Manager) Create(ctx context.Context, w http.ResponseWriter, id identity.Identity, tok *ProviderToken, opts ...CreateOption) (*Session, error) {
	var o createOptions
	for _, opt := range opts {
		opt(&o)
	}
	t, err := newTicket(userHash(id))
	if err != nil {
		return nil, err
	}
	gen, err := EnsureGeneration(ctx, m.store, id)
	if err != nil {
		return nil, fmt.Errorf("session store: %w", err)
	}
	var logout string
	if o.backchannel {
		if logout, t.logout, err = m.bindLogout(ctx, id, tok); err != nil {
			return nil, fmt.Errorf("session store: %w", err)
		}
		t = t.derive()
	}
	now := m.now()
	s := &Session{Identity: id, CreatedAt: now, LastSeen: now, ValidatedAt: now, Token: tok, Generation: gen, Logout: logout, ticket: t}
	if err := m.write(ctx, s, true); err != nil {
		return nil, err
	}
	// Listed for the sessions page; best effort (see Index).
	_ = m.index.Add(ctx, id, Entry{
		Handle: s.ID(), Kind: KindBrowser, Provider: id.Provider, Record: t.storeKey(),
		CreatedAt: now, ExpiresAt: now.Add(m.cfg.Lifetime), ClientIP: o.clientIP, UserAgent: o.userAgent,
	})
	m.noteSeen(ctx, s)
	http.SetCookie(w, m.cookie(t.String(), int(m.cfg.Lifetime/time.Second)))
	return s, nil
}

// Save writes s back to the store, e.g. after revalidation. It only ever
// replaces the stored record: when the session was ended meanwhile (signed
// out, by this or another replica) it returns ErrNoSession and the session
// stays ended.
func (m *Manager) Save(ctx context.Context, s *Session) error {
	return m.write(ctx, s, false)
}

func (m *Manager) write(ctx context.Context, s *Session, create bool) error {
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
	if create {
		// A fresh random id: the key cannot be taken.
		return m.store.Add(ctx, s.ticket.storeKey(), rec, ttl)
	}
	err = m.store.Replace(ctx, s.ticket.storeKey(), rec, ttl)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return ErrNoSession
	}
	return err
}

// Load returns the session the request's cookie names. It returns
// ErrNoSession when there is none, and another error when the store could
// not answer (the caller must then fail closed). A request carrying more
// than one cookie of the session's name (whatever their path or domain:
// the browser does not say) carries none: a cookie planted by a sibling
// domain must never choose whose session a request runs as.
func (m *Manager) Load(ctx context.Context, r *http.Request) (*Session, error) {
	value, n := CookieValue(r, m.cfg.CookieName)
	if n != 1 {
		return nil, ErrNoSession
	}
	// A cookie seen before needs no parsing: its entry holds the ticket.
	cached, hit := m.opened.Get(value)
	t := cached.session.ticket
	if !hit {
		var err error
		if t, err = parseTicket(value); err != nil {
			return nil, ErrNoSession
		}
	}
	return m.load(ctx, value, t, cached, hit)
}

// CookieValue returns the value of the cookie called name (surrounding
// double quotes removed) and how many cookies of that name r's Cookie
// headers carry, counting any whose value Go's parser would drop. Callers
// must treat n != 1 as no cookie: a sibling domain may have planted a
// second one. It reads the headers in place, without parsing every
// cookie. Load and the handoff's binding check both use it.
func CookieValue(r *http.Request, name string) (value string, n int) {
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			k, v, _ := strings.Cut(part, "=")
			if strings.TrimSpace(k) != name {
				continue
			}
			n++
			v = strings.TrimSpace(v)
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			value = v
		}
	}
	return value, n
}

// load reads the session of ticket t (the cookie value is the cache key;
// cached is its entry when hit).
func (m *Manager) load(ctx context.Context, value string, t ticket, cached openEntry, hit bool) (*Session, error) {
	// The session, its user's generation and, when it has one, its logout
	// record, in one round trip.
	// GetFew, not GetMulti: no map and, from the memory store, no copies
	// (the records are only read, never modified).
	sessionKey, logoutKey := t.storeKey(), t.names.logoutKey
	recs, err := sessionstore.GetFew(ctx, m.store, [sessionstore.MaxFew]string{sessionKey, t.generationKey(), logoutKey})
	if err != nil {
		return nil, fmt.Errorf("session store: %w", err)
	}
	rec, gen, logoutRec := recs[0], recs[1], recs[2]
	if rec == nil {
		return nil, ErrNoSession
	}
	s, ok := m.open(value, t, rec, cached, hit)
	if !ok {
		// Corrupt, foreign or swapped data is no session, never a crash.
		return nil, ErrNoSession
	}
	now := m.now()
	if m.remaining(s) <= 0 {
		_ = m.store.Delete(ctx, sessionKey)
		return nil, ErrNoSession
	}
	// The session lives only while its generation is the user's current
	// one: "sign out everywhere" replaced it, and a generation that cannot
	// be found (evicted, or its node gone) ends the session too.
	if gen == nil || s.Generation == "" || string(gen) != s.Generation {
		_ = m.store.Delete(ctx, sessionKey)
		return nil, ErrNoSession
	}
	// Likewise its provider session, when the provider can end it (open
	// checked that the ticket names this session's own record).
	if s.Logout != "" {
		if logoutRec == nil || logoutKey == "" || string(logoutRec) != s.Logout {
			_ = m.store.Delete(ctx, sessionKey)
			return nil, ErrNoSession
		}
	}
	// Refresh the idle clock only now and then, so a busy session does not
	// cost a store write per request. The idle timeout is thus enforced to
	// within touchEvery. The write only replaces the record: a sign-out
	// that deleted it meanwhile wins. When the session is due for
	// revalidation the write is left to it (it sets the clock too): two
	// writers of one record would let the older provider token win.
	due := m.cfg.RevalidateInterval > 0 && now.Sub(s.ValidatedAt) >= m.cfg.RevalidateInterval
	if !due && now.Sub(s.LastSeen) >= m.touchEvery() {
		s.LastSeen = now
		switch err := m.Save(ctx, s); {
		case errors.Is(err, ErrNoSession):
			return nil, ErrNoSession
		case err != nil:
			return nil, fmt.Errorf("session store: %w", err)
		}
		m.noteSeen(ctx, s)
	}
	return s, nil
}

// Delete ends s server-side and, when w is not nil, clears the cookie.
// The cookie is cleared only once the record is gone: when the store
// fails, the browser keeps it, so that trying again can still sign out.
func (m *Manager) Delete(ctx context.Context, w http.ResponseWriter, s *Session) error {
	if s != nil {
		m.opened.Delete(s.ticket.String())
		if err := m.store.Delete(ctx, s.ticket.storeKey()); err != nil {
			return err
		}
	}
	if w != nil {
		m.ClearCookie(w)
	}
	return nil
}

// EndAll ends every session and every issued token of the user id, on
// every replica, by giving the user a new generation: whatever carries an
// earlier one is over from its next use on.
func (m *Manager) EndAll(ctx context.Context, id identity.Identity) error {
	gen, err := newGeneration()
	if err != nil {
		return err
	}
	if err := m.store.Set(ctx, generationKey(id), []byte(gen), generationTTL); err != nil {
		return err
	}
	// Ended already; their records go too, so nothing of them lingers in
	// the store (best effort: the generation is what ends them).
	m.index.deleteAll(ctx, id)
	return nil
}

// noteSeen records when s was last used, for the sessions page of its
// user's other sessions (best effort).
func (m *Manager) noteSeen(ctx context.Context, s *Session) {
	if ttl := m.remaining(s); ttl > 0 {
		_ = m.store.Set(ctx, seenKey(s.ID()), []byte(strconv.FormatInt(s.LastSeen.Unix(), 10)), ttl)
	}
}

// Generations. Each user has one positive record in the store, a random
// generation, and every session and device token records the generation
// it was issued under and must find it, unchanged, to be used. Sign out
// everywhere replaces it. Nothing depends on a revocation record being
// read: a generation that cannot be found (evicted, or its key moved to
// another memcached node) ends everything that carried it, so losing a
// record can sign people out but never let anyone back in.
//
// The record is created with Add (never over another) and kept alive with
// Touch (never by writing back a value read earlier, which could undo a
// concurrent sign out everywhere).

// generationTTL is how long a generation lives after the last sign-in or
// token issued under it: longer than any session or token should, so only
// a session or token that outlives it (and fails closed) notices.
const generationTTL = 400 * 24 * time.Hour

// EnsureGeneration returns id's current generation, creating it when
// there is none, and extends its life. A session or token issued now
// records it.
func EnsureGeneration(ctx context.Context, store sessionstore.Store, id identity.Identity) (string, error) {
	return ensureRecord(ctx, store, generationKey(id), generationTTL)
}

// CheckGeneration reports whether gen is still id's current generation:
// nil when it is; ErrNoSession when it was replaced (sign out everywhere),
// cannot be found, or gen is empty (issued before generations existed);
// another error when the store could not answer (fail closed).
func CheckGeneration(ctx context.Context, store sessionstore.Store, id identity.Identity, gen string) error {
	if gen == "" {
		return ErrNoSession
	}
	b, err := store.Get(ctx, generationKey(id))
	if errors.Is(err, sessionstore.ErrNotFound) {
		return ErrNoSession
	}
	if err != nil {
		return err
	}
	if string(b) != gen {
		return ErrNoSession
	}
	return nil
}

// KeepGeneration is CheckGeneration for a grant made earlier (a device
// approval) that is being turned into something longer-lived now: it also
// extends the generation's life.
func KeepGeneration(ctx context.Context, store sessionstore.Store, id identity.Identity, gen string) error {
	if err := CheckGeneration(ctx, store, id, gen); err != nil {
		return err
	}
	err := store.Touch(ctx, generationKey(id), generationTTL)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return ErrNoSession
	}
	return err
}

func newGeneration() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func generationKey(id identity.Identity) string { return generationKeyOf(userHash(id)) }

// generationKeyOf is where the generation record of the user with hash h
// lives.
func generationKeyOf(h [userLen]byte) string {
	return "u2:" + base64.RawURLEncoding.EncodeToString(h[:])
}

// userHash names a user (provider and subject, or the linked account)
// without saying who it is.
func userHash(id identity.Identity) [userLen]byte {
	if id.Account != "" {
		return sha256.Sum256([]byte("gatehouse account generation v2\x00" + id.Account))
	}
	return sha256.Sum256([]byte("gatehouse user generation v2\x00" + id.Provider + "\x00" + id.Subject))
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
