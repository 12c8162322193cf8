package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startNginx runs Debian's nginx in front of upstream, asking gatehouse
// (at gatehouseURL) about every request with auth_request.
func startNginx(t *testing.T, gatehouseURL, upstream string) string {
	t.Helper()
	return runNginx(t, fmt.Sprintf(`
    location = /oauth2/auth {
      internal;
      proxy_pass %[1]s/oauth2/auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Forwarded-Method $request_method;
    }
    location /oauth2/ {
      proxy_pass %[1]s;
    }
    location / {
      auth_request /oauth2/auth;
      auth_request_set $gh_user $upstream_http_x_auth_request_user;
      auth_request_set $gh_email $upstream_http_x_auth_request_email;
      auth_request_set $gh_groups $upstream_http_x_auth_request_groups;
      auth_request_set $gh_assertion $upstream_http_x_gatehouse_assertion;
      proxy_set_header X-Forwarded-User $gh_user;
      proxy_set_header X-Forwarded-Email $gh_email;
      proxy_set_header X-Forwarded-Groups $gh_groups;
      proxy_set_header X-Gatehouse-Assertion $gh_assertion;
      proxy_pass %[2]s;
    }`, gatehouseURL, upstream))
}

// runNginx runs Debian's nginx, in the foreground and as a child of the
// test, with one server on a free port holding the given directives; it
// is stopped (by PID) when t ends. It returns the server's base URL.
func runNginx(t *testing.T, server string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/nginx"); err2 != nil {
			t.Fatal("nginx not found: run make test, which installs it")
		}
		bin = "/usr/sbin/nginx"
	}
	dir := t.TempDir()
	addr := freePort(t)
	conf := fmt.Sprintf(`
daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  default_type text/plain;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen %[2]s;
%[3]s
  }
}
`, dir, addr, server)
	file := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", file)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx output:\n%s\n%s", out.String(), b)
		}
	})
	waitFor(t, 10*time.Second, "nginx", func() bool {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	return "http://" + addr
}

func TestNginxAuthRequest(t *testing.T) {
	t.Parallel()
	s := start(t, options{env: []string{
		"GATEHOUSE_SERVER_TRUSTED_PROXIES=127.0.0.1/32",
		`GATEHOUSE_POLICIES=[{"path":"^/admin(/|$)","allowed_groups":["admins"]}]`,
	}})
	front := startNginx(t, s.URL, s.Upstream)

	if code, _ := getJSON(t, httpClient(t), front+"/page", nil); code != http.StatusUnauthorized {
		t.Fatalf("anonymous through nginx: %d, want 401", code)
	}
	c := httpClient(t)
	signInFor(t, c, s, "corp", alice) // the cookie is for 127.0.0.1, nginx's host too
	code, e := getJSON(t, c, front+"/page", map[string]string{"X-Forwarded-User": "ceo"})
	if code != http.StatusOK {
		t.Fatalf("signed in through nginx: %d", code)
	}
	if got := e.Headers["X-Forwarded-User"]; len(got) != 1 || got[0] != "alice" {
		t.Fatalf("upstream saw X-Forwarded-User %v, want [alice]", got)
	}
	if got := e.Headers["X-Gatehouse-Assertion"]; len(got) != 1 || strings.Count(got[0], ".") != 2 {
		t.Fatalf("assertion through nginx: %v", got)
	}
	// The route policy applies through forward-auth too: nginx passed the
	// original URL and Gatehouse trusts it from nginx.
	if code, _ := getJSON(t, c, front+"/admin/users", nil); code != http.StatusForbidden {
		t.Fatalf("/admin through nginx: %d, want 403", code)
	}
}
