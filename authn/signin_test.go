package authn

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/pages"
)

// renamedProvider is a scriptedProvider under another name, for a sign-in
// page with two buttons.
type renamedProvider struct {
	*scriptedProvider
	name string
}

func (p renamedProvider) Name() string        { return p.name }
func (p renamedProvider) DisplayName() string { return strings.ToUpper(p.name) }

func TestSkipProviderButton(t *testing.T) {
	public, _ := url.Parse("https://dash.example.com")
	one := []Provider{&scriptedProvider{}}
	two := []Provider{&scriptedProvider{}, renamedProvider{&scriptedProvider{}, "corp"}}
	tests := []struct {
		name      string
		providers []Provider
		skip      bool
		rd        string
		wantTo    string // "" expects the page with buttons
	}{
		{"one provider, skip", one, true, "/dash?x=1", "/oauth2/start?provider=test&rd=%2Fdash%3Fx%3D1"},
		{"one provider, skip, no rd", one, true, "", "/oauth2/start?provider=test&rd=%2F"},
		{"one provider, skip, foreign rd falls back", one, true, "https://evil.example/x", "/oauth2/start?provider=test&rd=%2F"},
		{"one provider, no skip", one, false, "/dash", ""},
		{"two providers, skip has nothing to skip to", two, true, "/dash", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			login := NewLogin(LoginConfig{
				Providers: tt.providers, Pages: pages.New(), PublicURL: public, Prefix: "/oauth2",
				Secret: "0123456789abcdef0123456789abcdef", Cookie: "_gatehouse",
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), SkipProviderButton: tt.skip,
			})
			rec := httptest.NewRecorder()
			login.SignIn(rec, httptest.NewRequest(http.MethodGet, "/oauth2/sign_in?rd="+url.QueryEscape(tt.rd), nil))
			if tt.wantTo != "" {
				if rec.Code != http.StatusFound || rec.Header().Get("Location") != tt.wantTo {
					t.Fatalf("got %d to %q, want 302 to %q", rec.Code, rec.Header().Get("Location"), tt.wantTo)
				}
				if rec.Header().Get("Cache-Control") != "no-store" {
					t.Error("the redirect may be cached")
				}
				return
			}
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d, want the sign-in page", rec.Code)
			}
			for _, p := range tt.providers {
				if !strings.Contains(rec.Body.String(), `id="provider-`+p.Name()+`"`) {
					t.Errorf("no button for %s:\n%s", p.Name(), rec.Body.String())
				}
			}
		})
	}
}
