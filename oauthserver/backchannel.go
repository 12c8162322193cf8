package oauthserver

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/authn"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// LogoutVerifier checks one provider's logout tokens (authn.OIDC).
type LogoutVerifier interface {
	VerifyLogoutToken(ctx context.Context, raw string, now time.Time) (authn.LogoutClaims, error)
}

// SessionEnder ends what a logout token names (session.Manager).
type SessionEnder interface {
	EndProviderSessions(ctx context.Context, provider, sid, subject string) error
}

// BackchannelConfig gathers what a back-channel logout receiver needs.
type BackchannelConfig struct {
	Provider string // the OIDC provider's name under auth.oidc
	Verifier LogoutVerifier
	Sessions SessionEnder
	Store    sessionstore.Store // remembers spent jti values, shared by replicas
	Logger   *slog.Logger
	Now      func() time.Time // nil: time.Now
}

// BackchannelLogout receives OpenID Connect Back-Channel Logout 1.0
// requests for one provider: POST logout_token=<JWT>. A token that
// verifies ends the sessions it names, in the shared store, so on every
// replica at once; each jti is accepted once (a captured token replayed
// later must not end sessions begun since). Answers: 200 when done, 400
// {"error":"invalid_request"} for a token refused (§2.8), 503 when the
// store or the provider's keys cannot be had (the provider may retry),
// always no-store.
func BackchannelLogout(c BackchannelConfig) http.Handler {
	if c.Now == nil {
		c.Now = time.Now
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			pages.JSONError(w, http.StatusBadRequest, "invalid_request", "the request body is not a form")
			return
		}
		raw := r.PostForm.Get("logout_token")
		if raw == "" || len(r.PostForm["logout_token"]) != 1 {
			pages.JSONError(w, http.StatusBadRequest, "invalid_request", "exactly one logout_token is required")
			return
		}
		ctx := r.Context()
		now := c.Now()
		claims, err := c.Verifier.VerifyLogoutToken(ctx, raw, now)
		if errors.Is(err, authn.ErrKeysUnavailable) {
			// Not the token's fault: the provider retries a 5xx.
			c.unavailable(w, err)
			return
		}
		if err != nil {
			c.Logger.Warn("back-channel logout refused", "event", "backchannel_logout", "provider", c.Provider,
				"result", "invalid", "err", err)
			pages.JSONError(w, http.StatusBadRequest, "invalid_request", "the logout token was refused")
			return
		}
		// Work on even when the provider hangs up: a half-done logout
		// would leave sessions alive.
		ctx = context.WithoutCancel(ctx)
		spent := spentKey(c.Provider, claims.JTI)
		switch _, err := c.Store.Get(ctx, spent); {
		case err == nil:
			c.Logger.Warn("back-channel logout refused", "event", "backchannel_logout", "provider", c.Provider, "result", "replayed")
			pages.JSONError(w, http.StatusBadRequest, "invalid_request", "the logout token was used already")
			return
		case !errors.Is(err, sessionstore.ErrNotFound):
			c.unavailable(w, err)
			return
		}
		if err := c.Sessions.EndProviderSessions(ctx, c.Provider, claims.SID, claims.Subject); err != nil {
			c.unavailable(w, err)
			return
		}
		// Spent only once the sessions ended, so that a retry after a
		// failure is not taken for a replay. Two copies racing here both
		// end the same sessions, which is harmless; a copy replayed later
		// (after new sign-ins) finds the jti spent.
		if err := c.Store.Add(ctx, spent, []byte{1}, claims.Until.Sub(now)+time.Minute); err != nil && !errors.Is(err, sessionstore.ErrExists) {
			c.unavailable(w, err)
			return
		}
		by := "sub"
		if claims.SID != "" {
			by = "sid"
		}
		c.Logger.Info("back-channel logout", "event", "backchannel_logout", "provider", c.Provider, "result", "ok", "by", by)
		w.WriteHeader(http.StatusOK)
	})
}

func (c BackchannelConfig) unavailable(w http.ResponseWriter, err error) {
	c.Logger.Error("back-channel logout failed", "event", "backchannel_logout", "provider", c.Provider, "result", "store_error", "err", err)
	w.Header().Set("Retry-After", "5")
	pages.JSONError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the session store is unavailable")
}

// spentKey names the record that marks a logout token's jti as used.
func spentKey(provider, jti string) string {
	h := sha256.Sum256([]byte("gatehouse logout jti v1\x00" + provider + "\x00" + jti))
	return "bj1:" + base64.RawURLEncoding.EncodeToString(h[:])
}
