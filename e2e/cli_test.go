package e2e

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

var userCodeLine = regexp.MustCompile(`enter the code: ([A-Z]{4}-[A-Z]{4})`)

// TestCLILoginTokenLogout drives `gatehouse login`, `token` and `logout`
// against a running Gatehouse, with the approval done in Chromium.
func TestCLILoginTokenLogout(t *testing.T) {
	t.Parallel()
	s := deviceStack(t)
	home := t.TempDir()
	cliEnv := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config")}

	login := exec.Command(binary, "login", s.URL, "--no-browser")
	login.Env = cliEnv
	stderr, err := login.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout strings.Builder
	login.Stdout = &stdout
	if err := login.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = login.Process.Kill() })
	codes := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := userCodeLine.FindStringSubmatch(sc.Text()); m != nil {
				codes <- m[1]
			}
		}
	}()
	var code string
	select {
	case code = <-codes:
	case <-time.After(15 * time.Second):
		t.Fatal("gatehouse login printed no user code")
	}

	// The person types the code on the device page and approves.
	ctx := browser(t)
	signInWithBrowser(t, ctx, s, "/", alice)
	text(t, ctx, "#x-forwarded-user")
	if err := chromedp.Run(ctx,
		chromedp.Navigate(s.URL+"/oauth2/device"),
		chromedp.WaitVisible("#user_code", chromedp.ByID),
		chromedp.SendKeys("#user_code", strings.ToLower(code), chromedp.ByID),
		chromedp.Click("#continue", chromedp.ByID),
		chromedp.WaitVisible("#approve", chromedp.ByID),
		chromedp.Click("#approve", chromedp.ByID),
		chromedp.WaitVisible("#device-done", chromedp.ByID),
	); err != nil {
		t.Fatalf("approving %s: %v", code, err)
	}
	done := make(chan error, 1)
	go func() { done <- login.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("gatehouse login: %v\n%s", err, stdout.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("gatehouse login did not finish after approval")
	}

	file := filepath.Join(home, ".config", "gatehouse", "tokens.json")
	info, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Fatalf("token file mode %o, want 600", mode)
	}

	tokenCmd := exec.Command(binary, "token", s.URL)
	tokenCmd.Env = cliEnv
	out, err := tokenCmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(string(out))
	if code, e := bearerGet(t, http.MethodGet, s.URL+"/data", tok); code != 200 || e.Headers["X-Forwarded-User"][0] != "alice" {
		t.Fatalf("request with the CLI's token: %d", code)
	}

	logout := exec.Command(binary, "logout", s.URL)
	logout.Env = cliEnv
	if out, err := logout.CombinedOutput(); err != nil {
		t.Fatalf("logout: %v\n%s", err, out)
	}
	if code, _ := bearerGet(t, http.MethodGet, s.URL+"/data", tok); code != http.StatusUnauthorized {
		t.Fatalf("token after logout: %d, want 401", code)
	}
	again := exec.Command(binary, "token", s.URL)
	again.Env = cliEnv
	again.Stdout, again.Stderr = io.Discard, io.Discard
	if err := again.Run(); err == nil {
		t.Fatal("gatehouse token still prints a token after logout")
	}
}
