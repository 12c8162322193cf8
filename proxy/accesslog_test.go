package proxy

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAccessLog: one JSON line per request with the path as received
// (never the query), status and handler; probes only at debug level.
func TestAccessLog(t *testing.T) {
	f := newFixture(t, fixtureOpts{skipAuth: []string{"^/public/"}})
	for _, tt := range []struct {
		level    slog.Level
		target   string
		wantLine bool
		wantPath string
	}{
		{slog.LevelInfo, "/public/x?code=secret-code", true, "/public/x"},
		{slog.LevelInfo, "/ping", false, ""},
		{slog.LevelInfo, "/ready", false, ""},
		{slog.LevelDebug, "/ping", true, "/ping"},
		{slog.LevelInfo, "/public/%0d%0a{\"forged\":1}", true, "/public/%0D%0A%7B%22forged%22:1%7D"},
	} {
		var buf bytes.Buffer
		h := Observe(f.h, slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: tt.level})), nil, nil)
		r := httptest.NewRequest(http.MethodGet, tt.target, nil)
		h.ServeHTTP(httptest.NewRecorder(), r)
		select {
		case <-f.seen:
		default:
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if !tt.wantLine {
			if buf.Len() != 0 {
				t.Errorf("%s at %v: logged %s", tt.target, tt.level, buf.String())
			}
			continue
		}
		if len(lines) != 1 {
			t.Fatalf("%s: %d lines: %s", tt.target, len(lines), buf.String())
		}
		var line map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &line); err != nil {
			t.Fatalf("%s: not JSON: %s", tt.target, lines[0])
		}
		if line["path"] != tt.wantPath || line["event"] != "access" || line["status"] == nil {
			t.Errorf("%s: %v", tt.target, line)
		}
		if strings.Contains(lines[0], "secret-code") {
			t.Errorf("the query was logged: %s", lines[0])
		}
	}
}

// clientIP skips formatting an IPv4 peer again (it runs for the access
// log and X-Real-Ip on every request): the text it returns must be
// exactly what formatting would give.
func TestPeerTextIsTheFormattedAddress(t *testing.T) {
	for _, ra := range []string{"1.2.3.4:5", "1.2.3.4", "001.2.3.4:5", "[::ffff:1.2.3.4]:5", "[::1]:5", "[fe80::1%eth0]:1", "1.2.3.4%x:1", "bad"} {
		r := &http.Request{RemoteAddr: ra}
		a, text := peerText(r)
		if text != "" && text != a.String() {
			t.Errorf("%s: text %q, formatted %q", ra, text, a.String())
		}
		if got, want := trustedProxies(nil).clientIP(r), a.String(); got != want {
			t.Errorf("%s: clientIP %q, want %q", ra, got, want)
		}
	}
}
