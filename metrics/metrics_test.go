package metrics

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse/gatehouse/sessionstore"
)

func TestInstrumentedStoreCountsResults(t *testing.T) {
	m := New()
	s := m.InstrumentStore(sessionstore.NewMemory(nil), "memory")
	ctx := context.Background()
	if _, err := s.Get(ctx, "k"); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, "k", []byte("v"), time.Minute); !errors.Is(err, sessionstore.ErrExists) {
		t.Fatal(err)
	}
	for _, c := range []struct {
		op, result string
	}{{"get", "miss"}, {"set", "ok"}, {"add", "exists"}} {
		if got := testutil.ToFloat64(m.StoreOps.WithLabelValues("memory", c.op, c.result)); got != 1 {
			t.Errorf("%s/%s = %v, want 1", c.op, c.result, got)
		}
	}
}

func TestHandlerExposesSpecNames(t *testing.T) {
	m := New()
	m.Request("upstream", 200, time.Millisecond)
	m.Login("corp", "success")
	m.Denied("group")
	m.DeviceAuths.WithLabelValues("approved").Inc()
	m.UpstreamDuration.Observe(0.01)
	_ = m.InstrumentStore(sessionstore.NewMemory(nil), "memory").Delete(context.Background(), "x")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, name := range []string{
		`gatehouse_http_requests_total{code="200",handler="upstream"} 1`,
		"gatehouse_http_request_duration_seconds_bucket",
		"gatehouse_upstream_request_duration_seconds_bucket",
		`gatehouse_logins_total{provider="corp",result="success"} 1`,
		`gatehouse_authz_denied_total{reason="group"} 1`,
		"gatehouse_session_store_operations_total",
		"gatehouse_session_store_duration_seconds_bucket",
		`gatehouse_device_authorizations_total{result="approved"} 1`,
		"go_goroutines", "process_",
	} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}
