package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/session"
)

// testPoll is the watcher's polling interval in these tests.
const testPoll = 10 * time.Millisecond

// refused is what the log says when a reload is refused.
const refused = "configuration reload refused"

// lockedBuffer is a log sink that tests may read while the watcher writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// eventually polls cond until it holds, failing the test at the deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(testPoll)
	}
}

// startWatching runs watchConfig until the test ends.
func startWatching(t *testing.T, a *app, l *Loaded) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchConfig(ctx, a, l, nil, testPoll)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	// Write and rename, as Kubernetes and editors do, so that the watcher
	// never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestEmailsFileChangeAppliesWithoutRestart(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("upstream")) }))
	defer upstream.Close()
	dir := t.TempDir()
	emails := filepath.Join(dir, "emails.txt")
	writeTestFile(t, emails, "alice@example.com\nbob@example.com\n")
	file := filepath.Join(dir, "gatehouse.yaml")
	writeTestFile(t, file, `
server:
  public_url: https://dash.example.com
  metrics_listen: ""
upstream:
  url: `+upstream.URL+`
session:
  secret: "`+secret+`"
auth:
  allowed_emails_file: `+emails+`
  oidc:
    corp:
      issuer_url: https://sso.example.com
      client_id: gatehouse
      client_secret: oidc-client-secret-value
`)
	l := mustLoad(t, file, nil)
	logs := &lockedBuffer{}
	a, err := newApp(l, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()

	// Sessions as a sign-in with corp leaves them.
	sessions := session.NewManager(l.Config.Session, a.store, nil)
	cookies := map[string]*http.Cookie{}
	for _, user := range []string{"alice", "bob"} {
		rec := httptest.NewRecorder()
		id := identity.Identity{Provider: "corp", Subject: user, User: user, Email: user + "@example.com", EmailVerified: true}
		if _, err := sessions.Create(context.Background(), rec, id, nil); err != nil {
			t.Fatal(err)
		}
		cookies[user] = rec.Result().Cookies()[0]
	}
	status := func(user string) int {
		r := httptest.NewRequest(http.MethodGet, "https://dash.example.com/reports", nil)
		r.AddCookie(cookies[user])
		w := httptest.NewRecorder()
		a.ServeHTTP(w, r)
		return w.Code
	}
	if status("alice") != http.StatusOK || status("bob") != http.StatusOK {
		t.Fatalf("before any change: alice %d, bob %d; want 200 for both", status("alice"), status("bob"))
	}
	startWatching(t, a, l)

	// Removing alice from the file revokes her live session, with no
	// restart and no change to the config file itself.
	writeTestFile(t, emails, "bob@example.com\n")
	eventually(t, "alice's removal to apply", func() bool { return status("alice") == http.StatusForbidden })
	if got := status("bob"); got != http.StatusOK {
		t.Fatalf("bob, still listed, got %d", got)
	}

	// A broken file is refused; the configuration in force stays.
	refusals := strings.Count(logs.String(), refused)
	writeTestFile(t, emails, "bob@example.com\nalice at example.com\n")
	eventually(t, "the broken file to be refused", func() bool { return strings.Count(logs.String(), refused) > refusals })
	if a, b := status("alice"), status("bob"); a != http.StatusForbidden || b != http.StatusOK {
		t.Fatalf("after a refused reload: alice %d, bob %d; want 403 and 200 (the previous list)", a, b)
	}
	if strings.Contains(logs.String(), "oidc-client-secret-value") || strings.Contains(logs.String(), secret) {
		t.Fatal("a secret was logged")
	}

	// Fixed, the file applies again.
	writeTestFile(t, emails, "bob@example.com\nalice@example.com\n")
	eventually(t, "alice's return to apply", func() bool { return status("alice") == http.StatusOK })
}

// writeCertificate writes a self-signed certificate for 127.0.0.1 with
// the common name cn, and its key.
func writeCertificate(t *testing.T, certFile, keyFile, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	writeTestFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}

func TestRenewedTLSCertificateIsServedWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeCertificate(t, certFile, keyFile, "first")
	env := append(minimalEnv(), "GATEHOUSE_SERVER_TLS_CERT_FILE="+certFile, "GATEHOUSE_SERVER_TLS_KEY_FILE="+keyFile)
	l, err := loadConfig("", env) // no config file: the environment names the pair
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	a, err := newApp(l, log)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serveOn(ctx, ln, a, l, log) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serveOn: %v", err)
		}
	}()
	ctxWatch, stopWatch := context.WithCancel(context.Background())
	watching := make(chan struct{})
	go func() { defer close(watching); watchConfig(ctxWatch, a, l, env, testPoll) }()
	defer func() { stopWatch(); <-watching }()

	servedName := func() string {
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return "error: " + err.Error()
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := servedName(); got != "first" {
		t.Fatalf("served %q, want the certificate \"first\"", got)
	}
	writeCertificate(t, certFile, keyFile, "renewed")
	eventually(t, "the renewed certificate to be served", func() bool { return servedName() == "renewed" })

	// A broken certificate is refused; the one in force is still served.
	// (Renewing above may have been refused once already, between the
	// writes of the key and of the certificate.)
	refusals := strings.Count(logs.String(), refused)
	writeTestFile(t, certFile, "not a certificate")
	eventually(t, "the broken certificate to be refused", func() bool { return strings.Count(logs.String(), refused) > refusals })
	if got := servedName(); got != "renewed" {
		t.Fatalf("after a refused reload: served %q, want \"renewed\"", got)
	}
}

func TestEveryNamedFileIsWatched(t *testing.T) {
	dir := t.TempDir()
	path := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeCertificate(t, certFile, keyFile, "gatehouse")
	signingKey := filepath.Join(dir, "signing.key")
	writeCertificate(t, filepath.Join(dir, "unused.crt"), signingKey, "unused")
	sessionSecret := path("session-secret", secret)
	clientSecret := path("client-secret", "from-a-file")
	emails := path("emails", "alice@example.com\n")
	var env []string
	for _, kv := range minimalEnv() {
		if !strings.HasPrefix(kv, "GATEHOUSE_SESSION_SECRET=") && !strings.HasPrefix(kv, "GATEHOUSE_AUTH_OIDC_CORP_CLIENT_SECRET=") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"GATEHOUSE_SESSION_SECRET_FILE="+sessionSecret,
		"GATEHOUSE_AUTH_OIDC_CORP_CLIENT_SECRET_FILE="+clientSecret,
		"GATEHOUSE_AUTH_ALLOWED_EMAILS_FILE="+emails,
		"GATEHOUSE_HEADERS_ASSERTION_SIGNING_KEY_FILES="+signingKey,
		"GATEHOUSE_SERVER_TLS_CERT_FILE="+certFile,
		"GATEHOUSE_SERVER_TLS_KEY_FILE="+keyFile,
	)
	config := writeFile(t, "logging:\n  level: info\n")
	l := mustLoad(t, config, env)
	want := []string{config, certFile, keyFile, emails, clientSecret, sessionSecret, signingKey}
	got := l.watched()
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			t.Errorf("%s is not watched; watched: %q", filepath.Base(w), got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("watched %q, want exactly %q", got, want)
	}
	// Any change to any of them changes the fingerprint the watcher polls.
	before := filesHash(got)
	if before != l.stamp {
		t.Error("the fingerprint taken at load differs from the files' contents")
	}
	for _, f := range want {
		orig, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, append(orig, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
		if filesHash(got) == before {
			t.Errorf("a change to %s goes unnoticed", filepath.Base(f))
		}
		if err := os.WriteFile(f, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		if h := filesHash(got); !reflect.DeepEqual(h, before) {
			t.Errorf("restoring %s does not restore the fingerprint", filepath.Base(f))
		}
	}
}

func TestServeLogsEachWarningOnceAtStart(t *testing.T) {
	env := append(minimalEnv(),
		"GATEHOUSE_SERVER_LISTEN=127.0.0.1:0",
		"GATEHOUSE_SERVER_METRICS_LISTEN=",
		"GATEHOUSE_UPSTREAM_SKIP_AUTH_ROUTES=/health$",
		"GATEHOUSE_SESION_LIFETIME=1h",
	)
	l := mustLoad(t, "", env)
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // start, log, and stop at once
	if err := serve(ctx, l, slog.New(slog.NewJSONHandler(logs, nil)), env); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`upstream.skip_auth_routes: the pattern \"/health$\" is not anchored at the start`,
		"GATEHOUSE_SESION_LIFETIME names no configuration key and is ignored; did you mean GATEHOUSE_SESSION_LIFETIME?",
	} {
		if n := strings.Count(logs.String(), want); n != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", want, n, logs.String())
		}
	}
}
