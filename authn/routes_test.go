package authn

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// routeHosts stands for a route table with grafana.example.com and
// *.apps.example.com.
func routeHosts(host string) bool {
	h := strings.ToLower(host)
	if i := strings.LastIndex(h, ":"); i >= 0 {
		h = h[:i]
	}
	return h == "grafana.example.com" || (strings.HasSuffix(h, ".apps.example.com") && strings.Count(h, ".") == 3)
}

func TestSafeRedirectToRouteHosts(t *testing.T) {
	httpPublic, _ := url.Parse("http://auth.test:4180")
	tests := []struct {
		rd     string
		public *url.URL
		want   string
	}{
		{"https://grafana.example.com/d/x?y=1", public, "https://grafana.example.com/d/x?y=1"},
		{"https://grafana.example.com:8443/", public, "https://grafana.example.com:8443/"}, // any port
		{"https://GRAFANA.example.com/", public, "https://GRAFANA.example.com/"},
		{"https://a.apps.example.com/", public, "https://a.apps.example.com/"},
		{"https://a.b.apps.example.com/", public, "/"},
		{"https://evil.example.net/", public, "/"},
		{"https://grafana.example.com.evil.example.net/", public, "/"},
		{"https://grafana.example.com@evil.example.net/", public, "/"},
		{"https://user@grafana.example.com/", public, "/"},
		{"https://evil.example.net#@grafana.example.com", public, "/"},
		{"https://evil.example.net\\@grafana.example.com", public, "/"},
		{"//grafana.example.com/", public, "/"},
		{"javascript://grafana.example.com/%0aalert(1)", public, "/"},
		{"http://grafana.example.com/", public, "/"}, // no downgrade from an https public_url
		{"http://grafana.example.com:8080/", httpPublic, "http://grafana.example.com:8080/"},
		{"https://grafana.example.com/", httpPublic, "https://grafana.example.com/"},
		{"https://dash.example.com/x", public, "https://dash.example.com/x"}, // public's host as before
		{"/x", public, "/x"},
		// Outside ASCII: never a route host, nor public's (case folding
		// would read U+0130 as "i" and U+212A, Kelvin, as "k").
		{"https://\u0130.apps.example.com/", public, "/"},
		{"https://%C4%B0.apps.example.com/", public, "/"},
		{"https://\u212A.apps.example.com/", public, "/"},
		{"https://da\u017Fh.example.com/", public, "/"}, // U+017F folds to "s"
	}
	for _, tt := range tests {
		if got := SafeRedirectTo(tt.rd, tt.public, routeHosts); got != tt.want {
			t.Errorf("SafeRedirectTo(%q, %s) = %q, want %q", tt.rd, tt.public, got, tt.want)
		}
	}
	// Without route hosts, nothing changes.
	if got := SafeRedirectTo("https://grafana.example.com/", public, nil); got != "/" {
		t.Errorf("without routes: %q", got)
	}
}

func FuzzSafeRedirectTo(f *testing.F) {
	for _, s := range []string{"https://grafana.example.com/", "https://a.apps.example.com:1/x", "https://evil.com", "//grafana.example.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rd string) {
		got := SafeRedirectTo(rd, public, routeHosts)
		if strings.HasPrefix(got, "/") {
			if strings.HasPrefix(got, "//") || strings.HasPrefix(got, "/\\") || strings.ContainsAny(got, "\\\t\r\n") {
				t.Fatalf("SafeRedirectTo(%q) = %q leaves the host", rd, got)
			}
			return
		}
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "https" || u.User != nil || !(strings.EqualFold(u.Host, public.Host) || routeHosts(u.Host)) {
			t.Fatalf("SafeRedirectTo(%q) = %q is neither the public host nor a route host", rd, got)
		}
	})
}

// fakeHandoff records what Start asked of it.
type fakeHandoff struct {
	issued []string // rd|binding
	err    error
}

func (f *fakeHandoff) Covers(rd string) bool {
	u, err := url.Parse(rd)
	return err == nil && u.Host != "" && routeHosts(u.Host)
}

func (f *fakeHandoff) Issue(_ context.Context, s *session.Session, rd, binding string) (string, error) {
	if f.err != nil {
		return "", f.err
	}
	if binding != "B" {
		return "", ErrBadBinding
	}
	f.issued = append(f.issued, rd+"|"+binding)
	u, _ := url.Parse(rd)
	return u.Scheme + "://" + u.Host + "/oauth2/handoff?code=c-" + s.Identity.User, nil
}

// startingProvider can begin a sign-in.
type startingProvider struct{ *scriptedProvider }

func (startingProvider) AuthCodeURL(context.Context, *loginState) (string, error) {
	return "https://idp.example/authorize", nil
}

func TestStartHandsOffToRouteHosts(t *testing.T) {
	store := sessionstore.NewMemory(nil)
	sessions := session.NewManager(session.Config{CookieName: "_gatehouse", CookieSameSite: "lax", Lifetime: time.Hour, IdleTimeout: time.Hour}, store, nil)
	rec := httptest.NewRecorder()
	if _, err := sessions.Create(context.Background(), rec, identity.Identity{Provider: "test", Subject: "1", User: "alice"}, nil); err != nil {
		t.Fatal(err)
	}
	cookie := rec.Result().Cookies()[0]
	newLogin := func(ho Handoff, providers ...Provider) *Login {
		if providers == nil {
			providers = []Provider{startingProvider{&scriptedProvider{}}}
		}
		return NewLogin(LoginConfig{
			Providers: providers, Sessions: sessions, Pages: pages.New(), PublicURL: public, Prefix: "/oauth2",
			Secret: "0123456789abcdef0123456789abcdef", Cookie: "_gatehouse", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			RouteHost: routeHosts, Handoff: ho,
		})
	}
	grafana := "https://grafana.example.com/d/x?orgId=1"
	tests := []struct {
		name     string
		query    string
		signedIn bool
		ho       *fakeHandoff
		want     int
		wantLoc  string
	}{
		{"signed in, bound: a code", "rd=" + url.QueryEscape(grafana) + "&binding=B", true, &fakeHandoff{}, 302,
			"https://grafana.example.com/oauth2/handoff?code=c-alice"},
		{"signed in, not bound: back to the route host to be bound", "rd=" + url.QueryEscape(grafana), true, &fakeHandoff{}, 302, grafana},
		{"signed in, a binding not ours: back to the route host", "rd=" + url.QueryEscape(grafana) + "&binding=forged", true, &fakeHandoff{}, 302, grafana},
		{"not signed in: sign in first", "rd=" + url.QueryEscape(grafana) + "&binding=B", false, &fakeHandoff{}, 302, "https://idp.example/authorize"},
		{"not a route host: no hand-off", "rd=" + url.QueryEscape("https://evil.example.net/") + "&binding=B", true, &fakeHandoff{}, 302, "https://idp.example/authorize"},
		{"store failure", "rd=" + url.QueryEscape(grafana) + "&binding=B", true, &fakeHandoff{err: errors.New("down")}, 503, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLogin(tt.ho)
			r := httptest.NewRequest(http.MethodGet, "https://dash.example.com/oauth2/start?"+tt.query, nil)
			if tt.signedIn {
				r.AddCookie(cookie)
			}
			rec := httptest.NewRecorder()
			l.Start(rec, r)
			if rec.Code != tt.want || (tt.wantLoc != "" && rec.Header().Get("Location") != tt.wantLoc) {
				t.Fatalf("%d %q, want %d %q", rec.Code, rec.Header().Get("Location"), tt.want, tt.wantLoc)
			}
			if strings.Contains(tt.name, "a code") && (len(tt.ho.issued) != 1 || tt.ho.issued[0] != grafana+"|B") {
				t.Fatalf("issued %v", tt.ho.issued)
			}
			if !strings.Contains(tt.name, "a code") && len(tt.ho.issued) != 0 {
				t.Fatalf("issued %v", tt.ho.issued)
			}
		})
	}
	// Several providers and none named: the person chooses on the sign-in page.
	l := newLogin(nil, startingProvider{&scriptedProvider{}}, renamedProvider{&scriptedProvider{}, "corp"})
	rec = httptest.NewRecorder()
	l.Start(rec, httptest.NewRequest(http.MethodGet, "https://dash.example.com/oauth2/start?rd="+url.QueryEscape(grafana), nil))
	if want := "/oauth2/sign_in?rd=" + url.QueryEscape(grafana); rec.Code != 302 || rec.Header().Get("Location") != want {
		t.Fatalf("%d %q, want %q", rec.Code, rec.Header().Get("Location"), want)
	}
}
