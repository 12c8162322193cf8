package proxy

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/gatehouse/gatehouse/oauthserver/workload"
	"github.com/gatehouse/gatehouse/pages"
)

// authorizeWorkload authenticates by a bearer JWT from one of the trusted
// workload issuers (auth.jwt_issuers) alone: the token's issuer's rules
// and scopes, then the route's policies, as for any machine token. The
// issuer's claim rules play the part a provider's filters play for people.
func (h *Handler) authorizeWorkload(w http.ResponseWriter, r *http.Request, raw string, tgt target) (*forwarded, bool) {
	res, err := h.o.Workload.Verify(r.Context(), raw)
	var refused *workload.Error
	switch {
	case errors.As(err, &refused) && refused.Status == http.StatusForbidden:
		h.o.Metrics.Denied("claims")
		h.o.Logger.Info("request denied", "event", "authz", "reason", "claims", "rule", refused.Rule, "path", tgt.path.Decoded)
		ruleError(w, refused.Rule, refused.Description)
		return nil, false
	case errors.As(err, &refused):
		// Logged, never the token: forged tokens should leave a trace.
		h.o.Logger.Info("workload token refused", "event", "authn", "reason", refused.Description, "path", tgt.path.Decoded)
		bearerError(w, http.StatusUnauthorized, "invalid_token", refused.Description)
		return nil, false
	case err != nil:
		// The issuer's keys cannot be had: nobody is let through.
		h.o.Logger.Error("workload issuer unavailable", "err", err)
		w.Header().Set("Retry-After", "5")
		pages.JSONError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the token's issuer cannot be reached to check it")
		return nil, false
	}
	outOfScope := func(w http.ResponseWriter) { ruleError(w, "scopes", "the token's scopes do not reach this request") }
	if !h.bearerMayPass(w, tgt, res.Identity, res.Scopes, true, outOfScope) {
		return nil, false
	}
	return &forwarded{identity: res.Identity, sid: res.TokenID, cacheKey: "j|" + res.TokenID, bearer: true, until: res.Expiry}, true
}

// ruleError is the 403 of a workload token that misses a rule: the JSON
// names the rule ("claims.repository", "scopes"), so whoever set up the CI
// job can tell which one.
func ruleError(w http.ResponseWriter, rule, description string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse", error="insufficient_scope"`)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	pages.NoStore(h)
	w.WriteHeader(http.StatusForbidden)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": "forbidden", "error_description": description, "rule": rule})
}
