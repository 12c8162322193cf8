package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/session"
)

const secret = "0123456789abcdef0123456789abcdef-secret"

func minimalEnv() []string {
	return []string{
		"GATEHOUSE_SERVER_PUBLIC_URL=https://dash.example.com",
		"GATEHOUSE_SESSION_SECRET=" + secret,
		"GATEHOUSE_AUTH_ALLOWED_DOMAINS=example.com, .example.org",
		"GATEHOUSE_AUTH_OIDC_CORP_ISSUER_URL=https://sso.example.com",
		"GATEHOUSE_AUTH_OIDC_CORP_CLIENT_ID=gatehouse",
		"GATEHOUSE_AUTH_OIDC_CORP_CLIENT_SECRET=oidc-client-secret-value",
		"GATEHOUSE_AUTH_OIDC_CORP_ALLOWED_GROUPS=ops,dev",
	}
}

// mustLoad loads the configuration or ends the test.
func mustLoad(t *testing.T, file string, env []string) *Loaded {
	t.Helper()
	l, err := loadConfig(file, env)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "gatehouse.yaml")
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

const minimalYAML = `
server:
  public_url: https://dash.example.com
session:
  secret: "` + secret + `"
auth:
  allowed_domains: ["example.com", ".example.org"]
  oidc:
    corp:
      issuer_url: https://sso.example.com
      client_id: gatehouse
      client_secret: oidc-client-secret-value
      allowed_groups: [ops, dev]
`

func TestEnvAloneAndYAMLAloneAgree(t *testing.T) {
	fromEnv := mustLoad(t, "", minimalEnv())
	fromYAML := mustLoad(t, writeFile(t, minimalYAML), nil)
	if !reflect.DeepEqual(fromEnv.Config, fromYAML.Config) {
		t.Fatalf("env and YAML give different configs:\nenv:  %+v\nyaml: %+v", fromEnv.Config.Auth, fromYAML.Config.Auth)
	}
	c := fromEnv.Config
	if got := c.Auth.AllowedDomains; !reflect.DeepEqual(got, []string{"example.com", ".example.org"}) {
		t.Errorf("allowed_domains = %q", got)
	}
	corp := c.Auth.OIDC["corp"]
	if corp.IssuerURL != "https://sso.example.com" || corp.DisplayName != "corp" || corp.GroupsClaim != "groups" || len(corp.Scopes) != 3 {
		t.Errorf("oidc.corp = %+v", corp)
	}
	if c.Server.Listen != ":4180" || c.Session.Lifetime != 168*time.Hour || c.Session.Store.Memcache.MaxIdleConns != 64 {
		t.Errorf("defaults not applied: %+v", c.Server)
	}
}

func TestEnvBeatsFileAndListsReplace(t *testing.T) {
	env := []string{"GATEHOUSE_SERVER_LISTEN=:9999", "GATEHOUSE_AUTH_OIDC_CORP_SCOPES=openid", "GATEHOUSE_SESSION_IDLE_TIMEOUT=30m"}
	l := mustLoad(t, writeFile(t, minimalYAML+"  github:\n    scopes: [a, b, c, d]\n"), env)
	if l.Config.Server.Listen != ":9999" || l.Config.Session.IdleTimeout != 30*time.Minute {
		t.Errorf("env did not win: %q %s", l.Config.Server.Listen, l.Config.Session.IdleTimeout)
	}
	if got := l.Config.Auth.OIDC["corp"].Scopes; !reflect.DeepEqual(got, []string{"openid"}) {
		t.Errorf("scopes = %q, want the env list alone", got)
	}
	if got := l.Config.Auth.GitHub.Scopes; len(got) != 4 {
		t.Errorf("a YAML list must replace the default, got %q", got)
	}
}

func TestSecretFileTwins(t *testing.T) {
	dir := t.TempDir()
	sf := filepath.Join(dir, "session")
	cf := filepath.Join(dir, "client")
	os.WriteFile(sf, []byte(secret+"\n"), 0o600)
	os.WriteFile(cf, []byte("from-file\n"), 0o600)
	env := []string{}
	for _, kv := range minimalEnv() {
		if !strings.HasPrefix(kv, "GATEHOUSE_SESSION_SECRET=") && !strings.HasPrefix(kv, "GATEHOUSE_AUTH_OIDC_CORP_CLIENT_SECRET=") {
			env = append(env, kv)
		}
	}
	env = append(env, "GATEHOUSE_SESSION_SECRET_FILE="+sf, "GATEHOUSE_AUTH_OIDC_CORP_CLIENT_SECRET_FILE="+cf)
	l := mustLoad(t, "", env)
	if l.Config.Session.Secret != secret || l.Config.Auth.OIDC["corp"].ClientSecret != "from-file" {
		t.Fatalf("secrets from files: %q %q", l.Config.Session.Secret, l.Config.Auth.OIDC["corp"].ClientSecret)
	}
}

func TestKubernetesServiceVariablesAreOnlyAWarning(t *testing.T) {
	env := append(minimalEnv(),
		"GATEHOUSE_PORT=tcp://10.0.0.1:80",
		"GATEHOUSE_PORT_80_TCP=tcp://10.0.0.1:80",
		"GATEHOUSE_SERVICE_HOST=10.0.0.1",
		"GATEHOUSE_SERVICE_PORT=80",
	)
	l, err := loadConfig("", env)
	if err != nil {
		t.Fatalf("service link variables broke start-up: %v", err)
	}
	if l.Config.Server.Listen != ":4180" {
		t.Errorf("server.listen = %q, shadowed by a service variable", l.Config.Server.Listen)
	}
	if len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "GATEHOUSE_PORT") {
		t.Errorf("warnings = %q, want one naming the ignored variables", l.Warnings)
	}
}

func TestInvalidConfigOneLinePerProblem(t *testing.T) {
	env := append(minimalEnv(),
		"GATEHOUSE_SESSION_SECRET=short",
		"GATEHOUSE_UPSTREAM_URL=not a url",
		"GATEHOUSE_SERVER_TRUSTED_PROXIES=10.0.0.0/8,banana",
		"GATEHOUSE_UPSTREAM_SKIP_AUTH_ROUTES=^/(health",
		"GATEHOUSE_SESSION_COOKIE_SAMESITE=sideways",
		"GATEHOUSE_AUTH_GITHUB_ENABLED=true",
	)
	_, err := loadConfig("", env)
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a ConfigError", err)
	}
	want := []string{
		"session.secret (GATEHOUSE_SESSION_SECRET): must be at least 32 bytes",
		"upstream.url (GATEHOUSE_UPSTREAM_URL):",
		"server.trusted_proxies (GATEHOUSE_SERVER_TRUSTED_PROXIES): \"banana\"",
		"upstream.skip_auth_routes (GATEHOUSE_UPSTREAM_SKIP_AUTH_ROUTES):",
		"session.cookie_samesite (GATEHOUSE_SESSION_COOKIE_SAMESITE):",
		"auth.github.client_id (GATEHOUSE_AUTH_GITHUB_CLIENT_ID): required when auth.github.enabled is true",
		"auth.github.client_secret (GATEHOUSE_AUTH_GITHUB_CLIENT_SECRET): required when auth.github.enabled is true",
	}
	msg := ce.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("missing %q in:\n%s", w, msg)
		}
	}
	if strings.Contains(msg, "short") && !strings.Contains(msg, "got 5") {
		t.Errorf("the secret's value leaked into the error:\n%s", msg)
	}
	for _, line := range strings.Split(msg, "\n") {
		if !strings.Contains(line, "(GATEHOUSE_") {
			t.Errorf("line without its environment variable: %q", line)
		}
	}
}

func TestDecodeErrorsNameTheKey(t *testing.T) {
	for env, want := range map[string]string{
		"GATEHOUSE_SESSION_LIFETIME=forever":                   "session.lifetime (GATEHOUSE_SESSION_LIFETIME): not a duration",
		"GATEHOUSE_SESSION_COOKIE_SECURE=perhaps":              "session.cookie_secure (GATEHOUSE_SESSION_COOKIE_SECURE)",
		"GATEHOUSE_POLICIES=[{\"path\":":                       "policies (GATEHOUSE_POLICIES): must be JSON",
		"GATEHOUSE_SESSION_STORE_MEMCACHE_MAX_IDLE_CONNS=lots": "session.store.memcache.max_idle_conns",
	} {
		_, err := loadConfig("", append(minimalEnv(), env))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", env, err, want)
		}
	}
}

func TestUnknownYAMLKeyIsAProblem(t *testing.T) {
	_, err := loadConfig(writeFile(t, minimalYAML+"sesion:\n  lifetime: 1h\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "sesion (GATEHOUSE_SESION): unknown key") {
		t.Fatalf("err = %v", err)
	}
	_, err = loadConfig(writeFile(t, strings.Replace(minimalYAML, "client_id: gatehouse", "client_id: gatehouse\n      clientsecret: x", 1)), nil)
	if err == nil || !strings.Contains(err.Error(), "auth.oidc.corp.clientsecret") {
		t.Fatalf("typo inside a provider: err = %v", err)
	}
}

func TestNoFilterIsAnError(t *testing.T) {
	var env []string
	for _, kv := range minimalEnv() {
		if !strings.Contains(kv, "ALLOWED_") {
			env = append(env, kv)
		}
	}
	_, err := loadConfig("", env)
	if err == nil || !strings.Contains(err.Error(), "auth.allow_all_users") {
		t.Fatalf("err = %v, want the missing-filter problem", err)
	}
	if _, err := loadConfig("", append(env, "GATEHOUSE_AUTH_ALLOW_ALL_USERS=true")); err != nil {
		t.Fatalf("allow_all_users: %v", err)
	}
}

func TestProviderNames(t *testing.T) {
	for _, name := range []string{"GITHUB", "GITLAB", "STATIC"} {
		env := append(minimalEnv(), "GATEHOUSE_AUTH_OIDC_"+name+"_ISSUER_URL=https://x.example", "GATEHOUSE_AUTH_OIDC_"+name+"_CLIENT_ID=x")
		if _, err := loadConfig("", env); err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("%s: err = %v, want reserved", name, err)
		}
	}
}

func TestCheckCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"check"}, strings.NewReader(""), &out, &errOut, minimalEnv()); code != 0 {
		t.Fatalf("check exit %d: %s", code, errOut.String())
	}
	for _, s := range []string{secret, "oidc-client-secret-value"} {
		if strings.Contains(out.String(), s) {
			t.Fatalf("check printed a secret:\n%s", out.String())
		}
	}
	if !strings.Contains(out.String(), "<redacted>") || !strings.Contains(out.String(), "https://sso.example.com") {
		t.Fatalf("check output:\n%s", out.String())
	}
	var printed map[string]any
	if err := yaml.Unmarshal(out.Bytes(), &printed); err != nil {
		t.Fatalf("check output is not YAML: %v", err)
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"check"}, strings.NewReader(""), &out, &errOut, append(minimalEnv(), "GATEHOUSE_SESSION_LIFETIME=x")); code != 2 {
		t.Fatalf("bad config exit %d, want 2", code)
	}
	if !strings.Contains(errOut.String(), "session.lifetime (GATEHOUSE_SESSION_LIFETIME)") {
		t.Fatalf("stderr: %s", errOut.String())
	}
}

func TestHashTokenAndGenSecret(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"hash-token"}, strings.NewReader("abc\n"), &out, &out, nil); code != 0 {
		t.Fatal(out.String())
	}
	sum := sha256.Sum256([]byte("abc"))
	if strings.TrimSpace(out.String()) != hex.EncodeToString(sum[:]) {
		t.Fatalf("hash-token = %q", out.String())
	}
	out.Reset()
	if code := run([]string{"gen-secret"}, strings.NewReader(""), &out, &out, nil); code != 0 || len(strings.TrimSpace(out.String())) < 32 {
		t.Fatalf("gen-secret = %q", out.String())
	}
}

// TestExampleConfigDocumentsEveryKey keeps config.example.yaml honest: it
// has no key the configuration lacks, and lists every key there is.
func TestExampleConfigDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		m, ok := v.(map[string]any)
		if !ok || prefix == "tokens.scopes" {
			documented[prefix] = true
			return
		}
		for k, x := range m {
			walk(strings.TrimPrefix(prefix+"."+k, "."), x)
		}
		if len(m) == 0 {
			documented[prefix] = true
		}
	}
	walk("", doc)
	for _, k := range leafKeys(reflect.TypeOf(Config{}), "") {
		if strings.HasSuffix(k.path, "_file") && k.path != "auth.allowed_emails_file" && !strings.HasPrefix(k.path, "server.tls") {
			continue // *_file twins are documented once, at the top
		}
		if !documented[k.path] {
			t.Errorf("config.example.yaml does not document %s", k.path)
		}
	}
}

func TestTLSFilesAreCheckedAtStart(t *testing.T) {
	env := append(minimalEnv(), "GATEHOUSE_SERVER_TLS_CERT_FILE=/nonexistent/cert.pem", "GATEHOUSE_SERVER_TLS_KEY_FILE=/nonexistent/key.pem")
	_, err := loadConfig("", env)
	if err == nil || !strings.Contains(err.Error(), "server.tls_cert_file (GATEHOUSE_SERVER_TLS_CERT_FILE): cannot load") {
		t.Fatalf("err = %v", err)
	}
	_, err = loadConfig("", append(minimalEnv(), "GATEHOUSE_SERVER_TLS_CERT_FILE=/x.pem"))
	if err == nil || !strings.Contains(err.Error(), "must be set together") {
		t.Fatalf("err = %v", err)
	}
}

// problemLine is the form of every line of a ConfigError.
var problemLine = regexp.MustCompile(`^([a-z0-9_.\[\]]+) \((GATEHOUSE_[A-Z0-9_]+)\): (.+)$`)

func TestEachProblemIsOneLineNamingKeyAndVariable(t *testing.T) {
	tests := []struct {
		name    string
		env     string
		key     string
		message string
	}{
		{"invalid duration", "GATEHOUSE_UPSTREAM_TIMEOUT=soon", "upstream.timeout", "not a duration"},
		{"negative duration", "GATEHOUSE_SESSION_IDLE_TIMEOUT=-1h", "session.idle_timeout", "positive duration"},
		{"bad URL", "GATEHOUSE_UPSTREAM_URL=ftp://app.internal", "upstream.url", "not an absolute http(s) URL"},
		{"public URL with a path", "GATEHOUSE_SERVER_PUBLIC_URL=https://dash.example.com/app", "server.public_url", "scheme and host only"},
		{"bad CIDR", "GATEHOUSE_SERVER_TRUSTED_PROXIES=10.0.0.0/8, 10.0.0.0/40", "server.trusted_proxies", `"10.0.0.0/40"`},
		{"bad regex", "GATEHOUSE_UPSTREAM_API_ROUTES=^/api/(v1", "upstream.api_routes", "not a valid regular expression"},
		{"short secret", "GATEHOUSE_SESSION_SECRET=tooshort", "session.secret", "at least 32 bytes"},
		{"bad boolean", "GATEHOUSE_UPSTREAM_PASS_HOST_HEADER=maybe", "upstream.pass_host_header", ""},
		{"bad domain", "GATEHOUSE_AUTH_ALLOWED_DOMAINS=*.example.com", "auth.allowed_domains", "not a domain"},
		{"bad log level", "GATEHOUSE_LOGGING_LEVEL=loud", "logging.level", "debug, info, warn or error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig("", append(minimalEnv(), tt.env))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *ConfigError", err)
			}
			lines := strings.Split(ce.Error(), "\n")
			if len(lines) != 1 {
				t.Fatalf("want one line, got:\n%s", ce.Error())
			}
			m := problemLine.FindStringSubmatch(lines[0])
			if m == nil {
				t.Fatalf("line %q is not `key (GATEHOUSE_KEY): message`", lines[0])
			}
			wantEnv := "GATEHOUSE_" + strings.ToUpper(strings.ReplaceAll(tt.key, ".", "_"))
			if m[1] != tt.key || m[2] != wantEnv || !strings.Contains(m[3], tt.message) {
				t.Fatalf("line %q, want key %s, variable %s, message with %q", lines[0], tt.key, wantEnv, tt.message)
			}
			if strings.Contains(lines[0], "tooshort") {
				t.Fatalf("the secret's value is in the message: %q", lines[0])
			}
		})
	}
}

func TestProblemsFromTheFileNameTheirVariableToo(t *testing.T) {
	_, err := loadConfig(writeFile(t, minimalYAML+"upstream:\n  timeout: soon\n  skip_auth_routes: [\"^/(x\"]\n"), nil)
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v", err)
	}
	for _, line := range strings.Split(ce.Error(), "\n") {
		if !problemLine.MatchString(line) {
			t.Errorf("line %q is not `key (GATEHOUSE_KEY): message`", line)
		}
	}
	if !strings.Contains(ce.Error(), "upstream.timeout (GATEHOUSE_UPSTREAM_TIMEOUT): not a duration") {
		t.Errorf("no duration problem in:\n%s", ce.Error())
	}
}

func TestUnknownNestedYAMLKeyIsAProblem(t *testing.T) {
	yml := strings.Replace(minimalYAML, "server:\n", "server:\n  listn: \":8080\"\n", 1)
	yml = strings.Replace(yml, "session:\n", "session:\n  store:\n    typ: memcache\n", 1)
	_, err := loadConfig(writeFile(t, yml), nil)
	if err == nil {
		t.Fatal("typos accepted")
	}
	for _, want := range []string{"server.listn (GATEHOUSE_SERVER_LISTN): unknown key", "session.store.typ (GATEHOUSE_SESSION_STORE_TYP): unknown key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

// TestUnknownKeyInAListEntryIsAProblem: a typo inside a policy or a static
// token must not be silently dropped. "allowed_group" dropped turns the
// policy below into "alice or bob, any group"; "expire_at" dropped makes
// the token live for ever.
func TestUnknownKeyInAListEntryIsAProblem(t *testing.T) {
	for name, extra := range map[string]string{
		"policies[0].allowed_group":  "policies:\n  - path: \"^/admin\"\n    allowed_users: [alice, bob]\n    allowed_group: [ops]\n",
		"tokens.static[0].expire_at": "tokens:\n  static:\n    - name: ci\n      sha256: \"" + strings.Repeat("ab", 32) + "\"\n      scopes: [read]\n      expire_at: \"2020-01-01T00:00:00Z\"\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := loadConfig(writeFile(t, minimalYAML+extra), nil)
			// Named e.g. "policies[0].allowed_group (GATEHOUSE_POLICIES): unknown key".
			section, field := name[:strings.Index(name, "[")], name[strings.LastIndex(name, ".")+1:]
			if err == nil || !strings.Contains(err.Error(), section) || !strings.Contains(err.Error(), field) {
				t.Fatalf("err = %v, want a problem naming %s", err, name)
			}
		})
	}
	_, err := loadConfig("", append(minimalEnv(), `GATEHOUSE_POLICIES=[{"path":"^/admin","allowed_users":["alice"],"allowed_group":["ops"]}]`))
	if err == nil || !strings.Contains(err.Error(), "allowed_group") {
		t.Fatalf("from the environment: err = %v, want a problem naming allowed_group", err)
	}
}

func TestServiceVariablesNeverShadowTheFile(t *testing.T) {
	yml := strings.Replace(minimalYAML, "server:\n", "server:\n  listen: \":8000\"\n", 1)
	env := []string{"GATEHOUSE_PORT=tcp://10.0.0.1:80", "GATEHOUSE_SERVICE_HOST=10.0.0.1", "GATEHOUSE_SERVICE_PORT_HTTP=80"}
	l, err := loadConfig(writeFile(t, yml), env)
	if err != nil {
		t.Fatalf("service variables broke start-up: %v", err)
	}
	if l.Config.Server.Listen != ":8000" {
		t.Fatalf("server.listen = %q, want the file's :8000", l.Config.Server.Listen)
	}
	if len(l.Warnings) != 1 {
		t.Fatalf("warnings = %q, want exactly one", l.Warnings)
	}
	for _, name := range []string{"GATEHOUSE_PORT", "GATEHOUSE_SERVICE_HOST", "GATEHOUSE_SERVICE_PORT_HTTP"} {
		if !strings.Contains(l.Warnings[0], name) {
			t.Errorf("warning %q does not name %s", l.Warnings[0], name)
		}
	}
	if strings.Contains(l.Warnings[0], "10.0.0.1") {
		t.Errorf("warning %q repeats values", l.Warnings[0])
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "--config", writeFile(t, yml)}, strings.NewReader(""), &out, &errOut, env); code != 0 {
		t.Fatalf("check exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(errOut.String(), "warning: ignoring environment variables") || strings.Contains(out.String(), "warning") {
		t.Errorf("check does not show the warning on stderr:\nstdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	}
}

func TestEnvListsFromTheEnvironment(t *testing.T) {
	env := append(minimalEnv(),
		"GATEHOUSE_AUTH_OIDC_CORP_SCOPES= openid ,email,, profile ",
		"GATEHOUSE_AUTH_OIDC_CORP_DISPLAY_NAME=Corp SSO",
		"GATEHOUSE_AUTH_OIDC_OKTA2_ISSUER_URL=https://okta.example.com",
		"GATEHOUSE_AUTH_OIDC_OKTA2_CLIENT_ID=gh",
		`GATEHOUSE_UPSTREAM_SKIP_AUTH_ROUTES=["GET=^/a{1,2}$", "^/health$"]`, // JSON when a regex holds a comma
	)
	l := mustLoad(t, "", env)
	corp, okta := l.Config.Auth.OIDC["corp"], l.Config.Auth.OIDC["okta2"]
	if !reflect.DeepEqual(corp.Scopes, []string{"openid", "email", "profile"}) || corp.DisplayName != "Corp SSO" {
		t.Errorf("oidc.corp = %+v", corp)
	}
	if okta.IssuerURL != "https://okta.example.com" || okta.ClientID != "gh" {
		t.Errorf("oidc.okta2 from the environment alone = %+v", okta)
	}
	if got := l.Config.Upstream.SkipAuthRoutes; !reflect.DeepEqual(got, []string{"GET=^/a{1,2}$", "^/health$"}) {
		t.Errorf("skip_auth_routes = %q", got)
	}
}

func TestCheckNeverPrintsSecrets(t *testing.T) {
	dir := t.TempDir()
	sf, cf := filepath.Join(dir, "session"), filepath.Join(dir, "client")
	const fileSecret, fileClientSecret = "file-session-secret-0123456789abcdef", "file-client-secret-value"
	if err := os.WriteFile(sf, []byte(fileSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cf, []byte(fileClientSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	yml := strings.Replace(minimalYAML, `  secret: "`+secret+`"`, "  secret_file: "+sf, 1)
	yml = strings.Replace(yml, "client_secret: oidc-client-secret-value", "client_secret_file: "+cf, 1)
	yml += "  github:\n    enabled: true\n    client_id: gh\n    client_secret: github-client-secret-value\n"
	file := writeFile(t, yml)
	var out, errOut bytes.Buffer
	// The file comes from GATEHOUSE_CONFIG this time.
	if code := run([]string{"check"}, strings.NewReader(""), &out, &errOut, []string{"GATEHOUSE_CONFIG=" + file}); code != 0 {
		t.Fatalf("check exit %d: %s", code, errOut.String())
	}
	for _, s := range []string{fileSecret, fileClientSecret, "github-client-secret-value"} {
		if strings.Contains(out.String()+errOut.String(), s) {
			t.Errorf("check printed the secret %q", s)
		}
	}
	if n := strings.Count(out.String(), "<redacted>"); n < 3 {
		t.Errorf("%d <redacted> values, want the session secret and both client secrets:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), file) {
		t.Errorf("check does not say which file it read:\n%s", out.String())
	}
}

func TestCheckExitCodes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  []string
		want int
	}{
		{"good", []string{"check"}, minimalEnv(), 0},
		{"bad value", []string{"check"}, append(minimalEnv(), "GATEHOUSE_UPSTREAM_URL=nope"), 2},
		{"no filter", []string{"check"}, []string{"GATEHOUSE_SERVER_PUBLIC_URL=https://x.example", "GATEHOUSE_SESSION_SECRET=" + secret}, 2},
		{"missing file", []string{"check", "--config", "/nonexistent/gatehouse.yaml"}, minimalEnv(), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(tt.args, strings.NewReader(""), &out, &errOut, tt.env); code != tt.want {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tt.want, errOut.String())
			}
			if tt.want == 2 && !strings.Contains(errOut.String(), "invalid configuration") {
				t.Fatalf("stderr:\n%s", errOut.String())
			}
			if strings.Contains(out.String()+errOut.String(), secret) {
				t.Fatal("the session secret was printed")
			}
		})
	}
}

func TestHashToken(t *testing.T) {
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	tests := []struct {
		stdin string
		code  int
		want  string
	}{
		{"abc\n", 0, sum("abc")},
		{"abc", 0, sum("abc")},
		{"  gth_abc \r\n", 0, sum("gth_abc")},
		{"first\nsecond\n", 0, sum("first")},
		{"", 1, ""},
		{"\n", 1, ""},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := run([]string{"hash-token"}, strings.NewReader(tt.stdin), &out, &errOut, nil)
		if code != tt.code || strings.TrimSpace(out.String()) != tt.want {
			t.Errorf("hash-token <<< %q: exit %d, out %q; want exit %d, %q", tt.stdin, code, out.String(), tt.code, tt.want)
		}
	}
	if got := sum("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("sha256(abc) = %s", got)
	}
}

// TestCommaInsideARegexFromTheEnvironment: environment lists are split on
// commas, but a regex may hold one ("{1,2}"). Split, "^/v{1,2}/health$"
// becomes "^/v{1" and "2}/health$"; the second is a skip-auth route that
// lets any path ending in "2}/health" through unauthenticated. The value
// must be kept whole or refused, never turned into other routes.
func TestCommaInsideARegexFromTheEnvironment(t *testing.T) {
	l, err := loadConfig("", append(minimalEnv(), "GATEHOUSE_UPSTREAM_SKIP_AUTH_ROUTES=^/v{1,2}/health$"))
	if err != nil {
		return // refused: fine
	}
	if got := l.Config.Upstream.SkipAuthRoutes; !reflect.DeepEqual(got, []string{"^/v{1,2}/health$"}) {
		t.Fatalf("skip_auth_routes = %q, want the one regex given", got)
	}
}

// problemLines loads with env (and file, if any) and returns the lines of
// the ConfigError, failing the test when loading succeeds.
func problemLines(t *testing.T, file string, env []string) []string {
	t.Helper()
	_, err := loadConfig(file, env)
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *ConfigError", err)
	}
	lines := strings.Split(ce.Error(), "\n")
	for _, line := range lines {
		if !problemLine.MatchString(line) {
			t.Errorf("line %q is not `key (GATEHOUSE_KEY): message`", line)
		}
	}
	return lines
}

func TestListsFromTheEnvironmentKeepBracketedCommas(t *testing.T) {
	tests := []struct {
		name  string
		value string
		want  []string
	}{
		{"repetition", `^/v{1,2}/health$`, []string{`^/v{1,2}/health$`}},
		{"plain list", `^/a$, ^/b$`, []string{`^/a$`, `^/b$`}},
		{"group and repetition", ` ^/(a|b)$ ,^/c{2,}$ `, []string{`^/(a|b)$`, `^/c{2,}$`}},
		{"comma in a class", `^/x[,;]y$,^/z$`, []string{`^/x[,;]y$`, `^/z$`}},
		{"escaped comma", `^/a\,b$`, []string{`^/a\,b$`}},
		{"methods", `GET=^/v{1,2}$,POST=^/hook$`, []string{`GET=^/v{1,2}$`, `POST=^/hook$`}},
		{"JSON array", `["^/a,b$", "^/c$"]`, []string{`^/a,b$`, `^/c$`}},
		{"JSON array with spaces", ` [ "^/a{1,2}$" ] `, []string{`^/a{1,2}$`}},
		{"leading class, not JSON", `^/x$,[/]health$`, []string{`^/x$`, `[/]health$`}},
		{"class first, not JSON", `[/]health$,^/y$`, []string{`[/]health$`, `^/y$`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := mustLoad(t, "", append(minimalEnv(), "GATEHOUSE_UPSTREAM_SKIP_AUTH_ROUTES="+tt.value))
			if got := l.Config.Upstream.SkipAuthRoutes; !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("skip_auth_routes = %q, want %q", got, tt.want)
			}
		})
	}
	lines := problemLines(t, "", append(minimalEnv(), `GATEHOUSE_UPSTREAM_API_ROUTES=["^/a", `))
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "upstream.api_routes (GATEHOUSE_UPSTREAM_API_ROUTES): not a JSON list of strings") {
		t.Fatalf("broken JSON list: %q", lines)
	}
}

func TestUnknownKeysAtAnyDepth(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		yaml string
		env  string
		want string
	}{
		{"policy entry in the file",
			"policies:\n  - path: \"^/+ops\"\n    allowed_groups: [ops]\n  - path: \"^/+admin\"\n    allowed_users: [alice, bob]\n    allowed_group: [ops]\n", "",
			"policies[1].allowed_group (GATEHOUSE_POLICIES): unknown key"},
		{"static token in the file",
			"tokens:\n  static:\n    - name: ci\n      sha256: \"" + hash + "\"\n      scopes: [read]\n      expire_at: \"2020-01-01T00:00:00Z\"\n", "",
			"tokens.static[0].expire_at (GATEHOUSE_TOKENS_STATIC): unknown key"},
		{"scope rule in the file",
			"tokens:\n  scopes:\n    deploy:\n      - paths: [\"^/deploy$\"]\n        method: [POST]\n", "",
			"tokens.scopes.deploy[0].method (GATEHOUSE_TOKENS_SCOPES): unknown key"},
		{"policy from the environment", "",
			`GATEHOUSE_POLICIES=[{"path":"^/+admin","allowed_users":["alice"],"allowed_group":["ops"]}]`,
			"policies[0].allowed_group (GATEHOUSE_POLICIES): unknown key"},
		{"static token from the environment", "",
			`GATEHOUSE_TOKENS_STATIC=[{"name":"ci","sha256":"` + hash + `","scopes":["read"],"expire_at":"2020-01-01T00:00:00Z"}]`,
			"tokens.static[0].expire_at (GATEHOUSE_TOKENS_STATIC): unknown key"},
		{"scope rule from the environment", "",
			`GATEHOUSE_TOKENS_SCOPES={"deploy":[{"paths":["^/deploy$"],"method":["POST"]}]}`,
			"tokens.scopes.deploy[0].method (GATEHOUSE_TOKENS_SCOPES): unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := ""
			if tt.yaml != "" {
				file = writeFile(t, minimalYAML+tt.yaml)
			}
			var env []string
			if tt.env != "" {
				env = append(minimalEnv(), tt.env)
			}
			lines := problemLines(t, file, env)
			if !reflect.DeepEqual(lines, []string{tt.want}) {
				t.Fatalf("problems %q, want only %q", lines, tt.want)
			}
		})
	}
	// The same entries spelled right load, whatever the case of the JSON keys.
	env := append(minimalEnv(),
		`GATEHOUSE_POLICIES=[{"Path":"^/+admin","allowed_users":["alice"]}]`,
		`GATEHOUSE_TOKENS_STATIC=[{"name":"ci","sha256":"`+hash+`","scopes":["read"],"expires_at":"2030-01-01T00:00:00Z"}]`,
	)
	l, err := loadConfig("", env)
	if err != nil {
		t.Fatalf("correct entries refused: %v", err)
	}
	if len(l.Config.Policies) != 1 || l.Config.Policies[0].Path != "^/+admin" || l.Config.Tokens.Static[0].ExpiresAt == "" {
		t.Fatalf("entries not read: %+v %+v", l.Config.Policies, l.Config.Tokens.Static)
	}
}

func TestProblemsInsideJSONValuesNameTheirVariable(t *testing.T) {
	tests := []struct {
		env  string
		want []string
	}{
		{`GATEHOUSE_POLICIES=[{"path":"^/(x"}]`, []string{
			"policies[0].path (GATEHOUSE_POLICIES): not a valid regular expression",
			"policies[0] (GATEHOUSE_POLICIES): a policy needs at least one allowed_* list",
		}},
		{`GATEHOUSE_TOKENS_SCOPES={"deploy":[{"paths":[]}]}`, []string{
			"tokens.scopes.deploy[0].paths (GATEHOUSE_TOKENS_SCOPES): at least one path regex is required",
		}},
	}
	for _, tt := range tests {
		lines := problemLines(t, "", append(minimalEnv(), tt.env))
		if len(lines) != len(tt.want) {
			t.Errorf("%s: problems %q, want %d", tt.env, lines, len(tt.want))
			continue
		}
		for i, w := range tt.want {
			if !strings.HasPrefix(lines[i], w) {
				t.Errorf("%s: line %q, want it to start with %q", tt.env, lines[i], w)
			}
		}
	}
}

func TestNearMissEnvironmentVariablesGetASuggestion(t *testing.T) {
	const value = "value-that-must-not-be-repeated"
	tests := []struct {
		name string
		want string // "" for a plain warning without a suggestion
	}{
		{"GATEHOUSE_SESION_SECRET", "GATEHOUSE_SESSION_SECRET"},
		{"GATEHOUSE_UPSTREAMURL", "GATEHOUSE_UPSTREAM_URL"},
		{"GATEHOUSE_SESSION_IDLE_TIMOUT", "GATEHOUSE_SESSION_IDLE_TIMEOUT"},
		{"GATEHOUSE_SESSIONSTOREMEMCACHESERVERS", "GATEHOUSE_SESSION_STORE_MEMCACHE_SERVERS"},
		{"GATEHOUSE_AUTH_OIDC_CORP_CLIENTSECRET", "GATEHOUSE_AUTH_OIDC_CORP_CLIENT_SECRET"},
		{"GATEHOUSE_CONFG", "GATEHOUSE_CONFIG"},
		{"GATEHOUSE_PORT", ""},
		{"GATEHOUSE_PORT_4180_TCP_ADDR", ""},
		{"GATEHOUSE_SERVICE_HOST", ""},
		{"GATEHOUSE_SERVICE_PORT_HTTPS", ""},
		{"GATEHOUSE_METRICS_SERVICE_PORT", ""},
		{"GATEHOUSE_NOTHING_LIKE_ANY_KEY", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := loadConfig("", append(minimalEnv(), tt.name+"="+value))
			if err != nil {
				t.Fatalf("an unknown variable is an error: %v", err)
			}
			if len(l.Warnings) != 1 {
				t.Fatalf("warnings = %q, want one", l.Warnings)
			}
			w := l.Warnings[0]
			if !strings.Contains(w, tt.name) || strings.Contains(w, value) {
				t.Fatalf("warning %q: want it to name %s and not repeat its value", w, tt.name)
			}
			hint := strings.Contains(w, "did you mean")
			if tt.want == "" && hint {
				t.Fatalf("warning %q suggests a variable for %s", w, tt.name)
			}
			if tt.want != "" && !strings.HasSuffix(w, "did you mean "+tt.want+"?") {
				t.Fatalf("warning %q, want it to end in \"did you mean %s?\"", w, tt.want)
			}
		})
	}
	var out, errOut bytes.Buffer
	env := append(minimalEnv(), "GATEHOUSE_SESION_LIFETIME=1h", "GATEHOUSE_PORT=tcp://10.0.0.1:80")
	if code := run([]string{"check"}, strings.NewReader(""), &out, &errOut, env); code != 0 {
		t.Fatalf("check exit %d: %s", code, errOut.String())
	}
	want := "warning: GATEHOUSE_SESION_LIFETIME names no configuration key and is ignored; did you mean GATEHOUSE_SESSION_LIFETIME?\n" +
		"warning: ignoring environment variables that name no configuration key: GATEHOUSE_PORT\n"
	if errOut.String() != want {
		t.Fatalf("check stderr:\n%s\nwant:\n%s", errOut.String(), want)
	}
}

func TestEveryProblemIsReportedAtOnce(t *testing.T) {
	file := writeFile(t, minimalYAML+"sesion:\n  lifetime: 1h\n")
	lines := problemLines(t, file, []string{
		"GATEHOUSE_SESSION_LIFETIME=forever",
		"GATEHOUSE_SERVER_LISTEN=4180",
		"GATEHOUSE_UPSTREAM_URL=nope",
		"GATEHOUSE_DEVICE_FLOW_POLL_INTERVAL=-5s",
	})
	want := []string{
		"sesion (GATEHOUSE_SESION): unknown key",
		"session.lifetime (GATEHOUSE_SESSION_LIFETIME): not a duration",
		"server.listen (GATEHOUSE_SERVER_LISTEN): \"4180\" is not host:port",
		"upstream.url (GATEHOUSE_UPSTREAM_URL):",
		"device_flow.poll_interval (GATEHOUSE_DEVICE_FLOW_POLL_INTERVAL): must be a positive duration",
	}
	all := strings.Join(lines, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("missing %q in:\n%s", w, all)
		}
	}
	if len(lines) != len(want) {
		t.Errorf("%d problems, want %d (session.lifetime once):\n%s", len(lines), len(want), all)
	}
}

func TestListenAddressesAreHostAndPort(t *testing.T) {
	tests := []struct {
		env  string
		want string // "" when valid
	}{
		{"GATEHOUSE_SERVER_LISTEN=127.0.0.1:4180", ""},
		{"GATEHOUSE_SERVER_LISTEN=[::1]:0", ""},
		{"GATEHOUSE_SERVER_LISTEN=localhost:8080", ""},
		{"GATEHOUSE_SERVER_LISTEN=4180", `server.listen (GATEHOUSE_SERVER_LISTEN): "4180" is not host:port`},
		{"GATEHOUSE_SERVER_LISTEN=:99999", `server.listen (GATEHOUSE_SERVER_LISTEN): ":99999": the port must be a number from 0 to 65535`},
		{"GATEHOUSE_SERVER_LISTEN=:http", `server.listen (GATEHOUSE_SERVER_LISTEN): ":http": the port must be a number`},
		{"GATEHOUSE_SERVER_LISTEN=:-1", `server.listen (GATEHOUSE_SERVER_LISTEN): ":-1": the port must be a number`},
		{"GATEHOUSE_SERVER_METRICS_LISTEN=", ""},
		{"GATEHOUSE_SERVER_METRICS_LISTEN=localhost", `server.metrics_listen (GATEHOUSE_SERVER_METRICS_LISTEN): "localhost" is not host:port`},
		{"GATEHOUSE_SERVER_METRICS_LISTEN=::1:9180", `server.metrics_listen (GATEHOUSE_SERVER_METRICS_LISTEN): "::1:9180" is not host:port`},
		{"GATEHOUSE_SERVER_METRICS_LISTEN=:4180", `server.metrics_listen (GATEHOUSE_SERVER_METRICS_LISTEN): ":4180" is also server.listen`},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			if tt.want == "" {
				if _, err := loadConfig("", append(minimalEnv(), tt.env)); err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			lines := problemLines(t, "", append(minimalEnv(), tt.env))
			if len(lines) != 1 || !strings.HasPrefix(lines[0], tt.want) {
				t.Fatalf("problems %q, want one starting with %q", lines, tt.want)
			}
		})
	}
}

func TestDurationsMustBePositive(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"memcache timeout with the memory store", []string{"GATEHOUSE_SESSION_STORE_MEMCACHE_TIMEOUT=0s"},
			"session.store.memcache.timeout (GATEHOUSE_SESSION_STORE_MEMCACHE_TIMEOUT): must be a positive duration such as 30s, got 0s"},
		{"assertion lifetime while assertions are off", []string{"GATEHOUSE_HEADERS_ASSERTION_ENABLED=false", "GATEHOUSE_HEADERS_ASSERTION_LIFETIME=-5m"},
			"headers.assertion.lifetime (GATEHOUSE_HEADERS_ASSERTION_LIFETIME): must be a positive duration such as 30s, got -5m0s"},
		{"device token lifetime while the device flow is off", []string{"GATEHOUSE_DEVICE_FLOW_TOKEN_LIFETIME=0"},
			"device_flow.token_lifetime (GATEHOUSE_DEVICE_FLOW_TOKEN_LIFETIME): must be a positive duration such as 30s, got 0s"},
		{"a section's own check is not repeated", []string{"GATEHOUSE_UPSTREAM_TIMEOUT=0s"},
			"upstream.timeout (GATEHOUSE_UPSTREAM_TIMEOUT): must be a positive duration such as 30s"},
		{"device flow on", []string{"GATEHOUSE_DEVICE_FLOW_ENABLED=true", "GATEHOUSE_DEVICE_FLOW_POLL_INTERVAL=-1s"},
			"device_flow.poll_interval (GATEHOUSE_DEVICE_FLOW_POLL_INTERVAL): must be between 1s and 1m, got -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := problemLines(t, "", append(minimalEnv(), tt.env...))
			if !reflect.DeepEqual(lines, []string{tt.want}) {
				t.Fatalf("problems %q, want only %q", lines, tt.want)
			}
		})
	}
}

func TestCheckWarnsAboutPatterns(t *testing.T) {
	policy := func(path string) string {
		return `GATEHOUSE_POLICIES=[{"path":` + jsonString(path) + `,"allowed_groups":["ops"]}]`
	}
	tests := []struct {
		name string
		env  string
		want []string // warning lines on stderr, without "warning: "
	}{
		{"anchored routes", "GATEHOUSE_UPSTREAM_SKIP_AUTH_ROUTES=^/health$,GET=^/public/", nil},
		{"unanchored skip-auth route", "GATEHOUSE_UPSTREAM_SKIP_AUTH_ROUTES=/health$", []string{
			`upstream.skip_auth_routes: the pattern "/health$" is not anchored at the start, so it matches any path that merely contains it; write "^/health$"`}},
		{"unanchored skip-auth route with a method", "GATEHOUSE_UPSTREAM_SKIP_AUTH_ROUTES=GET=/status", []string{
			`upstream.skip_auth_routes: the pattern "GET=/status" is not anchored at the start, so it matches any path that merely contains it; write "GET=^/status"`}},
		{"unanchored API route", "GATEHOUSE_UPSTREAM_API_ROUTES=/api/", []string{
			`upstream.api_routes: the pattern "/api/" is not anchored at the start, so it matches any path that merely contains it; write "^/api/"`}},
		{"alternation anchored on every branch", "GATEHOUSE_UPSTREAM_API_ROUTES=^/a/|^/b/", nil},
		{"alternation with a loose branch", "GATEHOUSE_UPSTREAM_API_ROUTES=^/a/|/b/", []string{
			`upstream.api_routes: the pattern "^/a/|/b/" is not anchored at the start, so it matches any path that merely contains it; write "^(?:^/a/|/b/)"`}},
		{"policy without ^", policy("/admin"), []string{
			`policies[0].path: the pattern "/admin" is not anchored at the start, so it matches any path that merely contains it; write "^/admin"`}},
		{"policy on ^/name", policy("^/admin(/|$)"), []string{
			`policies[0].path: the pattern "^/admin(/|$)" does not match "//admin", which many upstreams serve as "/admin" (Gatehouse does not merge slashes); write "^/+admin(/|$)"`}},
		{"policy with flags", policy("(?i)^/admin"), []string{
			`policies[0].path: the pattern "(?i)^/admin" does not match "//admin", which many upstreams serve as "/admin" (Gatehouse does not merge slashes); write "(?i)^/+admin"`}},
		{"policy covering //", policy("^/+admin(/|$)"), nil},
		{"unanchored scope path", `GATEHOUSE_TOKENS_SCOPES={"deploy":[{"paths":["^/deploy$","/hooks/"]}]}`, []string{
			`tokens.scopes.deploy[0].paths: the pattern "/hooks/" is not anchored at the start, so it matches any path that merely contains it; write "^/hooks/"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run([]string{"check"}, strings.NewReader(""), &out, &errOut, append(minimalEnv(), tt.env)); code != 0 {
				t.Fatalf("check exit %d, want 0 with only warnings:\n%s", code, errOut.String())
			}
			var want string
			for _, w := range tt.want {
				want += "warning: " + w + "\n"
			}
			if errOut.String() != want {
				t.Fatalf("check stderr:\n%s\nwant:\n%s", errOut.String(), want)
			}
		})
	}
}

// jsonString is s as a JSON string literal.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestSessionCookieNameDefault(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"https public URL", nil, "__Host-gatehouse"},
		{"http public URL", []string{"GATEHOUSE_SERVER_PUBLIC_URL=http://localhost:4180"}, "_gatehouse"},
		{"cookie domain", []string{"GATEHOUSE_SESSION_COOKIE_DOMAIN=example.com"}, "_gatehouse"},
		{"cookie not secure", []string{"GATEHOUSE_SESSION_COOKIE_SECURE=false"}, "_gatehouse"},
		{"configured name", []string{"GATEHOUSE_SESSION_COOKIE_NAME=dash_session"}, "dash_session"},
		{"configured legacy name", []string{"GATEHOUSE_SESSION_COOKIE_NAME=_gatehouse"}, "_gatehouse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := mustLoad(t, "", append(minimalEnv(), tt.env...))
			if got := l.Config.Session.CookieName; got != tt.want {
				t.Fatalf("session.cookie_name = %q, want %q", got, tt.want)
			}
		})
	}
	// From a file too, and `check` shows the name in use.
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "--config", writeFile(t, minimalYAML)}, strings.NewReader(""), &out, &errOut, nil); code != 0 {
		t.Fatalf("check exit %d: %s", code, errOut.String())
	}
	var printed struct {
		Session struct {
			CookieName string `yaml:"cookie_name"`
		} `yaml:"session"`
	}
	if err := yaml.Unmarshal(out.Bytes(), &printed); err != nil || printed.Session.CookieName != "__Host-gatehouse" {
		t.Fatalf("check printed cookie_name %q (%v):\n%s", printed.Session.CookieName, err, out.String())
	}
}

// privateTLSServer is an https server whose certificate chains to no
// system root (a private PKI), and a PEM file of its CA certificate.
func privateTLSServer(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "private") }))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, ca
}

func TestAuthCAFileIsTrustedByProviderClients(t *testing.T) {
	srv, ca := privateTLSServer(t)
	l := mustLoad(t, "", append(minimalEnv(), "GATEHOUSE_AUTH_CA_FILE="+ca))
	if l.ProviderRoots == nil {
		t.Fatal("auth.ca_file gave no roots")
	}
	resp, err := newProviderClient(l.ProviderRoots).Get(srv.URL)
	if err != nil {
		t.Fatalf("the provider client does not trust auth.ca_file: %v", err)
	}
	_ = resp.Body.Close()
	if _, err := newProviderClient(nil).Get(srv.URL); err == nil {
		t.Fatal("without auth.ca_file the private CA is trusted anyway")
	}
	if !slices.Contains(l.watched(), ca) {
		t.Errorf("auth.ca_file is not watched: %q", l.watched())
	}
	if l := mustLoad(t, "", minimalEnv()); l.ProviderRoots != nil {
		t.Error("roots without auth.ca_file: Go's defaults should stay")
	}
}

func TestCAFilesAreCheckedAtLoad(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(key, []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, ca := privateTLSServer(t)
	tests := []struct {
		env  []string
		want string
	}{
		{[]string{"GATEHOUSE_AUTH_CA_FILE=" + filepath.Join(dir, "nope.pem")},
			"auth.ca_file (GATEHOUSE_AUTH_CA_FILE): cannot read the CA bundle"},
		{[]string{"GATEHOUSE_AUTH_CA_FILE=" + key},
			"auth.ca_file (GATEHOUSE_AUTH_CA_FILE): " + key + " holds no PEM certificate"},
		{[]string{"GATEHOUSE_UPSTREAM_URL=https://app.internal", "GATEHOUSE_UPSTREAM_TLS_CA_FILE=" + key},
			"upstream.tls.ca_file (GATEHOUSE_UPSTREAM_TLS_CA_FILE): " + key + " holds no PEM certificate"},
		{[]string{"GATEHOUSE_UPSTREAM_URL=http://app.internal", "GATEHOUSE_UPSTREAM_TLS_CA_FILE=" + ca},
			"upstream.tls (GATEHOUSE_UPSTREAM_TLS): applies to an https upstream only"},
	}
	for _, tt := range tests {
		lines := problemLines(t, "", append(minimalEnv(), tt.env...))
		if len(lines) != 1 || !strings.HasPrefix(lines[0], tt.want) {
			t.Errorf("%q: problems %q, want one starting %q", tt.env, lines, tt.want)
		}
	}
}

func TestUpstreamTLSFromConfig(t *testing.T) {
	srv, ca := privateTLSServer(t)
	yaml := minimalYAML + `
upstream:
  url: ` + srv.URL + `
  tls:
    ca_file: ` + ca + `
    server_name: example.com
`
	l := mustLoad(t, writeFile(t, yaml), nil)
	if got := l.Config.Upstream.TLS; got.CAFile != ca || got.ServerName != "example.com" || got.InsecureSkipVerify {
		t.Fatalf("upstream.tls = %+v", got)
	}
	if !slices.Contains(l.watched(), ca) {
		t.Errorf("upstream.tls.ca_file is not watched: %q", l.watched())
	}
	for _, w := range l.Warnings {
		if strings.Contains(w, "insecure_skip_verify") {
			t.Errorf("warning without insecure_skip_verify: %s", w)
		}
	}
	l = mustLoad(t, "", append(minimalEnv(), "GATEHOUSE_UPSTREAM_URL="+srv.URL, "GATEHOUSE_UPSTREAM_TLS_INSECURE_SKIP_VERIFY=true"))
	if !slices.ContainsFunc(l.Warnings, func(w string) bool {
		return strings.HasPrefix(w, "upstream.tls.insecure_skip_verify is true: THE UPSTREAM'S CERTIFICATE IS NOT CHECKED")
	}) {
		t.Errorf("no loud warning for insecure_skip_verify: %q", l.Warnings)
	}
	// The request goes through the configured transport.
	a, err := newApp(l, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	l = mustLoad(t, writeFile(t, yaml), nil)
	h, err := a.build(l)
	if err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]http.Handler{"insecure_skip_verify": a, "ca_file": h} {
		sess := session.NewManager(l.Config.Session, a.store, nil)
		rec := httptest.NewRecorder()
		if _, err := sess.Create(context.Background(), rec, identity.Identity{Provider: "corp", Subject: "1", User: "alice",
			Email: "alice@example.com", EmailVerified: true, Groups: []string{"ops"}}, nil); err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodGet, "https://dash.example.com/", nil)
		req.AddCookie(rec.Result().Cookies()[0])
		got := httptest.NewRecorder()
		h.ServeHTTP(got, req)
		if got.Code != http.StatusOK || got.Body.String() != "private" {
			t.Errorf("%s: %d %q", name, got.Code, got.Body.String())
		}
	}
}

func TestUISection(t *testing.T) {
	l := mustLoad(t, "", minimalEnv())
	if l.Config.UI.Title != "Gatehouse" || l.Pages == nil {
		t.Fatalf("ui defaults: %+v", l.Config.UI)
	}
	dir := t.TempDir()
	logo := filepath.Join(dir, "logo.svg")
	if err := os.WriteFile(logo, []byte(`<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>`), 0o600); err != nil {
		t.Fatal(err)
	}
	templates := filepath.Join(dir, "templates")
	if err := os.Mkdir(templates, 0o700); err != nil {
		t.Fatal(err)
	}
	signIn := filepath.Join(templates, "sign_in.html")
	if err := os.WriteFile(signIn, []byte(`{{define "content"}}<h1>Hello from {{.UI.Title}}</h1>{{range .Providers}}<a href="{{.StartURL}}">{{.DisplayName}}</a>{{end}}{{end}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, minimalYAML+`
ui:
  title: "Acme Ops"
  logo_file: `+logo+`
  footer_html: '<a href="mailto:ops@example.com">ops</a>'
  custom_templates_dir: `+templates+`
  skip_provider_button: false
`)
	l = mustLoad(t, file, nil)
	if c := l.Config.UI; c.Title != "Acme Ops" || c.LogoFile != logo || c.CustomTemplatesDir != templates {
		t.Fatalf("ui = %+v", c)
	}
	for _, f := range []string{logo, signIn} {
		if !slices.Contains(l.watched(), f) {
			t.Errorf("%s is not watched: %q", filepath.Base(f), l.watched())
		}
	}
	a, err := newApp(l, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://dash.example.com/oauth2/sign_in?rd=/x", nil))
	body := rec.Body.String()
	for _, want := range []string{"<title>Sign in · Acme Ops</title>", "<h1>Hello from Acme Ops</h1>", "data:image/svg&#43;xml;base64,", // + escaped in the attribute
		`<a href="mailto:ops@example.com">ops</a>`, `href="/oauth2/start?provider=corp&amp;rd=%2Fx"`} {
		if !strings.Contains(body, want) {
			t.Errorf("sign-in page lacks %q:\n%s", want, body)
		}
	}

	// The environment sets the section too, and skip_provider_button
	// goes straight to the one provider, keeping rd.
	l = mustLoad(t, "", append(minimalEnv(), "GATEHOUSE_UI_SKIP_PROVIDER_BUTTON=true", "GATEHOUSE_UI_TITLE=Env Title"))
	h, err := a.build(l)
	if err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://dash.example.com/oauth2/sign_in?rd=/x", nil))
	if rec.Code != http.StatusFound || rec.Header().Get("Location") != "/oauth2/start?provider=corp&rd=%2Fx" {
		t.Errorf("skip_provider_button: %d to %q", rec.Code, rec.Header().Get("Location"))
	}
	// With two providers there is nothing to skip to: a warning says so.
	l = mustLoad(t, "", append(minimalEnv(), "GATEHOUSE_UI_SKIP_PROVIDER_BUTTON=true",
		"GATEHOUSE_AUTH_OIDC_OTHER_ISSUER_URL=https://other.example.com", "GATEHOUSE_AUTH_OIDC_OTHER_CLIENT_ID=x"))
	if !slices.ContainsFunc(l.Warnings, func(w string) bool { return strings.HasPrefix(w, "ui.skip_provider_button: 2 sign-in providers") }) {
		t.Errorf("warnings = %q", l.Warnings)
	}
}

func TestCheckRendersCustomTemplates(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "denied.html"), []byte(`{{define "content"}}{{.Mesage}}{{end}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sign_in.html"), []byte(`{{define "content"}}{{range .Providers}}{{end}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	env := append(minimalEnv(), "GATEHOUSE_UI_CUSTOM_TEMPLATES_DIR="+dir, "GATEHOUSE_UI_FOOTER_HTML=<script>x</script>")
	if code := run([]string{"check"}, strings.NewReader(""), &out, &errOut, env); code != 2 {
		t.Fatalf("check exit %d, want 2:\n%s", code, errOut.String())
	}
	for _, want := range []string{
		"ui.custom_templates_dir (GATEHOUSE_UI_CUSTOM_TEMPLATES_DIR): denied.html: template: denied.html:1:",
		`map has no entry for key "Mesage"`,
		"ui.custom_templates_dir (GATEHOUSE_UI_CUSTOM_TEMPLATES_DIR): sign_in.html: template: sign_in.html:1:",
	} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut.String())
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(errOut.String()), "\n")[1:] {
		if !problemLine.MatchString(line) && !strings.HasPrefix(line, "warning: ") {
			t.Errorf("line %q is not `key (GATEHOUSE_KEY): message`", line)
		}
	}
}

func TestPublicURLOnPlainHTTPWarns(t *testing.T) {
	tests := []struct {
		url  string
		warn bool
	}{
		{"https://dash.example.com", false},
		{"http://127.0.0.1:4180", false},
		{"http://localhost:4180", false},
		{"http://[::1]:4180", false},
		{"http://dash.example.com", true},
		{"http://10.0.0.5:4180", true},
	}
	for _, tt := range tests {
		u, _ := url.Parse(tt.url)
		if got := len(publicURLWarnings(u)) > 0; got != tt.warn {
			t.Errorf("%s: warning %v, want %v", tt.url, got, tt.warn)
		}
	}
}
