package oauthserver

import (
	"context"
	"crypto/hmac"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/authn"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// Page serves GET and POST device: the signed-in person enters a code,
// sees who asks for what, and approves or denies with an explicit click.
func (d *Device) Page(w http.ResponseWriter, r *http.Request) {
	action := d.prefix + "/device"
	s, err := d.sessions.Load(r.Context(), r)
	if errors.Is(err, session.ErrNoSession) {
		if r.Method != http.MethodGet {
			d.pages.Error(w, http.StatusUnauthorized, "Sign-in required", "Please sign in, then enter the code again.", d.people.SignInURL(action))
			return
		}
		http.Redirect(w, r, d.people.SignInURL(r.URL.RequestURI()), http.StatusFound)
		return
	}
	if err != nil {
		d.pages.Error(w, http.StatusServiceUnavailable, "Service unavailable", "Sessions cannot be checked right now. Please try again.", "")
		return
	}
	// Like any request, the session is re-checked with its provider when
	// due: an approval grants a token, so it must not rest on membership
	// the provider has withdrawn.
	s, err = d.people.Revalidate(r.Context(), s)
	switch {
	case errors.Is(err, authn.ErrRevoked) || errors.Is(err, session.ErrNoSession):
		d.sessions.ClearCookie(w)
		d.pages.Error(w, http.StatusUnauthorized, "Sign-in required",
			"Your sign-in is no longer valid. Please sign in again, then enter the code again.", d.people.SignInURL(action))
		return
	case errors.Is(err, authn.ErrProviderDown):
		w.Header().Set("Retry-After", "30")
		d.pages.Error(w, http.StatusServiceUnavailable, "Sign-in provider unavailable",
			"Your access cannot be confirmed with your sign-in provider right now. Please try again in a moment.", "")
		return
	case err != nil:
		d.log.Error("revalidating session for device approval", "err", err)
		d.pages.Error(w, http.StatusServiceUnavailable, "Service unavailable", "Sessions cannot be checked right now. Please try again.", "")
		return
	}
	// The approver must pass the filters today, not only when they signed in.
	if !d.people.MayApprove(s.Identity) {
		d.pages.Denied(w, "You may not approve devices for this site.", s.Identity.Email, d.prefix+"/sign_in")
		return
	}
	who := s.Identity.DisplayName()
	csrf := s.FormToken(d.csrfKey)
	if r.Method == http.MethodGet {
		code := r.URL.Query().Get("user_code")
		if code == "" {
			d.pages.Device(w, http.StatusOK, pages.DevicePage{Action: action})
			return
		}
		rec, status, msg := d.lookupUserCode(r, s, code)
		if rec == nil {
			d.pages.Device(w, status, pages.DevicePage{Action: action, Error: msg})
			return
		}
		d.pages.Device(w, http.StatusOK, pages.DevicePage{Action: action, Who: who, CSRF: csrf,
			Request: &pages.DeviceRequest{Client: rec.ClientID, Scopes: rec.Scopes, UserCode: rec.UserCode}})
		return
	}
	if !parseForm(w, r) {
		return
	}
	if !hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(csrf)) {
		d.pages.Error(w, http.StatusForbidden, "Request refused", "This form expired or did not come from this site. Please enter the code again.", action)
		return
	}
	approve := r.PostForm.Get("action") == "approve"
	if !approve && r.PostForm.Get("action") != "deny" {
		d.pages.Error(w, http.StatusBadRequest, "Request refused", "Choose approve or deny.", action)
		return
	}
	rec, status, msg := d.lookupUserCode(r, s, r.PostForm.Get("user_code"))
	if rec == nil {
		d.pages.Device(w, status, pages.DevicePage{Action: action, Error: msg})
		return
	}
	dcHash, err := d.deviceHashForUserCode(r.Context(), r.PostForm.Get("user_code"))
	if err != nil {
		d.pages.Device(w, http.StatusBadRequest, pages.DevicePage{Action: action, Error: "That code is not valid (any more)."})
		return
	}
	dec := decision{Approved: approve, Identity: s.Identity, Generation: s.Generation}
	// The first decision wins; a second click (or a racing deny) loses.
	err = d.put(r.Context(), "dd:"+strings.TrimPrefix(dcHash, "dc:"), dec, d.cfg.CodeLifetime+10*time.Minute, true)
	if errors.Is(err, sessionstore.ErrExists) {
		d.pages.Device(w, http.StatusConflict, pages.DevicePage{Action: action, Error: "This request was already approved or denied."})
		return
	}
	if err != nil {
		d.pages.Error(w, http.StatusServiceUnavailable, "Service unavailable", "The decision could not be saved. Please try again.", "")
		return
	}
	_ = d.store.Delete(r.Context(), hashKey("du:", normalizeUserCode(rec.UserCode)))
	result := "denied"
	done := "Device denied"
	if approve {
		result, done = "approved", "Device approved"
	}
	d.metrics.DeviceAuth(result)
	d.log.Info("device "+result, "event", "device_"+result, "user", s.Identity.User, "client", rec.ClientID, "sid", s.ID())
	d.pages.Device(w, http.StatusOK, pages.DevicePage{Action: action, Done: done})
}

// lookupUserCode finds the request behind a user code, counting failures
// per address and per user so codes cannot be guessed.
func (d *Device) lookupUserCode(r *http.Request, s *session.Session, code string) (*deviceRecord, int, string) {
	who := "user:" + s.Identity.Provider + ":" + s.Identity.Subject
	addr := "net:" + clientNetwork(d.clientIP(r))
	if d.limiter.blocked(who) || d.limiter.blocked(addr) {
		return nil, http.StatusTooManyRequests, "Too many wrong codes. Wait a few minutes and try again."
	}
	dcHash, err := d.deviceHashForUserCode(r.Context(), code)
	var rec deviceRecord
	if err == nil {
		err = d.get(r.Context(), dcHash, &rec)
	}
	if err == nil && d.now().Before(rec.ExpiresAt) {
		return &rec, http.StatusOK, ""
	}
	if err != nil && !errors.Is(err, sessionstore.ErrNotFound) && !errors.Is(err, errBadUserCode) {
		return nil, http.StatusServiceUnavailable, "The code cannot be checked right now. Please try again."
	}
	d.limiter.fail(who)
	d.limiter.fail(addr)
	return nil, http.StatusBadRequest, "That code is not valid (any more). Check it and try again."
}

var errBadUserCode = errors.New("malformed user code")

func (d *Device) deviceHashForUserCode(ctx context.Context, code string) (string, error) {
	norm := normalizeUserCode(code)
	if len(norm) != 8 {
		return "", errBadUserCode
	}
	var dcHash string
	if err := d.get(ctx, hashKey("du:", norm), &dcHash); err != nil {
		return "", err
	}
	return dcHash, nil
}
