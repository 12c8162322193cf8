package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/gatehouse/gatehouse/account"
)

// TestSessionsPage: one user, alice, with two browser sessions (Chromium
// and a plain HTTP client) and a device token from the real `gatehouse
// login`, on two replicas sharing a real memcached. The page and the CLI
// list the same three; ending one in Chromium leaves the others working
// on both replicas; "End all" ends everything on both.
//
// With GATEHOUSE_SCREENSHOTS=<dir>, the page is also saved at desktop and
// phone width as <dir>/sessions-desktop.png and <dir>/sessions-phone.png.
func TestSessionsPage(t *testing.T) {
	t.Parallel()
	mc, _ := startMemcached(t)
	s := start(t, options{env: []string{
		"GATEHOUSE_SESSION_STORE_TYPE=memcache",
		"GATEHOUSE_SESSION_STORE_MEMCACHE_SERVERS=" + mc,
		"GATEHOUSE_DEVICE_FLOW_ENABLED=true",
		"GATEHOUSE_DEVICE_FLOW_POLL_INTERVAL=1s",
	}})
	second := s.replica()
	replicas := []string{s.URL, second}

	// Browser session 1: Chromium.
	ctx := browser(t)
	signInWithBrowser(t, ctx, s, "/", alice)
	if who := text(t, ctx, "#x-forwarded-user"); who != "alice" {
		t.Fatalf("Chromium signed in as %q", who)
	}
	// Browser session 2: a plain HTTP client.
	c := httpClient(t)
	signInFor(t, c, s, "corp", alice)
	// The device token: `gatehouse login`, approved in Chromium.
	home := t.TempDir()
	cliEnv := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config")}
	tok := cliLoginApprovedIn(t, ctx, s, cliEnv)

	// The JSON view of each: the HTTP client's (through the second
	// replica) and the token's name their own entry as current.
	byClient := sessionsJSON(t, c, second, "")
	byToken := sessionsJSON(t, http.DefaultClient, second, tok)
	httpID, tokenID := currentOf(t, byClient), currentOf(t, byToken)
	if k := kindOf(byClient, httpID); k != "browser" {
		t.Fatalf("the HTTP client's session is listed as %q, want browser", k)
	}
	if k := kindOf(byClient, tokenID); k != "device" {
		t.Fatalf("the token is listed as %q, want device: %+v", k, byClient.Sessions)
	}
	if got, want := ids(byToken), ids(byClient); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("the token sees %v, the HTTP client %v", got, want)
	}
	if len(byClient.Sessions) != 3 {
		t.Fatalf("listed %d sessions, want 3: %+v", len(byClient.Sessions), byClient.Sessions)
	}
	var chromiumID string
	for _, e := range byClient.Sessions {
		if e.ID != httpID && e.ID != tokenID {
			chromiumID = e.ID
		}
		for _, secret := range []string{tok, cookieValueOf(c, s.URL)} {
			if e.ID == "" || strings.Contains(e.ID, secret) || strings.Contains(secret, e.ID) {
				t.Fatalf("id %q exposes a token or ticket", e.ID)
			}
		}
	}
	if kindOf(byClient, chromiumID) != "browser" {
		t.Fatalf("no Chromium session listed: %+v", byClient.Sessions)
	}

	// The page in Chromium, through each replica: the same three, its own
	// session marked, each browser with the user agent it signed in with.
	for _, base := range replicas {
		rows := sessionRows(t, ctx, base)
		if len(rows) != 3 {
			t.Fatalf("%s: the page lists %d sessions, want 3: %+v", base, len(rows), rows)
		}
		for _, r := range rows {
			if r.Current != (r.ID == chromiumID) {
				t.Fatalf("%s: row %s current=%v; Chromium's session is %s", base, r.ID, r.Current, chromiumID)
			}
			var want []string
			switch r.ID {
			case chromiumID:
				want = []string{"Browser", "this one", "HeadlessChrome"}
			case httpID:
				want = []string{"Browser", "Go-http-client"}
			case tokenID:
				want = []string{"Device", "gatehouse-cli", "read"}
			default:
				t.Fatalf("%s: the page lists %s, which the JSON did not", base, r.ID)
			}
			for _, w := range want {
				if !strings.Contains(r.Text, w) {
					t.Errorf("%s: row %s lacks %q:\n%s", base, r.ID, w, r.Text)
				}
			}
		}
	}
	if dir := os.Getenv("GATEHOUSE_SCREENSHOTS"); dir != "" {
		screenshotSessions(t, ctx, s.URL, dir)
	}

	// The CLI lists the same three, the token it reads with marked.
	out := runCLI(t, cliEnv, "sessions", s.URL)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("gatehouse sessions printed:\n%s", out)
	}
	for _, id := range []string{chromiumID, httpID, tokenID} {
		line := lineWith(lines[1:], id)
		if line == "" {
			t.Fatalf("gatehouse sessions does not list %s:\n%s", id, out)
		}
		if strings.Contains(line, "(this one)") != (id == tokenID) {
			t.Fatalf("gatehouse sessions marks the wrong entry:\n%s", out)
		}
	}

	// A form posted without the page's own CSRF token ends nothing: the
	// HTTP client posts the token Chromium's page carries.
	var chromiumCSRF string
	if err := chromedp.Run(ctx, chromedp.Value(`input[name="csrf_token"]`, &chromiumCSRF, chromedp.ByQuery)); err != nil || chromiumCSRF == "" {
		t.Fatalf("reading the page's csrf_token: %v", err)
	}
	resp, err := c.PostForm(second+"/oauth2/sessions", url.Values{"csrf_token": {chromiumCSRF}, "end": {"all"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("end=all with another session's csrf_token: %d, want 403", resp.StatusCode)
	}
	if code, _ := getJSON(t, c, s.URL+"/app", nil); code != http.StatusOK {
		t.Fatalf("the refused form ended the HTTP client's session: %d", code)
	}

	// End the HTTP client's session with its End button in Chromium (on
	// the second replica's page).
	row := `li.session[data-id="` + httpID + `"]`
	if err := chromedp.Run(ctx,
		chromedp.Navigate(second+"/oauth2/sessions"),
		chromedp.WaitVisible(row+` button`, chromedp.ByQuery),
		chromedp.Click(row+` button`, chromedp.ByQuery),
		chromedp.WaitNotPresent(row, chromedp.ByQuery),
		chromedp.WaitVisible(`#sessions`, chromedp.ByID),
	); err != nil {
		t.Fatalf("ending the HTTP client's session in Chromium: %v", err)
	}
	if loc := location(t, ctx); loc != second+"/oauth2/sessions" {
		t.Fatalf("after End, Chromium is at %s", loc)
	}
	if rows := sessionRows(t, ctx, second); len(rows) != 2 {
		t.Fatalf("after ending one, the page lists %d, want 2: %+v", len(rows), rows)
	}
	for _, base := range replicas {
		waitFor(t, 2*time.Second, "the ended HTTP session refused on "+base, func() bool {
			code, _ := getJSON(t, c, base+"/app", nil)
			return code == http.StatusUnauthorized
		})
		if code, e := bearerGet(t, http.MethodGet, base+"/app", tok); code != http.StatusOK || e.Headers["X-Forwarded-User"][0] != "alice" {
			t.Fatalf("%s: the token stopped working when another session ended: %d", base, code)
		}
		if err := chromedp.Run(ctx, chromedp.Navigate(base+"/app")); err != nil {
			t.Fatal(err)
		}
		if who := text(t, ctx, "#x-forwarded-user"); who != "alice" {
			t.Fatalf("%s: Chromium's session stopped working when another ended: %q", base, who)
		}
	}
	after := sessionsJSON(t, http.DefaultClient, s.URL, tok)
	if got := ids(after); len(got) != 2 || kindOf(after, httpID) != "" {
		t.Fatalf("after ending the HTTP session the list is %+v", after.Sessions)
	}

	// A new HTTP session for "End all" to end along with the rest.
	c2 := httpClient(t)
	signInFor(t, c2, s, "corp", alice)
	chromiumTicket := chromiumCookie(t, ctx)
	if err := chromedp.Run(ctx,
		chromedp.Navigate(s.URL+"/oauth2/sessions"),
		chromedp.WaitVisible(`#end-all`, chromedp.ByID),
		chromedp.Click(`#end-all`, chromedp.ByID),
		chromedp.WaitVisible(`#signed-out`, chromedp.ByID),
	); err != nil {
		t.Fatalf("End all in Chromium: %v", err)
	}
	for _, base := range replicas {
		waitFor(t, 2*time.Second, "everything of alice's ended on "+base, func() bool {
			if code, _ := getJSON(t, c2, base+"/app", nil); code != http.StatusUnauthorized {
				return false
			}
			if code, _ := bearerGet(t, http.MethodGet, base+"/app", tok); code != http.StatusUnauthorized {
				return false
			}
			return replayTicket(t, base+"/app", chromiumTicket) == http.StatusUnauthorized
		})
		// Chromium itself has no session left either.
		if err := chromedp.Run(ctx, chromedp.Navigate(base+"/app"), chromedp.WaitVisible("#provider-corp", chromedp.ByID)); err != nil {
			t.Fatalf("%s: after End all, Chromium did not land on sign-in: %v", base, err)
		}
	}
	sessions := exec.Command(binary, "sessions", s.URL)
	sessions.Env = cliEnv
	if out, err := sessions.CombinedOutput(); err == nil {
		t.Fatalf("gatehouse sessions still works after End all:\n%s", out)
	}
}

// cliLoginApprovedIn runs `gatehouse login URL`, approves its code in the
// signed-in Chromium ctx, and returns the token it stored.
func cliLoginApprovedIn(t *testing.T, ctx context.Context, s *stack, env []string) string {
	t.Helper()
	login := exec.Command(binary, "login", s.URL, "--no-browser")
	login.Env = env
	stderr, err := login.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout strings.Builder
	login.Stdout = &stdout
	if err := login.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	codes := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := userCodeLine.FindStringSubmatch(sc.Text()); m != nil {
				codes <- m[1]
			}
		}
		done <- login.Wait()
	}()
	t.Cleanup(func() { _ = login.Process.Kill() })
	var code string
	select {
	case code = <-codes:
	case <-time.After(10 * time.Second):
		t.Fatal("gatehouse login printed no user code")
	}
	if err := chromedp.Run(ctx,
		chromedp.Navigate(s.URL+"/oauth2/device"),
		chromedp.WaitVisible("#user_code", chromedp.ByID),
		chromedp.SendKeys("#user_code", code, chromedp.ByID),
		chromedp.Click("#continue", chromedp.ByID),
		chromedp.WaitVisible("#approve", chromedp.ByID),
		chromedp.Click("#approve", chromedp.ByID),
		chromedp.WaitVisible("#device-done", chromedp.ByID),
	); err != nil {
		t.Fatalf("approving %s: %v", code, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("gatehouse login: %v\n%s", err, stdout.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gatehouse login did not finish after approval")
	}
	tok := strings.TrimSpace(runCLI(t, env, "token", s.URL))
	if !strings.HasPrefix(tok, "gth_") {
		t.Fatalf("gatehouse token printed %q", tok)
	}
	return tok
}

func runCLI(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gatehouse %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// sessionsJSON reads <base>/oauth2/sessions as JSON, with c's cookie or,
// when token is set, with the token.
func sessionsJSON(t *testing.T, c *http.Client, base, token string) account.List {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/oauth2/sessions", nil)
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	var l account.List
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &l) != nil || l.CSRFToken == "" {
		t.Fatalf("GET %s/oauth2/sessions: %d %s", base, resp.StatusCode, body)
	}
	return l
}

func currentOf(t *testing.T, l account.List) string {
	t.Helper()
	var cur []string
	for _, e := range l.Sessions {
		if e.Current {
			cur = append(cur, e.ID)
		}
	}
	if len(cur) != 1 || cur[0] == "" {
		t.Fatalf("want exactly one current entry: %+v", l.Sessions)
	}
	return cur[0]
}

func kindOf(l account.List, id string) string {
	for _, e := range l.Sessions {
		if e.ID == id {
			return e.Kind
		}
	}
	return ""
}

func ids(l account.List) []string {
	var out []string
	for _, e := range l.Sessions {
		out = append(out, e.ID)
	}
	sort.Strings(out)
	return out
}

func lineWith(lines []string, id string) string {
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && f[0] == id {
			return l
		}
	}
	return ""
}

// sessionRow is one entry of the page as Chromium renders it.
type sessionRow struct {
	ID      string `json:"id"`
	Text    string `json:"text"`
	Current bool   `json:"current"`
}

func sessionRows(t *testing.T, ctx context.Context, base string) []sessionRow {
	t.Helper()
	var rows []sessionRow
	if err := chromedp.Run(ctx,
		chromedp.Navigate(base+"/oauth2/sessions"),
		chromedp.WaitVisible("#end-all", chromedp.ByID),
		chromedp.Evaluate(`Array.from(document.querySelectorAll("li.session")).map(li => ({
			id: li.dataset.id, text: li.innerText, current: li.querySelector(".badge") !== null}))`, &rows),
	); err != nil {
		t.Fatalf("%s: reading the sessions page: %v", base, err)
	}
	return rows
}

// screenshotSessions saves the sessions page at desktop and phone width.
func screenshotSessions(t *testing.T, ctx context.Context, base, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, shot := range []struct {
		file string
		size chromedp.EmulateAction
	}{
		{"sessions-desktop.png", chromedp.EmulateViewport(1280, 800)},
		{"sessions-phone.png", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile, chromedp.EmulateTouch)},
	} {
		var png []byte
		var overflow bool
		if err := chromedp.Run(ctx,
			shot.size,
			chromedp.Navigate(base+"/oauth2/sessions"),
			chromedp.WaitVisible("#end-all", chromedp.ByID),
			chromedp.Evaluate(`document.documentElement.scrollWidth > window.innerWidth`, &overflow),
			chromedp.FullScreenshot(&png, 100),
		); err != nil {
			t.Fatalf("screenshot %s: %v", shot.file, err)
		}
		if overflow {
			t.Errorf("%s: the page is wider than the viewport", shot.file)
		}
		if err := os.WriteFile(filepath.Join(dir, shot.file), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := chromedp.Run(ctx, chromedp.EmulateReset()); err != nil {
		t.Fatal(err)
	}
}

func chromiumCookie(t *testing.T, ctx context.Context) string {
	t.Helper()
	var cookies []*network.Cookie
	if err := chromedp.Run(ctx, chromedp.ActionFunc(func(ctx context.Context) error {
		var err error
		cookies, err = network.GetCookies().Do(ctx)
		return err
	})); err != nil {
		t.Fatal(err)
	}
	for _, c := range cookies {
		if c.Name == "_gatehouse" {
			return c.Value
		}
	}
	t.Fatal("Chromium has no session cookie")
	return ""
}

func cookieValueOf(c *http.Client, base string) string {
	u, _ := url.Parse(base)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "_gatehouse" {
			return ck.Value
		}
	}
	return ""
}

// replayTicket requests u with only the given session cookie.
func replayTicket(t *testing.T, u, ticket string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "application/json")
	req.AddCookie(&http.Cookie{Name: "_gatehouse", Value: ticket})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
