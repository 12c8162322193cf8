package session

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// Back-channel logout. A provider's logout token names its own session
// (sid) or its user (sub), never a Gatehouse session. So a session from a
// provider that may send one is bound at sign-in to a record of the
// shared store, as every session is bound to its user's generation: the
// record of its provider session (sid), or, when the ID token had no sid,
// of its subject at the provider. The record holds a random value the
// session keeps; Load reads the record with the session (same round
// trip) and the session lives only while the record is there and
// unchanged. A logout deletes or replaces the record. A record that is
// lost (evicted, its node gone) ends its sessions: losing a record can
// sign people out, never keep them in, and nothing grows with the number
// of sign-ins. The cookie carries the record's name as a hint, checked
// against the session it opens (see open), like the generation hint.

// logoutTTLMargin keeps a logout record longer than any session bound to
// it: it is created or touched at each sign-in, for the session lifetime
// and this much more.
const logoutTTLMargin = time.Hour

// CreateOption changes how Create starts a session.
type CreateOption func(*createOptions)

type createOptions struct {
	backchannel         bool
	clientIP, userAgent string
}

// WithClient records where the session was begun from (the client's
// address and User-Agent), for the sessions page.
func WithClient(ip, userAgent string) CreateOption {
	return func(o *createOptions) { o.clientIP, o.userAgent = ip, userAgent }
}

// WithBackchannelLogout binds the new session to its provider session, so
// that EndProviderSessions can end it: for providers that send OpenID
// Connect Back-Channel Logout tokens.
func WithBackchannelLogout() CreateOption { return func(o *createOptions) { o.backchannel = true } }

// logoutHash names the logout record of provider's session sid, or, with
// sid empty, of provider's user subject.
func logoutHash(provider, sid, subject string) [logoutLen]byte {
	if sid != "" {
		return sha256.Sum256([]byte("gatehouse logout sid v2\x00" + provider + "\x00" + sid))
	}
	return sha256.Sum256([]byte("gatehouse logout sub v2\x00" + provider + "\x00" + subject))
}

func logoutKeyOf(h [logoutLen]byte) string {
	return "bl2:" + base64.RawURLEncoding.EncodeToString(h[:])
}

// expectedLogout is the logout hint s's ticket must carry: zero for a
// session that is not bound to a logout record.
func expectedLogout(s *Session) [logoutLen]byte {
	if s.Logout == "" {
		return [logoutLen]byte{}
	}
	sid := ""
	if s.Token != nil {
		sid = s.Token.SID
	}
	return logoutHash(s.Identity.Provider, sid, s.Identity.Subject)
}

// linkedKey names the record that tells which linked account (see
// identity.LinkByEmail) provider's subject signed in as, so that a logout
// by subject can end that account's sessions.
func linkedKey(provider, subject string) string {
	h := sha256.Sum256([]byte("gatehouse logout account v1\x00" + provider + "\x00" + subject))
	return "bu1:" + base64.RawURLEncoding.EncodeToString(h[:])
}

// bindLogout creates (or joins) the logout record for a new session and
// returns its value and the ticket hint.
func (m *Manager) bindLogout(ctx context.Context, id identity.Identity, tok *ProviderToken) (string, [logoutLen]byte, error) {
	sid := ""
	if tok != nil {
		sid = tok.SID
	}
	h := logoutHash(id.Provider, sid, id.Subject)
	ttl := m.cfg.Lifetime + logoutTTLMargin
	v, err := ensureRecord(ctx, m.store, logoutKeyOf(h), ttl)
	if err != nil {
		return "", h, err
	}
	if id.Account != "" {
		if err := m.store.Set(ctx, linkedKey(id.Provider, id.Subject), []byte(id.Account), ttl); err != nil {
			return "", h, err
		}
	}
	return v, h, nil
}

// EndProviderSessions ends what a back-channel logout names. With sid,
// the sessions begun under that provider session end; so do the sessions
// of subject begun without a provider session id (the token cannot name
// them otherwise). With subject alone, every session and token of that
// user ends (as "sign out everywhere" does), whatever provider session
// they came from.
func (m *Manager) EndProviderSessions(ctx context.Context, provider, sid, subject string) error {
	if sid != "" {
		if err := m.store.Delete(ctx, logoutKeyOf(logoutHash(provider, sid, ""))); err != nil {
			return err
		}
	}
	if subject == "" {
		return nil
	}
	// Replaced, not deleted, so that a sign-in racing this logout cannot
	// find the old value still there; a new value is as final as none.
	fresh, err := newGeneration()
	if err != nil {
		return err
	}
	if err := m.store.Set(ctx, logoutKeyOf(logoutHash(provider, "", subject)), []byte(fresh), m.cfg.Lifetime+logoutTTLMargin); err != nil {
		return err
	}
	if sid != "" {
		return nil
	}
	id := identity.Identity{Provider: provider, Subject: subject}
	if err := m.EndAll(ctx, id); err != nil {
		return err
	}
	account, err := m.store.Get(ctx, linkedKey(provider, subject))
	switch {
	case errors.Is(err, sessionstore.ErrNotFound):
		return nil
	case err != nil:
		return err
	}
	id.Account = string(account)
	return m.EndAll(ctx, id)
}

// ensureRecord returns the value of the record under key, creating a
// random one when there is none, and extends its life to ttl. Created
// with Add (never over another) and kept alive with Touch (never by
// writing back a value read earlier, which could undo a concurrent
// replacement).
func ensureRecord(ctx context.Context, store sessionstore.Store, key string, ttl time.Duration) (string, error) {
	for try := 0; try < 5; try++ {
		b, err := store.Get(ctx, key)
		switch {
		case err == nil:
			switch err := store.Touch(ctx, key, ttl); {
			case err == nil:
				return string(b), nil
			case !errors.Is(err, sessionstore.ErrNotFound):
				return "", err
			}
			// Gone between Get and Touch: start again.
		case errors.Is(err, sessionstore.ErrNotFound):
			v, err := newGeneration()
			if err != nil {
				return "", err
			}
			switch err := store.Add(ctx, key, []byte(v), ttl); {
			case err == nil:
				return v, nil
			case !errors.Is(err, sessionstore.ErrExists):
				return "", err
			}
			// Another sign-in created it first: use theirs.
		default:
			return "", err
		}
	}
	return "", fmt.Errorf("session: the record %s keeps changing", key[:4])
}
