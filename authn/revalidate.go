package authn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/session"
)

// ErrRevoked means the provider no longer accepts the session's token or
// no longer knows the user: the session must end.
var ErrRevoked = errors.New("provider token revoked or user gone")

// ErrProviderDown means membership could not be re-checked for longer
// than the grace allows: nobody gets through until the provider answers.
var ErrProviderDown = errors.New("provider unavailable for revalidation")

func tokenFrom(t *oauth2.Token) *session.ProviderToken {
	return &session.ProviderToken{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, Expiry: t.Expiry}
}

// refreshIfExpired returns tok, refreshed first when it has expired and a
// refresh token exists. A refresh the provider refuses means revoked.
func refreshIfExpired(ctx context.Context, cfg *oauth2.Config, tok *session.ProviderToken) (*session.ProviderToken, error) {
	if tok.Expiry.IsZero() || time.Until(tok.Expiry) > 10*time.Second {
		return tok, nil
	}
	if tok.RefreshToken == "" {
		return nil, ErrRevoked
	}
	fresh, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		return nil, classifyTokenError(err)
	}
	out := tokenFrom(fresh)
	if out.RefreshToken == "" {
		out.RefreshToken = tok.RefreshToken // providers may keep the old one valid
	}
	return out, nil
}

// classifyTokenError tells a refused token (revoked) from an outage.
func classifyTokenError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode >= 400 && re.Response.StatusCode < 500 {
		return ErrRevoked
	}
	return providerUnavailable(fmt.Errorf("token refresh: %w", redactURLError(err)))
}

// Revalidator keeps a session's authorization true while it lives: every
// interval it asks the provider again who the user is and what they belong
// to. A provider that cannot answer is given one more interval of grace,
// after which nobody gets through until it answers.
type Revalidator struct {
	login    *Login
	sessions *session.Manager
	interval time.Duration
	now      func() time.Time

	mu       sync.Mutex
	inFlight map[string]*revalidation
	retryAt  map[string]time.Time // sessions in grace: no new attempt before then
	// fresh holds the latest revalidated copy of each session, so requests
	// that loaded the record just before it was saved do not ask again.
	fresh map[string]*session.Session
}

// retryEvery spaces attempts for a session whose provider is failing, so
// an outage does not turn every request into a provider call.
const retryEvery = 10 * time.Second

type revalidation struct {
	done chan struct{}
	s    *session.Session
	err  error
}

// NewRevalidator returns a Revalidator; now may be nil (time.Now).
func NewRevalidator(login *Login, sessions *session.Manager, interval time.Duration, now func() time.Time) *Revalidator {
	if now == nil {
		now = time.Now
	}
	return &Revalidator{login: login, sessions: sessions, interval: interval, now: now, inFlight: map[string]*revalidation{}, retryAt: map[string]time.Time{}, fresh: map[string]*session.Session{}}
}

// Check returns s, or the session as re-read from the provider when its
// last check is older than the interval. It returns ErrRevoked when the
// session must end and ErrProviderDown when it must wait. Concurrent calls
// for one session share a single provider round trip.
func (v *Revalidator) Check(ctx context.Context, s *session.Session) (*session.Session, error) {
	if v.now().Sub(s.ValidatedAt) < v.interval {
		return s, nil
	}
	v.mu.Lock()
	if f, ok := v.fresh[s.ID()]; ok && v.now().Sub(f.ValidatedAt) < v.interval {
		v.mu.Unlock()
		return f, nil
	}
	if t, ok := v.retryAt[s.ID()]; ok && v.now().Before(t) && v.now().Sub(s.ValidatedAt) < 2*v.interval {
		v.mu.Unlock()
		return s, nil
	}
	if rv, ok := v.inFlight[s.ID()]; ok {
		v.mu.Unlock()
		select {
		case <-rv.done:
			return rv.s, rv.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	rv := &revalidation{done: make(chan struct{})}
	v.inFlight[s.ID()] = rv
	v.mu.Unlock()

	rv.s, rv.err = v.revalidate(context.WithoutCancel(ctx), s)
	v.mu.Lock()
	delete(v.inFlight, s.ID())
	if rv.err == nil && rv.s.ValidatedAt.Before(v.now().Add(-v.interval)) {
		// Kept in grace: remember not to ask again for a while. The map
		// is bounded by dropping it whole when it grows large.
		if len(v.retryAt) > 100000 {
			v.retryAt = map[string]time.Time{}
		}
		v.retryAt[s.ID()] = v.now().Add(retryEvery)
	} else {
		delete(v.retryAt, s.ID())
	}
	delete(v.fresh, s.ID())
	if rv.err == nil && !rv.s.ValidatedAt.Before(v.now().Add(-v.interval)) {
		if len(v.fresh) > 100000 {
			v.fresh = map[string]*session.Session{}
		}
		v.fresh[s.ID()] = rv.s
	}
	v.mu.Unlock()
	close(rv.done)
	return rv.s, rv.err
}

func (v *Revalidator) revalidate(ctx context.Context, s *session.Session) (*session.Session, error) {
	p, ok := v.login.Provider(s.Identity.Provider)
	if !ok {
		return nil, ErrRevoked
	}
	id, tok, err := p.Revalidate(ctx, s.Token)
	if err == nil {
		id = v.login.link(id)
	}
	if err == nil && (id.Subject != s.Identity.Subject || id.Account != s.Identity.Account) {
		// The provider now speaks of someone else (OIDC Core §12.2: a
		// refreshed ID token keeps the subject), or the address that
		// linked the account changed or lost its verification: the
		// session ends, as for any revocation, on the server too.
		err = ErrRevoked
	}
	now := v.now()
	switch {
	case err == nil:
		s.Identity, s.Token, s.ValidatedAt, s.LastSeen = id, tok, now, now
		if err := v.sessions.Save(ctx, s); err != nil {
			if errors.Is(err, session.ErrNoSession) {
				// Signed out while the provider was asked: it stays ended.
				return nil, ErrRevoked
			}
			return nil, fmt.Errorf("saving revalidated session: %w", err)
		}
		v.login.log.Info("session revalidated", "event", "revalidate", "provider", p.Name(), "user", id.User, "sid", s.ID())
		return s, nil
	case errors.Is(err, ErrRevoked):
		v.login.log.Info("session revoked by provider", "event", "revalidate", "provider", p.Name(),
			"user", s.Identity.User, "sid", s.ID(), "result", "revoked")
		_ = v.sessions.Delete(ctx, nil, s)
		return nil, ErrRevoked
	}
	v.login.log.Warn("revalidation failed", "event", "revalidate", "provider", p.Name(),
		"user", s.Identity.User, "sid", s.ID(), "err", err)
	if now.Sub(s.ValidatedAt) < 2*v.interval {
		return s, nil // one more interval of grace
	}
	return nil, ErrProviderDown
}
