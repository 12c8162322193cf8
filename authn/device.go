package authn

import (
	"container/list"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
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
	login    *Login
	pages    *pages.Renderer
	key      [32]byte // seals device records; derived from session.secret
	csrfKey  []byte
	log      *slog.Logger
	metrics  *metrics.Metrics
	now      func() time.Time
	revalid  *Revalidator
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
	Login    *Login
	Pages    *pages.Renderer
	Secret   string
	Logger   *slog.Logger
	Metrics  *metrics.Metrics
	Now      func() time.Time
	// ClientIP tells clients apart for rate limits; nil: the TCP peer.
	ClientIP func(*http.Request) string
	// Revalidator re-checks the approving session with its provider, as
	// for any request; required. Pass the proxy's, so both share its
	// provider round trips.
	Revalidator *Revalidator
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
	if c.Revalidator == nil {
		panic("authn: DeviceConfig.Revalidator is required")
	}
	d := &Device{
		revalid:  c.Revalidator,
		clientIP: c.ClientIP,
		cfg:      c.Flow, store: c.Store, tokens: c.Tokens, sessions: c.Sessions, login: c.Login, pages: c.Pages,
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
	deviceCode := randomToken(32)
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
	verify := strings.TrimSuffix(d.login.public.String(), "/") + d.login.prefix + "/device"
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

// Page serves GET and POST device: the signed-in person enters a code,
// sees who asks for what, and approves or denies with an explicit click.
func (d *Device) Page(w http.ResponseWriter, r *http.Request) {
	action := d.login.prefix + "/device"
	s, err := d.sessions.Load(r.Context(), r)
	if errors.Is(err, session.ErrNoSession) {
		if r.Method != http.MethodGet {
			d.pages.Error(w, http.StatusUnauthorized, "Sign-in required", "Please sign in, then enter the code again.", d.login.SignInURL(action))
			return
		}
		http.Redirect(w, r, d.login.SignInURL(r.URL.RequestURI()), http.StatusFound)
		return
	}
	if err != nil {
		d.pages.Error(w, http.StatusServiceUnavailable, "Service unavailable", "Sessions cannot be checked right now. Please try again.", "")
		return
	}
	// Like any request, the session is re-checked with its provider when
	// due: an approval grants a token, so it must not rest on membership
	// the provider has withdrawn.
	s, err = d.revalid.Check(r.Context(), s)
	switch {
	case errors.Is(err, ErrRevoked) || errors.Is(err, session.ErrNoSession):
		d.sessions.ClearCookie(w)
		d.pages.Error(w, http.StatusUnauthorized, "Sign-in required",
			"Your sign-in is no longer valid. Please sign in again, then enter the code again.", d.login.SignInURL(action))
		return
	case errors.Is(err, ErrProviderDown):
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
	if p, ok := d.login.Provider(s.Identity.Provider); !ok || !p.Rule().Check(s.Identity).Allowed {
		d.pages.Denied(w, "You may not approve devices for this site.", s.Identity.Email, d.login.prefix+"/sign_in")
		return
	}
	who := displayName(s)
	csrf := csrfToken(d.csrfKey, s)
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

// parseForm reads a bounded form body; on failure it has answered.
func parseForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
		return false
	}
	return true
}

// oauthError writes an RFC 6749 §5.2 error.
func oauthError(w http.ResponseWriter, status int, code, description string) {
	writeOAuthJSON(w, status, map[string]string{"error": code, "error_description": description})
}

func writeOAuthJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func remoteHost(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// clientNetwork is what limits count as one client: an IPv4 address, or
// an IPv6 /64 (one subscriber's prefix: a single host can use any address
// in it).
func clientNetwork(ip string) string { return networkOf(ip, 32, 64) }

// wideNetwork is the site a client is in: an IPv4 /24 or an IPv6 /48, so
// that one attacker with many addresses or /64s (a /48 holds 65 536 of
// them) still meets a cap.
func wideNetwork(ip string) string { return "wide:" + networkOf(ip, 24, 48) }

// networkOf is the prefix of ip of v4 or v6 bits; ip itself when it does
// not parse.
func networkOf(ip string, v4, v6 int) string {
	a, err := netip.ParseAddr(strings.Trim(ip, "[]"))
	if err != nil {
		return ip
	}
	a = a.WithZone("").Unmap()
	bits := v6
	if a.Is4() {
		bits = v4
	}
	p, _ := a.Prefix(bits)
	return p.String()
}

// failureLimiter counts failures per key in a fixed window. It holds at
// most maxKeys keys: when full, it drops keys whose window has passed,
// then the oldest, so a flood of new keys costs bounded memory without
// forgetting every count at once.
type failureLimiter struct {
	mu      sync.Mutex
	max     int
	window  time.Duration
	now     func() time.Time
	maxKeys int
	counts  map[string]*list.Element // of *windowCount
	order   *list.List               // oldest window first
}

type windowCount struct {
	key   string
	start time.Time
	n     int
}

// limiterKeys bounds a failureLimiter's memory.
const limiterKeys = 100000

func newFailureLimiter(max int, window time.Duration, now func() time.Time) *failureLimiter {
	return &failureLimiter{max: max, window: window, now: now, maxKeys: limiterKeys, counts: map[string]*list.Element{}, order: list.New()}
}

func (l *failureLimiter) blocked(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.counts[key]
	if !ok {
		return false
	}
	c := e.Value.(*windowCount)
	return l.now().Sub(c.start) < l.window && c.n >= l.max
}

func (l *failureLimiter) fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if e, ok := l.counts[key]; ok {
		c := e.Value.(*windowCount)
		if now.Sub(c.start) < l.window {
			c.n++
			return
		}
		l.order.Remove(e)
		delete(l.counts, key)
	}
	// New windows go to the back, so the front is always the oldest.
	for l.order.Len() > 0 {
		front := l.order.Front()
		c := front.Value.(*windowCount)
		if now.Sub(c.start) < l.window && l.order.Len() < l.maxKeys {
			break
		}
		l.order.Remove(front)
		delete(l.counts, c.key)
	}
	l.counts[key] = l.order.PushBack(&windowCount{key: key, start: now, n: 1})
}

// pendingCodes caps the device codes issued and not yet done (token
// issued, denied or expired), in total and per client network. It lives
// in each replica's memory.
type pendingCodes struct {
	mu       sync.Mutex
	total    int
	perNet   int
	perWide  int
	now      func() time.Time
	codes    map[string]pendingCode // by device code store key
	byNet    map[string]int
	queue    []string // store keys in issue order: oldest (first to expire) first
	queueOff int
}

type pendingCode struct {
	network, wide string
	expires       time.Time
}

var (
	errTooManyCodes           = errors.New("too many device codes are waiting for approval; try again later")
	errTooManyCodesForNetwork = errors.New("too many device codes are waiting for approval from this network; try again later")
)

func newPendingCodes(total, perNet, perWide int, now func() time.Time) *pendingCodes {
	return &pendingCodes{total: total, perNet: perNet, perWide: perWide, now: now, codes: map[string]pendingCode{}, byNet: map[string]int{}}
}

// reserve counts a new code for a client's network and wider site, or
// refuses it.
func (p *pendingCodes) reserve(network, wide, code string, expires time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expire()
	if len(p.codes) >= p.total {
		return errTooManyCodes
	}
	if p.byNet[network] >= p.perNet || p.byNet[wide] >= p.perWide {
		return errTooManyCodesForNetwork
	}
	p.codes[code] = pendingCode{network: network, wide: wide, expires: expires}
	p.byNet[network]++
	p.byNet[wide]++
	p.queue = append(p.queue, code)
	return nil
}

// release frees the slot of a code that is done.
func (p *pendingCodes) release(code string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop(code)
}

func (p *pendingCodes) drop(code string) {
	c, ok := p.codes[code]
	if !ok {
		return
	}
	delete(p.codes, code)
	for _, n := range []string{c.network, c.wide} {
		if p.byNet[n]--; p.byNet[n] <= 0 {
			delete(p.byNet, n)
		}
	}
}

// expire frees the slots of expired codes; p.mu is held.
func (p *pendingCodes) expire() {
	now := p.now()
	for p.queueOff < len(p.queue) {
		code := p.queue[p.queueOff]
		if c, ok := p.codes[code]; ok && now.Before(c.expires) {
			break
		}
		p.drop(code)
		p.queue[p.queueOff] = ""
		p.queueOff++
	}
	// Compact when the consumed head dominates, or when released codes
	// left the queue much longer than the live set.
	if p.queueOff > len(p.queue)/2 || len(p.queue)-p.queueOff > 2*len(p.codes)+64 {
		live := make([]string, 0, len(p.codes))
		for _, code := range p.queue[p.queueOff:] {
			if _, ok := p.codes[code]; ok {
				live = append(live, code)
			}
		}
		p.queue, p.queueOff = live, 0
	}
}

// Metadata serves RFC 8414 authorization server metadata, so clients can
// discover the device flow's endpoints.
func (d *Device) Metadata(w http.ResponseWriter, r *http.Request) {
	base := strings.TrimSuffix(d.login.public.String(), "/")
	writeOAuthJSON(w, http.StatusOK, map[string]any{
		"issuer":                                     base,
		"device_authorization_endpoint":              base + d.login.prefix + "/device/code",
		"token_endpoint":                             base + d.login.prefix + "/token",
		"revocation_endpoint":                        base + d.login.prefix + "/revoke",
		"grant_types_supported":                      []string{DeviceGrantType},
		"token_endpoint_auth_methods_supported":      []string{"none"},
		"revocation_endpoint_auth_methods_supported": []string{"none"},
		"scopes_supported":                           d.tokens.Scopes().Names(),
		"response_types_supported":                   []string{},
	})
}
