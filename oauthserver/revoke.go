package oauthserver

import (
	"log/slog"
	"net/http"

	"github.com/gatehouse/gatehouse/tokens"
)

// Revoke serves POST revoke (RFC 7009): the token ends; unknown tokens
// get 200 too, so the endpoint tells nothing about which tokens exist.
// Anyone holding a token may end it, so no client authentication is asked.
func Revoke(store *tokens.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !parseForm(w, r) {
			return
		}
		raw := r.PostForm.Get("token")
		if raw == "" {
			oauthError(w, http.StatusBadRequest, "invalid_request", "token is required")
			return
		}
		if err := store.Revoke(r.Context(), raw); err != nil {
			log.Error("revoking a token", "err", err)
			w.Header().Set("Retry-After", "5")
			oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the session store is unavailable")
			return
		}
		log.Info("token revoked", "event", "token_revoke")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
	}
}
