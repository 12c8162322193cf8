package oauthserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/authn"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
	"github.com/gatehouse/gatehouse/tokens"
)

type deviceFixture struct {
	dev      *Device
	toks     *tokens.Store
	clk      *clock
	cookie   *http.Cookie
	mux      *http.ServeMux
	store    *sessionstore.Memory
	sessions *session.Manager
	prov     *fakePeople
}

// deviceAlice is who the fixture's session belongs to.
var deviceAlice = identity.Identity{Provider: "test", Subject: "1", User: "alice", Email: "alice@example.com", Groups: []string{"ops"}}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakePeople stands in for the sign-in side: a provider whose filter
// lets only group ops in and that, like authn's revalidator, re-reads a
// session older than an hour from a script.
type fakePeople struct {
	clk      *clock
	sessions *session.Manager
	calls    atomic.Int32
	mu       sync.Mutex
	id       identity.Identity
	err      error
}

func (p *fakePeople) set(id identity.Identity, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.id, p.err = id, err
}

func (p *fakePeople) Revalidate(ctx context.Context, s *session.Session) (*session.Session, error) {
	if p.clk.now().Sub(s.ValidatedAt) < time.Hour {
		return s, nil
	}
	p.calls.Add(1)
	p.mu.Lock()
	id, err := p.id, p.err
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	s.Identity, s.ValidatedAt = id, p.clk.now()
	return s, p.sessions.Save(ctx, s)
}

func (p *fakePeople) MayApprove(id identity.Identity) bool { return slices.Contains(id.Groups, "ops") }

func (p *fakePeople) SignInURL(rd string) string { return "/oauth2/sign_in?rd=" + url.QueryEscape(rd) }

func newDeviceFixture(t *testing.T) *deviceFixture {
	t.Helper()
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	store := sessionstore.NewMemory(clk.now)
	sessions := session.NewManager(session.Config{
		CookieName: "_gatehouse", CookieSameSite: "lax", Lifetime: 100 * time.Hour, IdleTimeout: 100 * time.Hour,
		RevalidateInterval: time.Hour,
	}, store, clk.now)
	prov := &fakePeople{clk: clk, sessions: sessions}
	prov.set(deviceAlice, nil)
	public, _ := url.Parse("https://dash.example.com")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pg := pages.New()
	scopes, statics, ps := tokens.Config{Scopes: map[string][]tokens.ScopeRuleConfig{
		"read": {{Methods: []string{"GET"}, Paths: []string{"^/"}}},
	}}.Compile()
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	toks := tokens.NewStore(store, scopes, statics, clk.now)
	dev := NewDevice(DeviceConfig{
		Flow:  DeviceFlowConfig{Enabled: true, CodeLifetime: 10 * time.Minute, PollInterval: 5 * time.Second, TokenLifetime: time.Hour},
		Store: store, Tokens: toks, Sessions: sessions, People: prov, PublicURL: public, Prefix: "/oauth2", Pages: pg,
		Secret: "0123456789abcdef0123456789abcdef", Logger: log, Now: clk.now,
	})
	rec := httptest.NewRecorder()
	if _, err := sessions.Create(context.Background(), rec, deviceAlice, &session.ProviderToken{AccessToken: "at"}); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth2/device/code", dev.Code)
	mux.HandleFunc("POST /oauth2/token", dev.Token)
	mux.HandleFunc("GET /oauth2/device", dev.Page)
	mux.HandleFunc("POST /oauth2/device", dev.Page)
	mux.HandleFunc("POST /oauth2/revoke", Revoke(toks, log))
	return &deviceFixture{dev: dev, toks: toks, clk: clk, cookie: rec.Result().Cookies()[0], mux: mux,
		store: store, sessions: sessions, prov: prov}
}

func (f *deviceFixture) post(path string, form url.Values, withCookie bool) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if withCookie {
		req.AddCookie(f.cookie)
	}
	rec := httptest.NewRecorder()
	f.mux.ServeHTTP(rec, req)
	return rec
}

func (f *deviceFixture) get(path string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.AddCookie(f.cookie)
	rec := httptest.NewRecorder()
	f.mux.ServeHTTP(rec, req)
	return rec
}

type codeResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

func (f *deviceFixture) start(t *testing.T) codeResponse {
	t.Helper()
	rec := f.post("/oauth2/device/code", url.Values{"client_id": {CLIClientID}}, false)
	if rec.Code != http.StatusOK {
		t.Fatalf("device/code: %d %s", rec.Code, rec.Body)
	}
	var cr codeResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &cr); err != nil {
		t.Fatal(err)
	}
	return cr
}

func (f *deviceFixture) poll(dc, client string) (int, map[string]any) {
	rec := f.post("/oauth2/token", url.Values{"grant_type": {DeviceGrantType}, "device_code": {dc}, "client_id": {client}}, false)
	var body map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	return rec.Code, body
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// decide opens the confirmation page for code and clicks a button.
func (f *deviceFixture) decide(t *testing.T, code, action string) *httptest.ResponseRecorder {
	t.Helper()
	page := f.get("/oauth2/device?user_code=" + url.QueryEscape(code))
	if page.Code != http.StatusOK || !strings.Contains(page.Body.String(), `id="approve"`) {
		t.Fatalf("confirmation page: %d %s", page.Code, page.Body)
	}
	if page.Header().Get("X-Frame-Options") != "DENY" {
		t.Fatal("device page can be framed")
	}
	m := csrfField.FindStringSubmatch(page.Body.String())
	if m == nil {
		t.Fatal("no CSRF token on the page")
	}
	return f.post("/oauth2/device", url.Values{"csrf": {m[1]}, "user_code": {code}, "action": {action}}, true)
}

func TestDeviceCodeResponseShape(t *testing.T) {
	f := newDeviceFixture(t)
	cr := f.start(t)
	if !regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`).MatchString(cr.UserCode) {
		t.Fatalf("user_code %q is not XXXX-XXXX from the RFC 8628 alphabet", cr.UserCode)
	}
	if cr.VerificationURI != "https://dash.example.com/oauth2/device" || !strings.HasPrefix(cr.VerificationURIComplete, cr.VerificationURI+"?user_code=") {
		t.Fatalf("verification URIs: %q %q", cr.VerificationURI, cr.VerificationURIComplete)
	}
	if cr.ExpiresIn != 600 || cr.Interval != 5 || len(cr.DeviceCode) < 40 {
		t.Fatalf("response = %+v", cr)
	}
	if rec := f.post("/oauth2/device/code", url.Values{"client_id": {"other"}}, false); rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "invalid_client") {
		t.Fatalf("unknown client: %d %s", rec.Code, rec.Body)
	}
	if rec := f.post("/oauth2/device/code", url.Values{"client_id": {CLIClientID}, "scope": {"admin"}}, false); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "invalid_scope") {
		t.Fatalf("unknown scope: %d %s", rec.Code, rec.Body)
	}
}

func TestDeviceFlowApprovePendingSlowDownAndSingleToken(t *testing.T) {
	f := newDeviceFixture(t)
	cr := f.start(t)
	if code, body := f.poll(cr.DeviceCode, CLIClientID); code != 400 || body["error"] != "authorization_pending" {
		t.Fatalf("first poll: %d %v", code, body)
	}
	if code, body := f.poll(cr.DeviceCode, CLIClientID); code != 400 || body["error"] != "slow_down" {
		t.Fatalf("immediate second poll: %d %v, want slow_down", code, body)
	}
	f.clk.advance(6 * time.Second)
	if code, body := f.poll(cr.DeviceCode, CLIClientID); code != 400 || body["error"] != "slow_down" {
		t.Fatalf("poll after 6s: %d %v, want slow_down (interval raised to 10s)", code, body)
	}
	if code, body := f.poll(cr.DeviceCode, "someone-else"); code != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("other client: %d %v, want invalid_grant", code, body)
	}
	// Case and dashes do not matter when typing the code.
	typed := strings.ToLower(strings.ReplaceAll(cr.UserCode, "-", ""))
	if rec := f.decide(t, typed, "approve"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "Device approved") {
		t.Fatalf("approve: %d %s", rec.Code, rec.Body)
	}
	if rec := f.decide2(cr.UserCode, "deny"); rec.Code == http.StatusOK && strings.Contains(rec.Body.String(), "Device denied") {
		t.Fatal("a second decision replaced the first")
	}

	f.clk.advance(time.Minute)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var issued []string
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := f.poll(cr.DeviceCode, CLIClientID)
			if code == http.StatusOK {
				mu.Lock()
				issued = append(issued, body["access_token"].(string))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(issued) != 1 {
		t.Fatalf("%d tokens issued for one device code, want exactly 1", len(issued))
	}
	if !strings.HasPrefix(issued[0], "gth_") {
		t.Fatalf("token %q lacks the gth_ prefix", issued[0])
	}
	tok, err := f.toks.Lookup(context.Background(), issued[0])
	if err != nil || tok.Identity.Email != "alice@example.com" || tok.Scopes[0] != "read" {
		t.Fatalf("lookup: %+v %v", tok, err)
	}
	// Revocation ends it; unknown tokens get 200 too.
	if rec := f.post("/oauth2/revoke", url.Values{"token": {issued[0]}}, false); rec.Code != http.StatusOK {
		t.Fatalf("revoke: %d", rec.Code)
	}
	if _, err := f.toks.Lookup(context.Background(), issued[0]); err != tokens.ErrUnknown {
		t.Fatalf("revoked token still works: %v", err)
	}
	if rec := f.post("/oauth2/revoke", url.Values{"token": {"gth_nonsense"}}, false); rec.Code != http.StatusOK {
		t.Fatalf("revoke unknown: %d", rec.Code)
	}
}

// decide2 posts a decision with a fresh CSRF token without requiring the
// confirmation page to still offer the buttons.
func (f *deviceFixture) decide2(code, action string) *httptest.ResponseRecorder {
	page := f.get("/oauth2/device?user_code=" + url.QueryEscape(code))
	m := csrfField.FindStringSubmatch(page.Body.String())
	csrf := ""
	if m != nil {
		csrf = m[1]
	}
	return f.post("/oauth2/device", url.Values{"csrf": {csrf}, "user_code": {code}, "action": {action}}, true)
}

func TestDeviceDeniedAndExpired(t *testing.T) {
	f := newDeviceFixture(t)
	denied := f.start(t)
	if rec := f.decide(t, denied.UserCode, "deny"); rec.Code != http.StatusOK {
		t.Fatalf("deny: %d", rec.Code)
	}
	if code, body := f.poll(denied.DeviceCode, CLIClientID); code != 400 || body["error"] != "access_denied" {
		t.Fatalf("after deny: %d %v", code, body)
	}
	late := f.start(t)
	f.clk.advance(11 * time.Minute)
	if code, body := f.poll(late.DeviceCode, CLIClientID); code != 400 || body["error"] != "expired_token" {
		t.Fatalf("after expiry: %d %v", code, body)
	}
	if code, body := f.poll("never-issued", CLIClientID); code != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("unknown device code: %d %v", code, body)
	}
	if rec := f.post("/oauth2/token", url.Values{"grant_type": {"password"}}, false); rec.Code != 400 || !strings.Contains(rec.Body.String(), "unsupported_grant_type") {
		t.Fatalf("wrong grant: %d %s", rec.Code, rec.Body)
	}
}

func TestDevicePageNeedsCSRFSessionAndLimitsGuessing(t *testing.T) {
	f := newDeviceFixture(t)
	cr := f.start(t)
	// Without a session: off to sign in, keeping the code.
	req := httptest.NewRequest(http.MethodGet, "/oauth2/device?user_code="+cr.UserCode, nil)
	rec := httptest.NewRecorder()
	f.mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusFound || !strings.Contains(rec.Header().Get("Location"), "/oauth2/sign_in?rd=") {
		t.Fatalf("anonymous: %d %s", rec.Code, rec.Header().Get("Location"))
	}
	// A forged POST without the CSRF token does nothing.
	if rec := f.post("/oauth2/device", url.Values{"user_code": {cr.UserCode}, "action": {"approve"}}, true); rec.Code != http.StatusForbidden {
		t.Fatalf("no CSRF: %d", rec.Code)
	}
	if code, body := f.poll(cr.DeviceCode, CLIClientID); body["error"] != "authorization_pending" {
		t.Fatalf("after forged POST: %d %v", code, body)
	}
	// Guessing: after 10 wrong codes even the right one is refused for a while.
	for i := 0; i < 10; i++ {
		if rec := f.get("/oauth2/device?user_code=BBBB-BBBB"); rec.Code != http.StatusBadRequest {
			t.Fatalf("wrong code %d: %d", i, rec.Code)
		}
	}
	if rec := f.get("/oauth2/device?user_code=" + cr.UserCode); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("after 10 wrong codes: %d, want 429", rec.Code)
	}
	f.clk.advance(11 * time.Minute)
	if rec := f.get("/oauth2/device?user_code=" + cr.UserCode); rec.Code == http.StatusTooManyRequests {
		t.Fatal("still limited after the window")
	}
}

// postFrom posts a form as the client at remote (host:port).
func (f *deviceFixture) postFrom(remote, path string, form url.Values) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.RemoteAddr = remote
	rec := httptest.NewRecorder()
	f.mux.ServeHTTP(rec, req)
	return rec
}

func (f *deviceFixture) codeFrom(remote string) *httptest.ResponseRecorder {
	return f.postFrom(remote, "/oauth2/device/code", url.Values{"client_id": {CLIClientID}})
}

// Unauthenticated device codes are capped while they wait: per client
// network (an IPv4 address, an IPv6 /64, whatever address in it the
// client uses) and in total.
func TestDeviceCodesPendingAreCappedPerNetwork(t *testing.T) {
	tests := []struct {
		name      string
		from      func(i int) string // the i-th client address of the flood
		sameNet   string             // another address in the same network: refused too
		otherNet  string             // a neighbouring network: still served
		wantLimit int
	}{
		{"IPv4 address", func(int) string { return "192.0.2.1:4000" }, "192.0.2.1:5000", "192.0.2.2:4000", maxPendingCodesPerNetwork},
		{"IPv6 /64, a new address each time", func(i int) string { return fmt.Sprintf("[2001:db8:1:2::%x]:4000", i+1) },
			"[2001:db8:1:2:ffff:ffff:ffff:ffff]:4000", "[2001:db8:1:3::1]:4000", maxPendingCodesPerNetwork},
		{"IPv4-mapped IPv6 counts as IPv4", func(int) string { return "[::ffff:192.0.2.7]:4000" }, "192.0.2.7:4000", "192.0.2.8:4000", maxPendingCodesPerNetwork},
		{"IPv6 /48, a new /64 each time", func(i int) string { return fmt.Sprintf("[2001:db8:5:%x::1]:4000", i+1) },
			"[2001:db8:5:ffff::1]:4000", "[2001:db8:6::1]:4000", maxPendingCodesPerWideNet},
		{"IPv4 /24, a new address each time", func(i int) string { return fmt.Sprintf("198.51.100.%d:4000", i%250+1) },
			"198.51.100.251:4000", "198.51.101.1:4000", maxPendingCodesPerWideNet},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newDeviceFixture(t)
			for i := 0; i < tt.wantLimit; i++ {
				if rec := f.codeFrom(tt.from(i)); rec.Code != http.StatusOK {
					t.Fatalf("code %d: %d %s", i, rec.Code, rec.Body)
				}
			}
			for _, remote := range []string{tt.from(tt.wantLimit), tt.sameNet} {
				rec := f.codeFrom(remote)
				if rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), "slow_down") || rec.Header().Get("Retry-After") == "" {
					t.Fatalf("code %d from %s: %d %s, want 429 slow_down", tt.wantLimit+1, remote, rec.Code, rec.Body)
				}
			}
			if rec := f.codeFrom(tt.otherNet); rec.Code != http.StatusOK {
				t.Fatalf("another network: %d %s", rec.Code, rec.Body)
			}
			// Codes that expire free their slots.
			f.clk.advance(11 * time.Minute)
			if rec := f.codeFrom(tt.sameNet); rec.Code != http.StatusOK {
				t.Fatalf("after the codes expired: %d %s", rec.Code, rec.Body)
			}
		})
	}
}

func TestDeviceCodesPendingAreCappedInTotal(t *testing.T) {
	f := newDeviceFixture(t)
	f.dev.pending.total = 20 // the production cap is 50 000
	for i := 0; i < 20; i++ {
		if rec := f.codeFrom(fmt.Sprintf("198.51.%d.1:4000", i+1)); rec.Code != http.StatusOK {
			t.Fatalf("code %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	if rec := f.codeFrom("203.0.113.1:4000"); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("code over the total cap from a fresh network: %d, want 429", rec.Code)
	}
	f.clk.advance(11 * time.Minute)
	if rec := f.codeFrom("203.0.113.1:4000"); rec.Code != http.StatusOK {
		t.Fatalf("after the codes expired: %d", rec.Code)
	}
}

// A code that is done (token issued, denied) frees its network's slot at
// once; the cap is on codes waiting, not on honest use.
func TestDeviceCodeDoneFreesItsSlot(t *testing.T) {
	f := newDeviceFixture(t)
	var last codeResponse
	for i := 0; i < maxPendingCodesPerNetwork; i++ {
		last = f.start(t) // all from httptest's 192.0.2.1
	}
	if rec := f.codeFrom("192.0.2.1:1234"); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("over the cap: %d", rec.Code)
	}
	if rec := f.decide(t, last.UserCode, "approve"); rec.Code != http.StatusOK {
		t.Fatalf("approve: %d", rec.Code)
	}
	if code, body := f.poll(last.DeviceCode, CLIClientID); code != http.StatusOK {
		t.Fatalf("poll: %d %v", code, body)
	}
	if rec := f.codeFrom("192.0.2.1:1234"); rec.Code != http.StatusOK {
		t.Fatalf("after a code was used: %d %s", rec.Code, rec.Body)
	}
}

// The token carries the approval: it belongs to the approving session's
// generation, so sign out everywhere between approval and the first poll
// ends it before it is issued.
func TestDeviceTokenCarriesTheApproval(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		between   func(t *testing.T, f *deviceFixture) // after approval, before the first poll
		wantToken bool
	}{
		{"nothing", func(*testing.T, *deviceFixture) {}, true},
		{"a new sign-in elsewhere", func(t *testing.T, f *deviceFixture) {
			if _, err := f.sessions.Create(ctx, httptest.NewRecorder(), deviceAlice, nil); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"sign out everywhere", func(t *testing.T, f *deviceFixture) {
			if err := f.sessions.EndAll(ctx, deviceAlice); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"sign out everywhere, then a new sign-in", func(t *testing.T, f *deviceFixture) {
			_ = f.sessions.EndAll(ctx, deviceAlice)
			f.clk.advance(time.Second)
			if _, err := f.sessions.Create(ctx, httptest.NewRecorder(), deviceAlice, nil); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"the user's generation is lost", func(t *testing.T, f *deviceFixture) {
			for _, k := range f.store.Keys() {
				if strings.HasPrefix(k, "u2:") {
					_ = f.store.Delete(ctx, k)
				}
			}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newDeviceFixture(t)
			cr := f.start(t)
			if rec := f.decide(t, cr.UserCode, "approve"); rec.Code != http.StatusOK {
				t.Fatalf("approve: %d", rec.Code)
			}
			f.clk.advance(time.Minute)
			tt.between(t, f)
			f.clk.advance(time.Minute)
			code, body := f.poll(cr.DeviceCode, CLIClientID)
			if !tt.wantToken {
				if code != http.StatusBadRequest || body["error"] != "access_denied" {
					t.Fatalf("poll: %d %v, want access_denied", code, body)
				}
				if code, body := f.poll(cr.DeviceCode, CLIClientID); code == http.StatusOK {
					t.Fatalf("a later poll got a token: %v", body)
				}
				return
			}
			if code != http.StatusOK {
				t.Fatalf("poll: %d %v", code, body)
			}
			if _, err := f.toks.Lookup(ctx, body["access_token"].(string)); err != nil {
				t.Fatalf("token: %v", err)
			}
		})
	}
}

// Approving is a request like any other: a session due for revalidation
// is re-checked with its provider first, and the approval rests on what
// the provider says now.
func TestDeviceApprovalRevalidatesTheSession(t *testing.T) {
	tests := []struct {
		name       string
		provider   func(p *fakePeople)
		wantStatus int
		wantGroups []string // of the token, when approved
	}{
		{"provider confirms, with new groups", func(p *fakePeople) {
			id := deviceAlice
			id.Groups = []string{"ops", "dev"}
			p.set(id, nil)
		}, http.StatusOK, []string{"ops", "dev"}},
		{"user left the allowed group", func(p *fakePeople) {
			id := deviceAlice
			id.Groups = []string{"dev"}
			p.set(id, nil)
		}, http.StatusForbidden, nil},
		{"provider revoked the sign-in", func(p *fakePeople) { p.set(identity.Identity{}, authn.ErrRevoked) }, http.StatusUnauthorized, nil},
		{"provider down past the grace", func(p *fakePeople) {
			p.set(identity.Identity{}, authn.ErrProviderDown)
		}, http.StatusServiceUnavailable, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newDeviceFixture(t)
			// A form opened earlier: its CSRF token is bound to the session.
			page := f.get("/oauth2/device?user_code=" + url.QueryEscape(f.start(t).UserCode))
			m := csrfField.FindStringSubmatch(page.Body.String())
			if m == nil {
				t.Fatalf("no confirmation form: %d", page.Code)
			}
			// Two hours on, the session is due for revalidation, the
			// provider has changed its mind, and a new code is approved.
			f.clk.advance(2 * time.Hour)
			cr := f.start(t)
			tt.provider(f.prov)
			rec := f.post("/oauth2/device", url.Values{"csrf": {m[1]}, "user_code": {cr.UserCode}, "action": {"approve"}}, true)
			if rec.Code != tt.wantStatus {
				t.Fatalf("approve: %d, want %d\n%s", rec.Code, tt.wantStatus, rec.Body)
			}
			if calls := f.prov.calls.Load(); calls == 0 {
				t.Fatal("the provider was not asked")
			}
			code, body := f.poll(cr.DeviceCode, CLIClientID)
			if tt.wantGroups == nil {
				if body["error"] != "authorization_pending" {
					t.Fatalf("poll after a refused approval: %d %v", code, body)
				}
				return
			}
			if code != http.StatusOK {
				t.Fatalf("poll: %d %v", code, body)
			}
			tok, err := f.toks.Lookup(context.Background(), body["access_token"].(string))
			if err != nil || strings.Join(tok.Identity.Groups, ",") != strings.Join(tt.wantGroups, ",") {
				t.Fatalf("token identity: %+v, %v; want groups %v", tok, err, tt.wantGroups)
			}
		})
	}
}

// Wrong user codes are counted per client network, so rotating through
// the addresses of one IPv6 /64 does not buy more guesses.
func TestDeviceGuessingIsLimitedPerNetwork(t *testing.T) {
	f := newDeviceFixture(t)
	cr := f.start(t)
	bob := identity.Identity{Provider: "test", Subject: "2", User: "bob", Groups: []string{"ops"}}
	rec := httptest.NewRecorder()
	if _, err := f.sessions.Create(context.Background(), rec, bob, nil); err != nil {
		t.Fatal(err)
	}
	bobCookie := rec.Result().Cookies()[0]
	guess := func(cookie *http.Cookie, remote, code string) int {
		req := httptest.NewRequest(http.MethodGet, "/oauth2/device?user_code="+url.QueryEscape(code), nil)
		req.RemoteAddr = remote
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		f.mux.ServeHTTP(rec, req)
		return rec.Code
	}
	// Two accounts, five wrong codes each, each from a new address of one /64.
	for i := 0; i < 10; i++ {
		cookie := f.cookie
		if i%2 == 1 {
			cookie = bobCookie
		}
		if code := guess(cookie, fmt.Sprintf("[2001:db8:5:6::%x]:4000", i+1), "BBBB-BBBB"); code != http.StatusBadRequest {
			t.Fatalf("wrong code %d: %d", i, code)
		}
	}
	if code := guess(f.cookie, "[2001:db8:5:6::abcd]:4000", cr.UserCode); code != http.StatusTooManyRequests {
		t.Fatalf("after 10 wrong codes from one /64: %d, want 429", code)
	}
	if code := guess(f.cookie, "[2001:db8:5:7::1]:4000", cr.UserCode); code == http.StatusTooManyRequests {
		t.Fatal("another /64 (with a user under the limit) is limited too")
	}
}

// The limiter's memory is bounded without forgetting everything at once:
// a flood of new keys evicts expired windows first, then the oldest, so a
// client blocked now is not let off while older entries remain.
func TestFailureLimiterEvictsOldestNotEverything(t *testing.T) {
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	l := newFailureLimiter(10, 10*time.Minute, clk.now)
	for i := 0; i < limiterKeys-1; i++ { // yesterday's flood, long expired
		l.fail(fmt.Sprintf("old-%d", i))
	}
	clk.advance(time.Hour)
	for i := 0; i < 10; i++ {
		l.fail("net:attacker")
	}
	if !l.blocked("net:attacker") {
		t.Fatal("not blocked after 10 failures")
	}
	for i := 0; i < 2*limiterKeys; i++ { // a fresh flood of new keys
		l.fail(fmt.Sprintf("new-%d", i))
		if i == limiterKeys/2 && !l.blocked("net:attacker") {
			t.Fatal("a flood of new keys unblocked a client while expired entries remained")
		}
	}
	if n := len(l.counts); n > limiterKeys || l.order.Len() != n {
		t.Fatalf("limiter holds %d keys (list %d), want at most %d", n, l.order.Len(), limiterKeys)
	}
	// The newest keys are the ones kept.
	for i := 0; i < 10; i++ {
		l.fail(fmt.Sprintf("new-%d", 2*limiterKeys-1))
	}
	if !l.blocked(fmt.Sprintf("new-%d", 2*limiterKeys-1)) {
		t.Fatal("the newest key was evicted")
	}
}
