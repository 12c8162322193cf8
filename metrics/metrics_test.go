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

// The instrumented store indexes its cached series by these constants.
func TestStoreOpIndexes(t *testing.T) {
	ops := map[int]string{opGet: "get", opGetMulti: "get_multi", opSet: "set", opAdd: "add", opReplace: "replace", opTouch: "touch", opAppend: "append", opDelete: "delete"}
	if len(StoreOps) != numOps || len(ops) != numOps {
		t.Fatalf("%d ops, want %d", len(StoreOps), numOps)
	}
	for i, op := range ops {
		if StoreOps[i] != op {
			t.Errorf("StoreOps[%d] = %q, want %q", i, StoreOps[i], op)
		}
	}
	results := map[int]string{resultOK: "ok", resultMiss: "miss", resultExists: "exists", resultError: "error"}
	if len(StoreResults) != numResults || len(results) != numResults {
		t.Fatalf("%d results, want %d", len(StoreResults), numResults)
	}
	for i, r := range results {
		if StoreResults[i] != r {
			t.Errorf("StoreResults[%d] = %q, want %q", i, StoreResults[i], r)
		}
	}
}

// GetFew through the instrumented store is counted as get_multi, and
// Request counts each handler and code in its own series.
func TestInstrumentedGetFewAndCachedRequestSeries(t *testing.T) {
	m := New()
	s := m.InstrumentStore(sessionstore.NewMemory(nil), "memory")
	ctx := context.Background()
	if err := s.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	recs, err := sessionstore.GetFew(ctx, s, [sessionstore.MaxFew]string{"k", "absent", ""})
	if err != nil || string(recs[0]) != "v" || recs[1] != nil || recs[2] != nil {
		t.Fatalf("GetFew = %q, %v", recs, err)
	}
	if got := testutil.ToFloat64(m.StoreOps.WithLabelValues("memory", "get_multi", "ok")); got != 1 {
		t.Errorf("get_multi/ok = %v, want 1", got)
	}
	for range 2 {
		m.Request("upstream", 200, time.Millisecond)
	}
	m.Request("upstream", 503, time.Millisecond)
	m.Request("ping", 200, time.Millisecond)
	m.Request("odd", 999, time.Millisecond)
	for _, c := range []struct {
		handler, code string
		want          float64
	}{{"upstream", "200", 2}, {"upstream", "503", 1}, {"ping", "200", 1}, {"odd", "999", 1}} {
		if got := testutil.ToFloat64(m.HTTPRequests.WithLabelValues(c.handler, c.code)); got != c.want {
			t.Errorf("%s/%s = %v, want %v", c.handler, c.code, got, c.want)
		}
	}
	if got := testutil.CollectAndCount(m.HTTPDuration); got != 3 {
		t.Errorf("%d duration series, want 3", got)
	}
}
