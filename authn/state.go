package authn

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/sealed"
)

// stateLifetime bounds how long a sign-in may stay in flight.
const stateLifetime = 10 * time.Minute

// loginState is what a sign-in in flight must remember between /start and
// the callback. It travels in its own short-lived cookie, encrypted and
// authenticated with a key derived from session.secret, so one cookie per
// sign-in lets several tabs sign in at once.
type loginState struct {
	State    string    `json:"s"`
	Nonce    string    `json:"n"`
	Verifier string    `json:"v"` // PKCE code_verifier
	Provider string    `json:"p"`
	Redirect string    `json:"r"` // validated rd
	Expires  time.Time `json:"e"`
}

var errBadState = errors.New("sign-in state missing, expired or not ours")

// stateCookies seals and opens loginState cookies.
type stateCookies struct {
	key        [32]byte
	namePrefix string
	path       string
	secure     bool
	now        func() time.Time
}

func newStateCookies(secret, cookieName, callbackPath string, secure bool, now func() time.Time) *stateCookies {
	key := sha256.Sum256([]byte("gatehouse login state v1\x00" + secret))
	return &stateCookies{key: key, namePrefix: StateCookiePrefix(cookieName), path: callbackPath, secure: secure, now: now}
}

// StateCookiePrefix is how sign-in state cookies are named for a session
// cookie name. A __Host- session cookie must have Path=/, which state
// cookies (scoped to the callback path) cannot; they become __Secure-.
func StateCookiePrefix(cookieName string) string {
	if rest, ok := strings.CutPrefix(cookieName, "__Host-"); ok {
		return "__Secure-" + rest + "_state_"
	}
	return cookieName + "_state_"
}

func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func newLoginState(provider, redirect string, now time.Time) *loginState {
	return &loginState{
		State:    randomToken(32),
		Nonce:    randomToken(32),
		Verifier: randomToken(48),
		Provider: provider,
		Redirect: redirect,
		Expires:  now.Add(stateLifetime),
	}
}

// cookieName is derived from the state so each sign-in has its own cookie.
func (sc *stateCookies) cookieName(state string) string {
	return sc.namePrefix + state[:12]
}

// maxInFlight bounds sign-in state cookies per browser. Past it, the old
// ones are dropped: otherwise a page that keeps sending a browser to
// /start could pile up cookies until its requests grow too large to serve.
const maxInFlight = 8

// prune expires the state cookies r carries when there are too many.
func (sc *stateCookies) prune(w http.ResponseWriter, r *http.Request) {
	var names []string
	for _, c := range r.Cookies() {
		if strings.HasPrefix(c.Name, sc.namePrefix) {
			names = append(names, c.Name)
		}
	}
	if len(names) < maxInFlight {
		return
	}
	for _, n := range names {
		http.SetCookie(w, &http.Cookie{Name: n, Path: sc.path, MaxAge: -1, Secure: sc.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	}
}

func (sc *stateCookies) set(w http.ResponseWriter, st *loginState) {
	plain, _ := json.Marshal(st)
	record, err := sealed.Seal(&sc.key, []byte(st.State), plain)
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	http.SetCookie(w, &http.Cookie{
		Name: sc.cookieName(st.State), Value: base64.RawURLEncoding.EncodeToString(record),
		Path: sc.path, MaxAge: int(stateLifetime / time.Second),
		Secure: sc.secure, HttpOnly: true,
		// Lax: the callback is a top-level navigation from the provider.
		SameSite: http.SameSiteLaxMode,
	})
}

// take finds, opens and clears the cookie for the state the provider
// returned. The state is bound in as associated data and compared in
// constant time.
func (sc *stateCookies) take(w http.ResponseWriter, r *http.Request, state string) (*loginState, error) {
	if len(state) < 32 || len(state) > 128 {
		return nil, errBadState
	}
	name := sc.cookieName(state)
	c, err := r.Cookie(name)
	if err != nil {
		return nil, errBadState
	}
	http.SetCookie(w, &http.Cookie{Name: name, Path: sc.path, MaxAge: -1, Secure: sc.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	record, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		return nil, errBadState
	}
	plain, err := sealed.Open(&sc.key, []byte(state), record)
	if err != nil {
		return nil, errBadState
	}
	var st loginState
	if err := json.Unmarshal(plain, &st); err != nil {
		return nil, errBadState
	}
	if subtle.ConstantTimeCompare([]byte(st.State), []byte(state)) != 1 || !sc.now().Before(st.Expires) {
		return nil, errBadState
	}
	return &st, nil
}
