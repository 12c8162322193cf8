package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// The provider guides in docs/providers show each configuration twice, as
// YAML and as environment variables. TestDocsProviderPages loads every one
// of those blocks with loadConfig, the loader `gatehouse check` uses, so a
// guide cannot drift from what Gatehouse accepts.
//
// What the test reads on a page:
//
//   - every ```yaml block: a complete configuration (server.public_url,
//     session, upstream.url, auth), never a fragment, so that what a reader
//     copies works as it is. A block whose first line is a comment saying
//     it is "not Gatehouse's" (the provider's own configuration, such as
//     Dex's staticClients) is skipped;
//   - every ```sh block with GATEHOUSE_ lines, read as the environment:
//     "NAME=value" or "export NAME=value", one per line, with one pair of
//     surrounding quotes removed; other lines (comments, commands) are
//     skipped.
//
// A block that does not load fails the test with the page, the block's line
// and Gatehouse's own problem lines; so does a warning (an unanchored
// policy, a GATEHOUSE_ variable that names no key). The first YAML block
// and the first environment block of a page must give the same
// configuration, and the page must give the redirect URI of each provider
// it configures (and the logout URIs where it turns them on).
//
// Files. The blocks name secrets and keys by path (client_secret_file:
// /run/secrets/...), as a Kubernetes deployment would. The test writes a
// temporary file for every *_file path a page names and substitutes its
// path in the block before loading it, the same file for the same path
// across the page's blocks:
//
//   - service_account_file (Google): a service-account JSON key as the
//     Cloud console issues it, with a freshly generated RSA key, because
//     auth.google checks the key file at load (type, client_email,
//     token_uri, an RSA private key);
//   - ca_file: a self-signed certificate in PEM, because CA bundles are
//     parsed at load;
//   - any other *_file (client secrets, the session secret, a client
//     assertion): 48 characters of fake secret, long enough for
//     session.secret.
func TestDocsProviderPages(t *testing.T) {
	dir := filepath.Join("..", "..", "docs", "providers")
	pages, err := filepath.Glob(filepath.Join(dir, "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"README.md", "auth0.md", "authentik.md", "dex.md", "gitlab-self-managed.md",
		"google-workspace.md", "keycloak.md", "microsoft-entra-id.md", "okta.md",
	}
	var have []string
	for _, p := range pages {
		have = append(have, filepath.Base(p))
	}
	for _, w := range want {
		if !slices.Contains(have, w) {
			t.Errorf("docs/providers/%s is missing", w)
		}
	}
	for _, page := range pages {
		name := filepath.Base(page)
		t.Run(strings.TrimSuffix(name, ".md"), func(t *testing.T) {
			raw, err := os.ReadFile(page)
			if err != nil {
				t.Fatal(err)
			}
			text := string(raw)
			files := newDocsFiles(t)
			blocks := fencedBlocks(text)
			var yamls, envs []docsBlock
			for _, b := range blocks {
				switch {
				case b.lang == "yaml" && notGatehouse.MatchString(b.body):
					// the provider's own configuration
				case b.lang == "yaml":
					yamls = append(yamls, b)
				case (b.lang == "sh" || b.lang == "bash" || b.lang == "shell") && strings.Contains(b.body, "GATEHOUSE_"):
					envs = append(envs, b)
				}
			}
			// The index configures nothing; every provider page shows both.
			if name != "README.md" && (len(yamls) == 0 || len(envs) == 0) {
				t.Fatalf("docs/providers/%s: want the configuration as YAML and as environment variables; "+
					"found %d yaml and %d sh blocks with GATEHOUSE_ lines", name, len(yamls), len(envs))
			}
			var fromYAML, fromEnv *Loaded
			for i, b := range yamls {
				l := loadDocsYAML(t, files, name, b)
				if i == 0 {
					fromYAML = l
				}
			}
			for i, b := range envs {
				l := loadDocsEnv(t, files, name, b)
				if i == 0 {
					fromEnv = l
				}
			}
			if fromYAML == nil || fromEnv == nil {
				return // nothing to compare, or already reported
			}
			if !reflect.DeepEqual(fromYAML.Config, fromEnv.Config) {
				t.Errorf("docs/providers/%s: the first yaml block (line %d) and the first environment block (line %d) "+
					"give different configurations (- yaml, + environment):\n%s",
					name, yamls[0].line, envs[0].line, configDiff(t, fromYAML.Config, fromEnv.Config))
			}
			checkDocsURIs(t, name, text, fromYAML)
		})
	}
}

// docsBlock is one fenced code block of a page.
type docsBlock struct {
	lang string
	body string
	line int // of the opening fence, 1-based
}

// fencedBlocks returns the page's ``` fenced code blocks in order.
func fencedBlocks(text string) []docsBlock {
	var out []docsBlock
	var cur *docsBlock
	var body strings.Builder
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		fence := strings.TrimSpace(line)
		switch {
		case cur == nil && strings.HasPrefix(fence, "```"):
			lang, _, _ := strings.Cut(strings.TrimSpace(strings.TrimPrefix(fence, "```")), " ")
			cur = &docsBlock{lang: strings.ToLower(lang), line: n}
			body.Reset()
		case cur != nil && fence == "```":
			cur.body = body.String()
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			body.WriteString(line)
			body.WriteByte('\n')
		}
	}
	return out
}

// notGatehouse marks a YAML block as another program's configuration.
var notGatehouse = regexp.MustCompile(`\A\s*#[^\n]*not Gatehouse's`)

// yamlFileKey finds "some_file: /path" in a YAML block.
var yamlFileKey = regexp.MustCompile(`(?m)^\s*(?:-\s+)?([a-z_]*_file):\s*["']?([^"'\s#]+)`)

func loadDocsYAML(t *testing.T, files *docsFiles, page string, b docsBlock) *Loaded {
	t.Helper()
	body := b.body
	for _, m := range yamlFileKey.FindAllStringSubmatch(b.body, -1) {
		body = strings.ReplaceAll(body, m[2], files.path(m[1], m[2]))
	}
	f := filepath.Join(t.TempDir(), "gatehouse.yaml")
	if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := loadConfig(f, nil)
	if err != nil {
		t.Errorf("docs/providers/%s: the yaml block at line %d does not pass `gatehouse check`:\n%v", page, b.line, err)
		return nil
	}
	for _, w := range l.Warnings {
		t.Errorf("docs/providers/%s: the yaml block at line %d: warning: %s", page, b.line, w)
	}
	return l
}

// envLine is one assignment of an environment block.
var envLine = regexp.MustCompile(`^(?:export\s+)?(GATEHOUSE_[A-Z0-9_]+)=(.*)$`)

func loadDocsEnv(t *testing.T, files *docsFiles, page string, b docsBlock) *Loaded {
	t.Helper()
	var environ []string
	for _, line := range strings.Split(b.body, "\n") {
		m := envLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		name, value := m[1], unquote(strings.TrimSpace(m[2]))
		if strings.HasSuffix(name, "_FILE") {
			value = files.path(strings.ToLower(name), value)
		}
		environ = append(environ, name+"="+value)
	}
	l, err := loadConfig("", environ)
	if err != nil {
		t.Errorf("docs/providers/%s: the environment block at line %d does not pass `gatehouse check`:\n%v", page, b.line, err)
		return nil
	}
	for _, w := range l.Warnings {
		t.Errorf("docs/providers/%s: the environment block at line %d: warning: %s", page, b.line, w)
	}
	return l
}

// unquote removes one pair of matching surrounding quotes, as the shell
// would for a value without escapes.
func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '\'' || s[0] == '"') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

// checkDocsURIs makes sure the page gives, for each provider its first
// configuration enables, the redirect URI to register, and the logout
// URIs where that configuration turns logout on.
func checkDocsURIs(t *testing.T, page, text string, l *Loaded) {
	t.Helper()
	base := strings.TrimSuffix(l.Config.Server.PublicURL, "/") + l.Config.Server.PathPrefix
	var names []string
	a := l.Config.Auth
	for name, enabled := range map[string]bool{
		"github": a.GitHub.Enabled, "gitlab": a.GitLab.Enabled, "google": a.Google.Enabled, "microsoft": a.Microsoft.Enabled,
	} {
		if enabled {
			names = append(names, name)
		}
	}
	needs := []string{}
	for name, p := range a.OIDC {
		names = append(names, name)
		if p.BackchannelLogout {
			needs = append(needs, base+"/backchannel_logout/"+name)
		}
		if p.EndSession {
			needs = append(needs, base+"/signed_out")
		}
	}
	for _, name := range names {
		needs = append(needs, base+"/callback/"+name)
	}
	sort.Strings(needs)
	for _, uri := range needs {
		if !strings.Contains(text, uri) {
			t.Errorf("docs/providers/%s: its configuration needs %s registered at the provider, but the page does not give it", page, uri)
		}
	}
}

// docsFiles writes the files a page's blocks name, one per path.
type docsFiles struct {
	t     *testing.T
	dir   string
	paths map[string]string // path on the page -> temporary file
}

func newDocsFiles(t *testing.T) *docsFiles {
	return &docsFiles{t: t, dir: t.TempDir(), paths: map[string]string{}}
}

// path returns the temporary file that stands for the page's path, writing
// it the first time with the content its key needs; key is the YAML key or
// the variable's name in lower case, of which only the end counts.
func (f *docsFiles) path(key, pagePath string) string {
	if p, ok := f.paths[pagePath]; ok {
		return p
	}
	var content []byte
	switch {
	case strings.HasSuffix(key, "service_account_file"):
		content = docsServiceAccountKey(f.t)
	case strings.HasSuffix(key, "ca_file"):
		content = docsCACertificate(f.t)
	default:
		content = []byte("docs-test-fake-secret-0123456789abcdef0123456789\n")
	}
	p := filepath.Join(f.dir, strings.NewReplacer("/", "_", "\\", "_").Replace(strings.TrimPrefix(pagePath, "/")))
	if err := os.WriteFile(p, content, 0o600); err != nil {
		f.t.Fatal(err)
	}
	f.paths[pagePath] = p
	return p
}

// docsServiceAccountKey is a Google service-account key file in the shape
// the Cloud console downloads, with a new 2048-bit RSA key.
func docsServiceAccountKey(t *testing.T) []byte {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(map[string]string{
		"type":                        "service_account",
		"project_id":                  "docs-test-project",
		"private_key_id":              "0123456789abcdef0123456789abcdef01234567",
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                "gatehouse-groups@docs-test-project.iam.gserviceaccount.com",
		"client_id":                   "123456789012345678901",
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   "https://oauth2.googleapis.com/token",
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// docsCACertificate is a self-signed CA certificate in PEM.
func docsCACertificate(t *testing.T) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Docs Test Corp CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// configDiff lists the lines of the two configurations, as indented JSON,
// that only one of them has.
func configDiff(t *testing.T, a, b Config) string {
	t.Helper()
	lines := func(c Config) []string {
		j, err := json.MarshalIndent(c, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(string(j), "\n")
	}
	la, lb := lines(a), lines(b)
	var out []string
	for _, l := range la {
		if !slices.Contains(lb, l) {
			out = append(out, "- "+strings.TrimSpace(l))
		}
	}
	for _, l := range lb {
		if !slices.Contains(la, l) {
			out = append(out, "+ "+strings.TrimSpace(l))
		}
	}
	if len(out) == 0 {
		return "(they differ in a way JSON does not show)"
	}
	return strings.Join(out, "\n")
}
