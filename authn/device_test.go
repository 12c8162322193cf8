package authn

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
	"github.com/gatehouse/gatehouse/tokens"
)

type deviceFixture struct {
	dev    *Device
	toks   *tokens.Store
	clk    *clock
	cookie *http.Cookie
	mux    *http.ServeMux
}

func newDeviceFixture(t *testing.T) *deviceFixture {
	t.Helper()
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	store := sessionstore.NewMemory(clk.now)
	sessions := session.NewManager(session.Config{
		CookieName: "_gatehouse", CookieSameSite: "lax", Lifetime: 100 * time.Hour, IdleTimeout: 100 * time.Hour,
	}, store, clk.now)
	prov := &scriptedProvider{}
	public, _ := url.Parse("https://dash.example.com")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pg := pages.New()
	login := NewLogin(LoginConfig{
		Providers: []Provider{prov}, Sessions: sessions, Pages: pg, PublicURL: public, Prefix: "/oauth2",
		Secret: "0123456789abcdef0123456789abcdef", Cookie: "_gatehouse", Logger: log, Now: clk.now,
	})
	scopes, statics, ps := tokens.Config{Scopes: map[string][]tokens.ScopeRuleConfig{
		"read": {{Methods: []string{"GET"}, Paths: []string{"^/"}}},
	}}.Compile()
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	toks := tokens.NewStore(store, scopes, statics, clk.now)
	dev := NewDevice(DeviceConfig{
		Flow:  DeviceFlowConfig{Enabled: true, CodeLifetime: 10 * time.Minute, PollInterval: 5 * time.Second, TokenLifetime: time.Hour},
		Store: store, Tokens: toks, Sessions: sessions, Login: login, Pages: pg,
		Secret: "0123456789abcdef0123456789abcdef", Logger: log, Now: clk.now,
	})
	rec := httptest.NewRecorder()
	if _, err := sessions.Create(context.Background(), rec, identity.Identity{Provider: "test", Subject: "1", User: "alice", Email: "alice@example.com"}, nil); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth2/device/code", dev.Code)
	mux.HandleFunc("POST /oauth2/token", dev.Token)
	mux.HandleFunc("GET /oauth2/device", dev.Page)
	mux.HandleFunc("POST /oauth2/device", dev.Page)
	mux.HandleFunc("POST /oauth2/revoke", Revoke(toks, log))
	return &deviceFixture{dev: dev, toks: toks, clk: clk, cookie: rec.Result().Cookies()[0], mux: mux}
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

func TestDeviceCodeIssuanceIsRateLimited(t *testing.T) {
	f := newDeviceFixture(t)
	for i := 0; i < 30; i++ {
		f.start(t)
	}
	rec := f.post("/oauth2/device/code", url.Values{"client_id": {CLIClientID}}, false)
	if rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), "slow_down") {
		t.Fatalf("31st code in a minute: %d %s", rec.Code, rec.Body)
	}
	f.clk.advance(time.Minute)
	f.start(t)
}
