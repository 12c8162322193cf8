package oauthserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/internal/sealed"
	"github.com/gatehouse/gatehouse/metrics"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
	"github.com/gatehouse/gatehouse/tokens"
)

// CLIClientID is the one public client of the device flow (RFC 8628 §5.6:
// a public client has no secret).
const CLIClientID = "gatehouse-cli"

// DeviceGrantType is RFC 8628's grant type.
const DeviceGrantType = "urn:ietf:params:oauth:grant-type:device_code"

// userCodeAlphabet has no vowels (no words) and no look-alike characters
// (RFC 8628 §6.1).
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

// Device is the device authorization flow: code issuance, the page where
// a signed-in person approves, and token polling.
type Device struct {
	cfg      DeviceFlowConfig
	store    sessionstore.Store
	tokens   *tokens.Store
	sessions *session.Manager
	people   People
	public   string // public_url without a trailing slash
	prefix   string // path prefix of Gatehouse's endpoints
	pages    *pages.Renderer
	key      [32]byte // seals device records; derived from session.secret
	csrfKey  []byte
	log      *slog.Logger
	metrics  *metrics.Metrics
	now      func() time.Time
	limiter  *failureLimiter // wrong user codes, per client network and per user
	pending  *pendingCodes   // device codes issued and not yet done, in total and per client network
	clientIP func(*http.Request) string
}

// DeviceConfig gathers what Device depends on.
type DeviceConfig struct {
	Flow     DeviceFlowConfig
	Store    sessionstore.Store
	Tokens   *tokens.Store
	Sessions *session.Manager
	// People answers what the approval page must know about the person
	// approving; required.
	People    People
	PublicURL *url.URL // external base URL
	Prefix    string   // path prefix of Gatehouse's endpoints, e.g. "/oauth2"
	Pages     *pages.Renderer
	Secret    string
	Logger    *slog.Logger
	Metrics   *metrics.Metrics
	Now       func() time.Time
	// ClientIP tells clients apart for rate limits; nil: the TCP peer.
	ClientIP func(*http.Request) string
}

// People is what the device flow needs from the sign-in side (authn).
type People interface {
	// Revalidate re-checks a session with its provider when due, as for
	// any request: an approval grants a token, so it must not rest on
	// membership the provider has withdrawn. Pass the proxy's revalidator
	// (authn.Revalidator), so both share its provider round trips. Its
	// errors are authn's: ErrRevoked, ErrProviderDown, session.ErrNoSession.
	Revalidate(ctx context.Context, s *session.Session) (*session.Session, error)
	// MayApprove reports whether id passes its provider's filters today.
	MayApprove(id identity.Identity) bool
	// SignInURL is where to send a browser to sign in, then on to rd.
	SignInURL(rd string) string
}

// Limits on device codes: POST device/code needs no authentication, and
// every code costs a record in the store until it expires.
const (
	maxPendingCodes           = 50000 // per replica, in total
	maxPendingCodesPerNetwork = 50    // per client IPv4 address or IPv6 /64
	maxPendingCodesPerWideNet = 500   // per IPv4 /24 or IPv6 /48 (one site)
)

// NewDevice builds the device flow.
func NewDevice(c DeviceConfig) *Device {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ClientIP == nil {
		c.ClientIP = remoteHost
	}
	if c.People == nil {
		panic("oauthserver: DeviceConfig.People is required")
	}
	d := &Device{
		people:   c.People,
		public:   strings.TrimSuffix(c.PublicURL.String(), "/"),
		prefix:   c.Prefix,
		clientIP: c.ClientIP,
		cfg:      c.Flow, store: c.Store, tokens: c.Tokens, sessions: c.Sessions, pages: c.Pages,
		key:     sha256.Sum256([]byte("gatehouse device records v1\x00" + c.Secret)),
		csrfKey: []byte("gatehouse device csrf v1\x00" + c.Secret),
		log:     c.Logger, metrics: c.Metrics, now: c.Now,
		limiter: newFailureLimiter(10, 10*time.Minute, c.Now),
		pending: newPendingCodes(maxPendingCodes, maxPendingCodesPerNetwork, maxPendingCodesPerWideNet, c.Now),
	}
	return d
}

// deviceRecord is a device authorization in progress.
type deviceRecord struct {
	ClientID  string    `json:"client_id"`
	Scopes    []string  `json:"scopes"`
	UserCode  string    `json:"user_code"`
	ExpiresAt time.Time `json:"exp"`
}

// decision is what the approver chose; written once, first one wins. An
// approval carries the approving session's generation: the token issued
// at the next poll belongs to it, so sign out everywhere between approval
// and poll ends the grant.
type decision struct {
	Approved   bool              `json:"approved"`
	Identity   identity.Identity `json:"identity"`
	Generation string            `json:"gen,omitempty"`
}

// pollState remembers the polling pace for slow_down.
type pollState struct {
	Last     time.Time     `json:"last"`
	Interval time.Duration `json:"interval"`
}

func hashKey(prefix, secret string) string {
	h := sha256.Sum256([]byte("gatehouse device v1\x00" + secret))
	return prefix + base64.RawURLEncoding.EncodeToString(h[:])
}

// Code serves POST device/code (RFC 8628 §3.1-3.2).
func (d *Device) Code(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) {
		return
	}
	if r.PostForm.Get("client_id") != CLIClientID {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client_id")
		return
	}
	scopes := strings.Fields(r.PostForm.Get("scope"))
	if len(scopes) == 0 && d.tokens.Scopes().Has("read") {
		scopes = []string{"read"}
	}
	if len(scopes) == 0 {
		oauthError(w, http.StatusBadRequest, "invalid_scope", "no scope requested")
		return
	}
	for _, s := range scopes {
		if !d.tokens.Scopes().Has(s) {
			oauthError(w, http.StatusBadRequest, "invalid_scope", "unknown scope "+s)
			return
		}
	}
	deviceCode := randomToken()
	dcKey := hashKey("dc:", deviceCode)
	now := d.now()
	rec := deviceRecord{ClientID: CLIClientID, Scopes: scopes, ExpiresAt: now.Add(d.cfg.CodeLifetime)}
	// Every code costs a record in the store until it expires: neither one
	// client network nor everyone together may hold more than so many.
	ip := d.clientIP(r)
	if err := d.pending.reserve(clientNetwork(ip), wideNetwork(ip), dcKey, rec.ExpiresAt); err != nil {
		w.Header().Set("Retry-After", "60")
		oauthError(w, http.StatusTooManyRequests, "slow_down", err.Error())
		return
	}
	// Keep records a little past expiry so a late poll hears expired_token
	// rather than invalid_grant.
	ttl := d.cfg.CodeLifetime + 10*time.Minute
	var userCode string
	for try := 0; ; try++ {
		userCode = newUserCode()
		err := d.put(r.Context(), hashKey("du:", normalizeUserCode(userCode)), dcKey, ttl, true)
		if err == nil {
			break
		}
		if !errors.Is(err, sessionstore.ErrExists) || try == 5 {
			d.pending.release(dcKey)
			d.storeFailed(w, err)
			return
		}
	}
	rec.UserCode = userCode
	if err := d.put(r.Context(), dcKey, rec, ttl, true); err != nil {
		d.pending.release(dcKey)
		d.storeFailed(w, err)
		return
	}
	verify := d.public + d.prefix + "/device"
	d.metrics.DeviceAuth("issued")
	writeOAuthJSON(w, http.StatusOK, map[string]any{
		"device_code":               deviceCode,
		"user_code":                 userCode,
		"verification_uri":          verify,
		"verification_uri_complete": verify + "?user_code=" + url.QueryEscape(userCode),
		"expires_in":                int(d.cfg.CodeLifetime / time.Second),
		"interval":                  int(d.cfg.PollInterval / time.Second),
	})
}

// Token serves POST token with the device-code grant (RFC 8628 §3.4-3.5).
func (d *Device) Token(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) {
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != DeviceGrantType {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "only the device_code grant is supported")
		return
	}
	if f.Get("client_id") == "" || f.Get("device_code") == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "client_id and device_code are required")
		return
	}
	ctx := r.Context()
	dc := f.Get("device_code")
	dcKey := hashKey("dc:", dc)
	var rec deviceRecord
	switch err := d.get(ctx, dcKey, &rec); {
	case errors.Is(err, sessionstore.ErrNotFound):
		oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown or already used device_code")
		return
	case err != nil:
		d.storeFailed(w, err)
		return
	}
	// A device code answers only the client it was issued to.
	if subtle.ConstantTimeCompare([]byte(f.Get("client_id")), []byte(rec.ClientID)) != 1 {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "device_code was issued to another client")
		return
	}
	now := d.now()
	if !now.Before(rec.ExpiresAt) {
		d.pending.release(dcKey)
		d.metrics.DeviceAuth("expired")
		oauthError(w, http.StatusBadRequest, "expired_token", "the device code expired; start again")
		return
	}
	if slow, err := d.tooFast(ctx, dc, now); err != nil {
		d.storeFailed(w, err)
		return
	} else if slow {
		oauthError(w, http.StatusBadRequest, "slow_down", "polling too fast; wait longer between requests")
		return
	}
	var dec decision
	switch err := d.get(ctx, hashKey("dd:", dc), &dec); {
	case errors.Is(err, sessionstore.ErrNotFound):
		oauthError(w, http.StatusBadRequest, "authorization_pending", "waiting for approval")
		return
	case err != nil:
		d.storeFailed(w, err)
		return
	}
	if !dec.Approved {
		d.pending.release(dcKey)
		oauthError(w, http.StatusBadRequest, "access_denied", "the request was denied")
		return
	}
	if dec.Generation == "" {
		// Approved before approvals carried their session's generation:
		// nothing to bind the token to, so no token.
		d.pending.release(dcKey)
		oauthError(w, http.StatusBadRequest, "access_denied", "the approval is no longer valid; start again")
		return
	}
	// Exactly one poll may turn an approval into a token, however many race.
	if err := d.store.Add(ctx, hashKey("di:", dc), []byte{1}, d.cfg.CodeLifetime+10*time.Minute); err != nil {
		if errors.Is(err, sessionstore.ErrExists) {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "device_code already used")
			return
		}
		d.storeFailed(w, err)
		return
	}
	tok := tokens.Token{
		Identity: dec.Identity, Scopes: rec.Scopes, ClientID: rec.ClientID,
		IssuedAt: now, ExpiresAt: now.Add(d.cfg.TokenLifetime), Generation: dec.Generation,
	}
	raw, err := d.tokens.Issue(ctx, tok)
	if errors.Is(err, tokens.ErrEnded) {
		// Signed out everywhere since the approval: the grant is over.
		_ = d.store.Delete(ctx, dcKey)
		d.pending.release(dcKey)
		d.metrics.DeviceAuth("ended")
		d.log.Info("device approval ended before its token was issued", "event", "token_issue", "user", dec.Identity.User,
			"client", rec.ClientID, "result", "ended")
		oauthError(w, http.StatusBadRequest, "access_denied", "the approval was ended by signing out everywhere; start again")
		return
	}
	if err != nil {
		d.storeFailed(w, err)
		return
	}
	_ = d.store.Delete(ctx, dcKey)
	d.pending.release(dcKey)
	// Listed on the person's sessions page, where it can be ended.
	handle, record := tokens.Names(raw)
	_ = d.sessions.Index().Add(ctx, tok.Identity, session.Entry{
		Handle: handle, Kind: session.KindDevice, Provider: tok.Identity.Provider, Record: record,
		CreatedAt: now, ExpiresAt: tok.ExpiresAt, ClientID: rec.ClientID, Scopes: rec.Scopes,
		ClientIP: d.clientIP(r), UserAgent: r.UserAgent(),
	})
	d.metrics.DeviceAuth("token_issued")
	d.log.Info("token issued", "event", "token_issue", "user", tok.Identity.User, "client", rec.ClientID,
		"scopes", strings.Join(rec.Scopes, " "))
	writeOAuthJSON(w, http.StatusOK, map[string]any{
		"access_token": raw, "token_type": "Bearer",
		"expires_in": int(d.cfg.TokenLifetime / time.Second), "scope": strings.Join(rec.Scopes, " "),
	})
}

// tooFast applies slow_down: a poll sooner than the interval raises the
// interval by 5 seconds (RFC 8628 §3.5).
func (d *Device) tooFast(ctx context.Context, dc string, now time.Time) (bool, error) {
	key := hashKey("dp:", dc)
	var ps pollState
	err := d.get(ctx, key, &ps)
	if err != nil && !errors.Is(err, sessionstore.ErrNotFound) {
		return false, err
	}
	if ps.Interval == 0 {
		ps.Interval = d.cfg.PollInterval
	}
	slow := !ps.Last.IsZero() && now.Sub(ps.Last) < ps.Interval
	if slow {
		ps.Interval += 5 * time.Second
	}
	ps.Last = now
	return slow, d.put(ctx, key, ps, d.cfg.CodeLifetime+10*time.Minute, false)
}

// put seals v under key; with add it fails with ErrExists if key is taken.
func (d *Device) put(ctx context.Context, key string, v any, ttl time.Duration, add bool) error {
	plain, err := json.Marshal(v)
	if err != nil {
		return err
	}
	rec, err := sealed.Seal(&d.key, []byte(key), plain)
	if err != nil {
		return err
	}
	if add {
		return d.store.Add(ctx, key, rec, ttl)
	}
	return d.store.Set(ctx, key, rec, ttl)
}

// get opens the record under key into v. Records that do not open are
// treated as absent.
func (d *Device) get(ctx context.Context, key string, v any) error {
	rec, err := d.store.Get(ctx, key)
	if err != nil {
		return err
	}
	plain, err := sealed.Open(&d.key, []byte(key), rec)
	if err != nil {
		return sessionstore.ErrNotFound
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return sessionstore.ErrNotFound
	}
	return nil
}

func (d *Device) storeFailed(w http.ResponseWriter, err error) {
	d.log.Error("device flow store error", "err", err)
	w.Header().Set("Retry-After", "5")
	oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the session store is unavailable")
}

func newUserCode() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	out := make([]byte, 0, 9)
	for i, c := range b {
		if i == 4 {
			out = append(out, '-')
		}
		// 256 is not a multiple of 20; the bias (under 1%) does not
		// matter for a code that lives minutes and is rate limited.
		out = append(out, userCodeAlphabet[int(c)%len(userCodeAlphabet)])
	}
	return string(out)
}

// normalizeUserCode makes user codes case- and dash-insensitive.
func normalizeUserCode(s string) string {
	var b strings.Builder
	for _, c := range strings.ToUpper(s) {
		if strings.ContainsRune(userCodeAlphabet, c) {
			b.WriteRune(c)
		} else if c != '-' && c != ' ' {
			return "" // a character no code has: not a code
		}
	}
	return b.String()
}
