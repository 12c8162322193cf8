// Package handoff gives a route host a session of its own, without a second
// sign-in, when it cannot read the auth host's cookie (no shared
// session.cookie_domain).
//
// A browser without a session on a route host is bound to it (a random
// nonce in a host-only cookie of that host: "__Host-" when cookies are
// Secure, so that no sibling subdomain can plant one) and sent to /start on
// the auth host with the nonce's hash. When it has a session there, the
// auth host issues a code: random, single-use, valid 60 s, kept in the
// shared session store encrypted under a key derived from the code itself,
// and bound to the route's origin (its canonical host, with public_url's
// scheme and port: never the port or spelling rd came with, which could
// name another service on that host) and to the browser's nonce. The code
// maps to what the route host needs to start its own session (the
// identity, the provider token, the generation, the logout binding and
// when membership was last checked), never to the auth host's ticket. The
// route host's GET <prefix>/handoff takes the code once, checks its host
// and port and the browser's nonce, starts a new session with a host-only
// cookie and redirects to the path first asked for, on that same origin.
package handoff

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/authn"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/internal/hostname"
	"github.com/gatehouse/gatehouse/internal/sealed"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// Lifetime is how long a code may be exchanged after it is issued.
const Lifetime = 60 * time.Second

// bindingLifetime bounds the binding cookie: the browser uses it within
// one round trip to the auth host (a full sign-in in between ends with a
// fresh bounce, and a fresh binding).
const bindingLifetime = 5 * time.Minute

const secretLen = 32 // bytes of a code and of a binding nonce

// Config is what a Handoff is built from.
type Config struct {
	Store     sessionstore.Store // the shared session store: codes work across replicas
	Sessions  *session.Manager
	Pages     *pages.Renderer
	PublicURL *url.URL // the auth host
	Prefix    string   // server.path_prefix
	Cookie    string   // the session cookie's name; the binding cookie's derives from it
	Secure    bool     // session.cookie_secure: the binding cookie is then "__Host-"
	// RouteHost reports whether a host (a port is ignored) is one a route
	// answers: the only hosts a code is issued for.
	RouteHost func(hostport string) bool
	// ClientIP is the client's address for the sessions page; nil: the peer.
	ClientIP func(*http.Request) string
	Logger   *slog.Logger
	Now      func() time.Time // nil: time.Now
}

// Handoff issues codes on the auth host and exchanges them on route hosts.
type Handoff struct {
	c          Config
	publicHost string
	port       string // public_url's port, "" when the scheme's default
	binding    string // the binding cookie's name
}

// New returns a Handoff.
func New(c Config) *Handoff {
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Handoff{c: c, publicHost: hostname.Canonical(c.PublicURL.Host),
		port: effectivePort(c.PublicURL.Port(), c.PublicURL.Scheme), binding: BindingCookieName(c.Cookie, c.Secure)}
}

// BindingCookieName is the name of the binding cookie for session cookie
// cookie. Secure, it is "__Host-" prefixed: a browser accepts such a
// cookie only host-only, Secure and with Path=/, so a sibling subdomain
// (Domain=.example.com) cannot plant one to bind a browser to its own
// code. Plain http set-ups (loopback) cannot use the prefix.
//
// Either name begins, once a leading "__Host-" is removed, with the
// session cookie's state-cookie prefix (authn.StateCookiePrefix without
// "__Secure-"): the proxy keeps every such cookie from upstreams, in both
// directions.
func BindingCookieName(cookie string, secure bool) string {
	prefix := authn.StateCookiePrefix(cookie)
	if !secure {
		return prefix + "handoff"
	}
	return "__Host-" + strings.TrimPrefix(prefix, "__Secure-") + "handoff"
}

// effectivePort is port ("" when none was given) with the scheme's
// default port read as "": ":443" on https is no port at all.
func effectivePort(port, scheme string) string {
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		return ""
	}
	return port
}

// record is what a code stands for. It never holds the auth host's ticket.
type record struct {
	Host        string                 `json:"h"` // canonical host the code is for
	Port        string                 `json:"p"` // and the port (public_url's; "" when the default)
	Redirect    string                 `json:"r"` // the path (and query) first asked for, on Host
	Binding     string                 `json:"b"` // hash of the browser's binding nonce
	Identity    identity.Identity      `json:"i"`
	Token       *session.ProviderToken `json:"t,omitempty"`
	Generation  string                 `json:"g"`
	Logout      string                 `json:"l,omitempty"`
	ValidatedAt time.Time              `json:"v"`
	Expires     time.Time              `json:"e"`
}

// Covers reports whether rd, an absolute URL already accepted as a
// redirect, is on a route host that gets its session by hand-off: any
// route host but the auth host itself, whose cookie it already reads.
func (h *Handoff) Covers(rd string) bool {
	u, err := url.Parse(rd)
	if err != nil || u.Host == "" || u.User != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	host := hostname.Canonical(u.Host)
	return host != "" && host != h.publicHost && h.c.RouteHost(u.Host)
}

// Bind sets a fresh binding nonce in a host-only cookie of the route host
// the response goes to, and returns its hash for /start to bind the code
// to. (The proxy never lets the cookie reach an upstream.)
func (h *Handoff) Bind(w http.ResponseWriter) (string, error) {
	nonce, err := random()
	if err != nil {
		return "", err
	}
	http.SetCookie(w, h.bindingCookie(nonce, int(bindingLifetime/time.Second)))
	return bindingHash(nonce), nil
}

func (h *Handoff) bindingCookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: h.binding, Value: value, Path: "/", MaxAge: maxAge,
		Secure: h.c.Secure, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	}
}

// Issue makes a code for session s to be exchanged on rd's host by the
// browser bound with binding, and returns the URL that exchanges it.
//
// That URL is the route's origin as Gatehouse serves it: rd's canonical
// host name with public_url's scheme and port. rd's own port and spelling
// are never used: another port of the same host may be another service,
// which could read the code from its URL and redeem it with a binding of
// its own. rd's path and query come back only as a path on that origin.
func (h *Handoff) Issue(ctx context.Context, s *session.Session, rd, binding string) (string, error) {
	if !h.Covers(rd) {
		return "", errors.New("handoff: not a route host")
	}
	if b, err := base64.RawURLEncoding.DecodeString(binding); err != nil || len(b) != sha256.Size {
		return "", authn.ErrBadBinding
	}
	u, _ := url.Parse(rd) // parsed by Covers
	code, err := random()
	if err != nil {
		return "", err
	}
	host := hostname.Canonical(u.Host)
	rec := record{
		Host: host, Port: h.port, Redirect: localRedirect(u.String()), Binding: binding,
		Identity: s.Identity, Token: s.Token, Generation: s.Generation, Logout: s.Logout,
		ValidatedAt: s.ValidatedAt, Expires: h.c.Now().Add(Lifetime),
	}
	plain, err := json.Marshal(rec)
	if err != nil {
		return "", err
	}
	k := keysOf(code)
	sealedRec, err := sealed.Seal(&k.seal, []byte(k.record), plain)
	if err != nil {
		return "", err
	}
	// A fresh random code: the key cannot be taken.
	if err := h.c.Store.Add(ctx, k.record, sealedRec, Lifetime); err != nil {
		return "", fmt.Errorf("session store: %w", err)
	}
	return h.origin(host) + h.c.Prefix + "/handoff?code=" + code, nil
}

// origin is scheme://host[:port] of the canonical host name host as
// Gatehouse serves it: public_url's scheme and port.
func (h *Handoff) origin(host string) string {
	hp := host
	if strings.Contains(host, ":") {
		hp = "[" + host + "]"
	}
	if h.port != "" {
		hp = net.JoinHostPort(host, h.port)
	}
	return h.c.PublicURL.Scheme + "://" + hp
}

// keys are the store keys and the encryption key of a code. The store
// sees only hashes, and the record opens only with the code, so whoever
// can read the store can neither read nor redeem a code.
type keys struct {
	record, spent string
	seal          [32]byte
}

func keysOf(code string) keys {
	id := sha256.Sum256([]byte("gatehouse handoff id v1\x00" + code))
	name := base64.RawURLEncoding.EncodeToString(id[:])
	return keys{
		record: "ho1:" + name,
		spent:  "ho1x:" + name,
		seal:   sha256.Sum256([]byte("gatehouse handoff key v1\x00" + code)),
	}
}

func bindingHash(nonce string) string {
	h := sha256.Sum256([]byte("gatehouse handoff binding v1\x00" + nonce))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

func random() (string, error) {
	b := make([]byte, secretLen)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// wellFormed reports whether s could be a code or nonce we made, so that
// anything else is refused without asking the store.
func wellFormed(s string) bool {
	if len(s) != base64.RawURLEncoding.EncodedLen(secretLen) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}
