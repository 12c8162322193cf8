package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
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
	fromEnv, err := loadConfig("", minimalEnv())
	if err != nil {
		t.Fatal(err)
	}
	fromYAML, err := loadConfig(writeFile(t, minimalYAML), nil)
	if err != nil {
		t.Fatal(err)
	}
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
	l, err := loadConfig(writeFile(t, minimalYAML+"  github:\n    scopes: [a, b, c, d]\n"), env)
	if err != nil {
		t.Fatal(err)
	}
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
	l, err := loadConfig("", env)
	if err != nil {
		t.Fatal(err)
	}
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
