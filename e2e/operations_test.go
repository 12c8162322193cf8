package e2e

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	metrics := freePort(t)
	s := start(t, options{env: []string{"GATEHOUSE_SERVER_METRICS_LISTEN=" + metrics}})
	c := httpClient(t)
	signInFor(t, c, s, "corp", alice)
	getJSON(t, c, s.URL+"/x", nil)
	resp := mustGet(t, http.DefaultClient, "http://"+metrics+"/metrics")
	body := readBody(t, resp)
	for _, want := range []string{
		`gatehouse_http_requests_total{code="200",handler="upstream"}`,
		`gatehouse_logins_total{provider="corp",result="success"} 1`,
		"gatehouse_upstream_request_duration_seconds_count",
		`gatehouse_session_store_operations_total{op="get_multi",result="ok",store="memory"}`,
		"process_resident_memory_bytes",
		`gatehouse_provider_up{provider="corp"} 1`,                 // set by the /ready probes
		`gatehouse_logins_total{provider="corp",result="error"} 0`, // known label values start at 0
		`gatehouse_build_info{commit=`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Metrics are not reachable through the proxy port.
	if code, _ := getJSON(t, httpClient(t), s.URL+"/metrics", nil); code == http.StatusOK {
		t.Error("/metrics answered on the proxy port without authentication")
	}
}

// TestSecretsNeverLogged runs sign-in, an API call, a denial, sign-out and
// bad inputs at debug level, then searches the whole log for every secret
// that passed through.
func TestSecretsNeverLogged(t *testing.T) {
	t.Parallel()
	s := start(t, options{})
	c := httpClient(t)
	// Sign in by hand to capture the authorization code and state.
	resp := mustGet(t, c, s.URL+"/oauth2/start?provider=corp&rd=/")
	resp.Body.Close()
	authURL, _ := url.Parse(resp.Header.Get("Location"))
	state := authURL.Query().Get("state")
	final := signInWithClient(t, c, s, "/", alice)
	final.Body.Close()
	var ticket string
	for _, ck := range c.Jar.Cookies(mustURL(t, s.URL)) {
		if ck.Name == "_gatehouse" {
			ticket = ck.Value
		}
	}
	getJSON(t, c, s.URL+"/?access_token=query-secret-value", nil)
	getJSON(t, httpClient(t), s.URL+"/oauth2/callback/corp?code=stray-code-value&state="+state, nil)
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/", nil)
	req.Header.Set("Authorization", "Bearer gth_bearer-secret-value-0123456789012345678901")
	r, err := http.DefaultClient.Do(req)
	if err == nil {
		r.Body.Close()
	}
	resp = mustGet(t, c, s.URL+"/oauth2/sign_out")
	resp.Body.Close()

	logs := s.logs.String()
	if !strings.Contains(logs, `"event":"login"`) {
		t.Fatal("no audit line for the sign-in: the log capture is broken")
	}
	for name, secret := range map[string]string{
		"session secret":   "e2e-session-secret-0123456789abcdef",
		"client secret":    "client-secret-e2e",
		"session ticket":   ticket,
		"state":            state,
		"stray code":       "stray-code-value",
		"query secret":     "query-secret-value",
		"bearer token":     "gth_bearer-secret-value",
		"alice's password": password,
	} {
		if secret == "" {
			t.Fatalf("%s was not captured", name)
		}
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains the %s", name)
		}
	}
}

func TestHotReload(t *testing.T) {
	t.Parallel()
	s := start(t, options{yamlOnly: true})
	c := httpClient(t)
	signInFor(t, c, s, "corp", alice)
	if code, _ := getJSON(t, c, s.URL+"/x", nil); code != 200 {
		t.Fatalf("before reload: %d", code)
	}
	orig, err := os.ReadFile(s.configFile)
	if err != nil {
		t.Fatal(err)
	}
	// An invalid file is refused; the old configuration keeps serving.
	if err := os.WriteFile(s.configFile, []byte(strings.Replace(string(orig), `lifetime`, `lifetime`, 1)+"session:\n  bogus: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = s.proc.Process.Signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the refusal to be logged", func() bool {
		return strings.Contains(s.logs.String(), "configuration reload refused")
	})
	if code, _ := getJSON(t, c, s.URL+"/x", nil); code != 200 {
		t.Fatalf("after a refused reload: %d", code)
	}
	// Tighten the filter: the live session loses access without a restart
	// and without a dropped connection.
	tightened := strings.Replace(string(orig), `allowed_domains: ["example.com"]`, `allowed_domains: ["other.example"]`, 1)
	if tightened == string(orig) {
		t.Fatalf("test config has no allowed_domains line:\n%s", orig)
	}
	if err := os.WriteFile(s.configFile, []byte(tightened), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the new filter to apply", func() bool {
		code, _ := getJSON(t, c, s.URL+"/x", nil)
		return code == http.StatusForbidden
	})
	// Back again: the same session (never dropped) is let in.
	if err := os.WriteFile(s.configFile, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the old filter to apply again", func() bool {
		code, _ := getJSON(t, c, s.URL+"/x", nil)
		return code == http.StatusOK
	})
}

func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	s := start(t, options{})
	c := httpClient(t)
	signInFor(t, c, s, "corp", alice)
	type answer struct {
		code int
		body string
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := c.Get(s.URL + "/slow?ms=1500")
		if err != nil {
			got <- answer{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- answer{code: resp.StatusCode, body: string(b)}
	}()
	waitFor(t, 5*time.Second, "the slow request to reach the upstream", func() bool {
		return s.upstreamInFlight.Load() > 0
	})
	if err := s.proc.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a.err != nil || a.code != 200 || a.body != "ok" {
		t.Fatalf("in-flight request during shutdown: %+v", a)
	}
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("gatehouse did not exit after SIGTERM")
	}
	if code := s.proc.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}
