package proxy

import (
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/pages"
)

// tlsUpstream is an https upstream whose certificate (for example.com,
// 127.0.0.1 and ::1) chains to no system root, as on a private PKI, and
// a file holding its CA certificate.
func tlsUpstream(t *testing.T) (srv *httptest.Server, caFile string) {
	t.Helper()
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "private upstream")
	}))
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, caFile
}

func TestUpstreamTLS(t *testing.T) {
	srv, caFile := tlsUpstream(t)
	tests := []struct {
		name     string
		tls      UpstreamTLSConfig
		want     int
		wantWarn bool
	}{
		{"the private CA", UpstreamTLSConfig{CAFile: caFile}, http.StatusOK, false},
		{"system roots only", UpstreamTLSConfig{}, http.StatusBadGateway, false},
		{"the private CA and the certificate's name", UpstreamTLSConfig{CAFile: caFile, ServerName: "example.com"}, http.StatusOK, false},
		{"the private CA but a name the certificate lacks", UpstreamTLSConfig{CAFile: caFile, ServerName: "wrong.example.net"}, http.StatusBadGateway, false},
		{"no checks at all", UpstreamTLSConfig{InsecureSkipVerify: true}, http.StatusOK, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := UpstreamConfig{URL: srv.URL, Timeout: 5 * time.Second, TLS: tt.tls}
			target, _, ps := cfg.Validate()
			if len(ps) > 0 {
				t.Fatalf("problems: %v", ps)
			}
			warnings := strings.Join(cfg.Warnings(), "\n")
			if got := strings.Contains(warnings, "upstream.tls.insecure_skip_verify is true") &&
				strings.Contains(warnings, "NOT CHECKED"); got != tt.wantWarn {
				t.Errorf("warnings = %q, want the insecure_skip_verify warning: %v", warnings, tt.wantWarn)
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			u := newUpstream(target, cfg, newIdentityHeaders(HeadersConfig{}), nil, "_gatehouse", pages.New(), log, nil)
			rec := httptest.NewRecorder()
			u.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://dash.example.com/", nil))
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body.String())
			}
			if tt.want == http.StatusOK && rec.Body.String() != "private upstream" {
				t.Errorf("body %q", rec.Body.String())
			}
		})
	}
}

// TestUpstreamTLSCAFileChangedAfterLoad: a CA file that turns unreadable
// between validation and use fails closed, never falling back to the
// system's roots.
func TestUpstreamTLSCAFileChangedAfterLoad(t *testing.T) {
	srv, caFile := tlsUpstream(t)
	cfg := UpstreamConfig{URL: srv.URL, Timeout: 5 * time.Second, TLS: UpstreamTLSConfig{CAFile: caFile}}
	target, _, ps := cfg.Validate()
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	if err := os.WriteFile(caFile, []byte("rotated away"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	u := newUpstream(target, cfg, newIdentityHeaders(HeadersConfig{}), nil, "_gatehouse", pages.New(), log, nil)
	rec := httptest.NewRecorder()
	u.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://dash.example.com/", nil))
	if rec.Code != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", rec.Code)
	}
}

func TestUpstreamTLSValidation(t *testing.T) {
	dir := t.TempDir()
	noCert := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(noCert, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, caFile := tlsUpstream(t)
	tests := []struct {
		name    string
		url     string
		tls     UpstreamTLSConfig
		key     string
		message string
	}{
		{"missing CA file", "https://app.internal", UpstreamTLSConfig{CAFile: filepath.Join(dir, "nope.pem")}, "tls.ca_file", "cannot read the CA bundle"},
		{"a file without certificates", "https://app.internal", UpstreamTLSConfig{CAFile: noCert}, "tls.ca_file", "holds no PEM certificate"},
		{"CA file with an http upstream", "http://app.internal", UpstreamTLSConfig{CAFile: caFile}, "tls", "https upstream only"},
		{"server name with an http upstream", "http://app.internal", UpstreamTLSConfig{ServerName: "app.internal"}, "tls", "https upstream only"},
		{"skip verify with an http upstream", "http://app.internal", UpstreamTLSConfig{InsecureSkipVerify: true}, "tls", "https upstream only"},
		{"a server name that is no name", "https://10.0.0.1", UpstreamTLSConfig{ServerName: "app internal"}, "tls.server_name", "not a host name"},
		{"skip verify with a CA file", "https://app.internal", UpstreamTLSConfig{CAFile: caFile, InsecureSkipVerify: true}, "tls.insecure_skip_verify", "checks no certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := UpstreamConfig{URL: tt.url, Timeout: time.Second, TLS: tt.tls}
			_, _, ps := cfg.Validate()
			if len(ps) != 1 || ps[0].Key != tt.key || !strings.Contains(ps[0].Message, tt.message) {
				t.Fatalf("problems = %+v, want one for %s saying %q", ps, tt.key, tt.message)
			}
		})
	}
	for _, ok := range []UpstreamTLSConfig{{}, {CAFile: caFile}, {ServerName: "10.0.0.1"}, {ServerName: "app.svc.cluster.local"}} {
		cfg := UpstreamConfig{URL: "https://10.0.0.1:8443", Timeout: time.Second, TLS: ok}
		if _, _, ps := cfg.Validate(); len(ps) > 0 {
			t.Errorf("%+v: %v", ok, ps)
		}
	}
}
