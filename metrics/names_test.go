package metrics

import (
	"context"
	"errors"
	"flag"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/gatehouse/gatehouse/sessionstore"
)

// namesFile lists every sample name /metrics can show, one a line, with
// its labels (comma-separated, "-" for none). The chart's tests check that
// the Grafana dashboard and the PrometheusRule name only these metrics and
// labels; this test keeps the list in step with New.
const namesFile = "../charts/gatehouse/tests/testdata/metric-names.txt"

var update = flag.Bool("update", false, "rewrite "+namesFile+" from the registry")

// exportedNames gathers a registry in which every collector has a series,
// and returns one line per sample name with its labels: histograms as
// _bucket (with le), _sum and _count.
func exportedNames(t *testing.T) []string {
	t.Helper()
	m := New()
	m.Init([]string{"corp"})
	m.Request("upstream", 200, time.Millisecond)
	m.UpstreamDuration.Observe(0.01)
	m.ConfigReload(nil)
	m.SetCertificateExpiry(time.Now().Add(time.Hour))
	m.SetProviderUp("corp", true)
	_ = m.InstrumentStore(sessionstore.NewMemory(nil), "memory").Delete(context.Background(), "x")
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	gathered := map[string]bool{}
	var names []string
	for _, f := range families {
		gathered[f.GetName()] = true
		var labels []string
		for _, l := range f.GetMetric()[0].GetLabel() {
			labels = append(labels, l.GetName())
		}
		line := func(suffix string, extra ...string) string {
			ls := append(slices.Clone(labels), extra...)
			slices.Sort(ls)
			if len(ls) == 0 {
				ls = []string{"-"}
			}
			return f.GetName() + suffix + " " + strings.Join(ls, ",")
		}
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			names = append(names, line("_bucket", "le"), line("_sum"), line("_count"))
		case dto.MetricType_SUMMARY:
			names = append(names, line("", "quantile"), line("_sum"), line("_count"))
		default:
			names = append(names, line(""))
		}
	}
	// Every collector of Gatehouse's own must have shown up above, or the
	// list would silently miss it.
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, c := range m.own {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			match := fq.FindStringSubmatch(d.String())
			if match == nil || !gathered[match[1]] {
				t.Errorf("collector %s has no series in the test registry: give it one in exportedNames", d)
			}
		}
	}
	slices.Sort(names)
	return names
}

func TestMetricNamesFile(t *testing.T) {
	names := exportedNames(t)
	if *update {
		if err := os.WriteFile(namesFile, []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(namesFile)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Split(strings.TrimSpace(string(b)), "\n")
	if runtime.GOOS != "linux" {
		// The process collector exports nothing elsewhere.
		want = slices.DeleteFunc(want, func(n string) bool { return strings.HasPrefix(n, "process_") })
	}
	if !slices.Equal(names, want) {
		t.Fatalf("%s is out of date (regenerate: go test ./metrics -run TestMetricNamesFile -update)\nregistry: %v\nfile:     %v",
			namesFile, names, want)
	}
}

func TestBuildInfoAndReload(t *testing.T) {
	m := New()
	m.SetBuildInfo("v1.2.3", "abc123")
	if got := seriesCount(t, m, "gatehouse_build_info"); got != 1 {
		t.Fatalf("%d build_info series, want 1 (the earlier one replaced)", got)
	}
	if v := testutil.ToFloat64(m.BuildInfo.WithLabelValues("v1.2.3", "abc123", runtime.Version())); v != 1 {
		t.Errorf("build_info = %v", v)
	}
	if v := testutil.ToFloat64(m.ReloadOK); v != 1 {
		t.Errorf("last_reload_successful at start = %v, want 1", v)
	}
	m.ConfigReload(errors.New("bad"))
	if v := testutil.ToFloat64(m.ReloadOK); v != 0 {
		t.Errorf("after a refused reload = %v, want 0", v)
	}
	m.ConfigReload(nil)
	if v := testutil.ToFloat64(m.ReloadOK); v != 1 {
		t.Errorf("after a good reload = %v, want 1", v)
	}
	if n := seriesCount(t, m, "gatehouse_tls_certificate_expiry_timestamp_seconds"); n != 0 {
		t.Errorf("certificate expiry exported without TLS: %d series", n)
	}
	exp := time.Unix(1900000000, 0)
	m.SetCertificateExpiry(exp)
	if v := testutil.ToFloat64(m.CertExpiry.WithLabelValues()); v != 1900000000 {
		t.Errorf("certificate expiry = %v", v)
	}
}

func TestInitStartsCountersAtZero(t *testing.T) {
	m := New()
	m.Init([]string{"github", "corp"})
	_ = m.InstrumentStore(sessionstore.NewMemory(nil), "memcache")
	for name, want := range map[string]int{
		"gatehouse_logins_total":                   2 * len(LoginResults),
		"gatehouse_authz_denied_total":             len(DenyReasons),
		"gatehouse_device_authorizations_total":    len(DeviceResults),
		"gatehouse_session_store_operations_total": len(StoreOps) * len(StoreResults),
		"gatehouse_config_reloads_total":           2,
	} {
		if got := seriesCount(t, m, name); got != want {
			t.Errorf("%s: %d series at start, want %d", name, got, want)
		}
	}
}

// seriesCount is how many series of name the registry gathers.
func seriesCount(t *testing.T, m *Metrics, name string) int {
	t.Helper()
	n, err := testutil.GatherAndCount(m.Registry, name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
