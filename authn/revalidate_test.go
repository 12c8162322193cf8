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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// scriptedProvider answers Revalidate from a script, counting calls.
type scriptedProvider struct {
	mu    sync.Mutex
	calls atomic.Int32
	id    identity.Identity
	err   error
	gate  chan struct{} // when set, Revalidate waits on it
}

func (p *scriptedProvider) Name() string        { return "test" }
func (p *scriptedProvider) DisplayName() string { return "Test" }
func (p *scriptedProvider) AuthCodeURL(context.Context, *loginState) (string, error) {
	return "", errors.New("unused")
}
func (p *scriptedProvider) Finish(context.Context, *http.Request, *loginState) (identity.Identity, *session.ProviderToken, error) {
	return identity.Identity{}, nil, errors.New("unused")
}
func (p *scriptedProvider) Rule() filters.Rule          { return filters.Rule{} }
func (p *scriptedProvider) Ready(context.Context) error { return nil }
func (p *scriptedProvider) Revalidate(ctx context.Context, tok *session.ProviderToken) (identity.Identity, *session.ProviderToken, error) {
	p.calls.Add(1)
	if p.gate != nil {
		<-p.gate
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.id, tok, p.err
}

func (p *scriptedProvider) set(id identity.Identity, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.id, p.err = id, err
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newRevalidatorFixture(t *testing.T) (*Revalidator, *scriptedProvider, *sessionstore.Memory, *clock, *session.Session) {
	t.Helper()
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	store := sessionstore.NewMemory(clk.now)
	sessions := session.NewManager(session.Config{
		CookieName: "_gatehouse", CookieSameSite: "lax", Lifetime: 100 * time.Hour, IdleTimeout: 100 * time.Hour,
	}, store, clk.now)
	prov := &scriptedProvider{}
	alice := identity.Identity{Provider: "test", Subject: "1", User: "alice", Groups: []string{"ops"}}
	prov.set(alice, nil)
	public, _ := url.Parse("https://dash.example.com")
	login := NewLogin(LoginConfig{
		Providers: []Provider{prov}, Sessions: sessions, Pages: pages.New(), PublicURL: public,
		Prefix: "/oauth2", Secret: "0123456789abcdef0123456789abcdef", Cookie: "_gatehouse",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clk.now,
	})
	s, err := sessions.Create(context.Background(), httptest.NewRecorder(), alice, &session.ProviderToken{AccessToken: "at"})
	if err != nil {
		t.Fatal(err)
	}
	return NewRevalidator(login, sessions, time.Hour, clk.now), prov, store, clk, s
}

func TestRevalidatorNotDueMakesNoProviderCall(t *testing.T) {
	rv, prov, _, clk, s := newRevalidatorFixture(t)
	clk.advance(59 * time.Minute)
	if _, err := rv.Check(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if n := prov.calls.Load(); n != 0 {
		t.Fatalf("provider called %d times before the interval", n)
	}
}

func TestRevalidatorPicksUpNewMembership(t *testing.T) {
	rv, prov, _, clk, s := newRevalidatorFixture(t)
	prov.set(identity.Identity{Provider: "test", Subject: "1", User: "alice", Groups: []string{"dev"}}, nil)
	clk.advance(61 * time.Minute)
	got, err := rv.Check(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Identity.Groups) != 1 || got.Identity.Groups[0] != "dev" {
		t.Fatalf("groups = %v, want [dev]", got.Identity.Groups)
	}
	if !got.ValidatedAt.Equal(clk.now()) {
		t.Fatalf("ValidatedAt not advanced")
	}
}

func TestRevalidatorRevokedEndsSession(t *testing.T) {
	rv, prov, store, clk, s := newRevalidatorFixture(t)
	prov.set(identity.Identity{}, ErrRevoked)
	clk.advance(2 * time.Hour)
	if _, err := rv.Check(context.Background(), s); !errors.Is(err, ErrRevoked) {
		t.Fatalf("err = %v, want ErrRevoked", err)
	}
	// The record is gone from the store: the cookie no longer works.
	// (The user's generation record stays: it is not a session.)
	for _, k := range store.Keys() {
		if strings.HasPrefix(k, "s1:") {
			t.Fatalf("session record %s still in the store after revocation", k)
		}
	}
}

func TestRevalidatorSubjectChangeIsRevoked(t *testing.T) {
	rv, prov, _, clk, s := newRevalidatorFixture(t)
	prov.set(identity.Identity{Provider: "test", Subject: "2", User: "mallory"}, nil)
	clk.advance(2 * time.Hour)
	if _, err := rv.Check(context.Background(), s); !errors.Is(err, ErrRevoked) {
		t.Fatalf("err = %v, want ErrRevoked for another subject", err)
	}
}

func TestRevalidatorTransientFailureGraceThenFailsClosed(t *testing.T) {
	rv, prov, _, clk, s := newRevalidatorFixture(t)
	prov.set(identity.Identity{}, providerUnavailable(errors.New("502 from provider")))

	clk.advance(61 * time.Minute) // due, provider down: one more interval of grace
	got, err := rv.Check(context.Background(), s)
	if err != nil || got == nil {
		t.Fatalf("within grace: err = %v, want the session kept", err)
	}
	calls := prov.calls.Load()
	if _, err := rv.Check(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if prov.calls.Load() != calls {
		t.Fatalf("a failing provider was asked again at once; want a pause between attempts")
	}

	clk.advance(60 * time.Minute) // two intervals since the last good check
	if _, err := rv.Check(context.Background(), s); !errors.Is(err, ErrProviderDown) {
		t.Fatalf("after grace: err = %v, want ErrProviderDown", err)
	}

	// The provider recovers: access comes back without signing in again.
	prov.set(identity.Identity{Provider: "test", Subject: "1", User: "alice"}, nil)
	clk.advance(retryEvery)
	if _, err := rv.Check(context.Background(), s); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestRevalidatorConcurrentChecksShareOneCall(t *testing.T) {
	rv, prov, _, clk, s := newRevalidatorFixture(t)
	prov.gate = make(chan struct{})
	clk.advance(2 * time.Hour)
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each request loads its own copy of the session.
			c := *s
			_, err := rv.Check(context.Background(), &c)
			errs <- err
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for prov.calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(prov.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := prov.calls.Load(); n != 1 {
		t.Fatalf("provider called %d times for one session; want concurrent checks to share a call", n)
	}
}
