package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// targetLabels are added by Prometheus and the Prometheus Operator to
// every scraped series; expressions may use them besides the metric's own.
var targetLabels = []string{"namespace", "job", "pod", "instance", "service", "container", "endpoint"}

// exported reads testdata/metric-names.txt (kept in step with the code by
// metrics.TestMetricNamesFile): sample name -> its labels.
func exported(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("testdata/metric-names.txt")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		name, labels, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("metric-names.txt: bad line %q", line)
		}
		m[name] = nil
		if labels != "-" {
			m[name] = strings.Split(labels, ",")
		}
	}
	if len(m) < 10 {
		t.Fatalf("metric-names.txt lists %d metrics", len(m))
	}
	return m
}

// grafanaVars stands in for Grafana's variables so that a panel's query
// parses as PromQL: intervals become a duration, anything else a string.
var (
	grafanaInterval = regexp.MustCompile(`\$\{?__(rate_interval|interval|range)\}?`)
	grafanaVar      = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*(:[a-z]+)?\}?`)
)

func promQL(expr string) string {
	expr = grafanaInterval.ReplaceAllString(expr, "5m")
	return grafanaVar.ReplaceAllString(expr, "x")
}

// checkExpr parses expr and checks that every metric it selects is one
// Gatehouse exports, with labels the metric (or the scrape) has. It
// returns the metric names.
func checkExpr(t *testing.T, where, expr string, metrics map[string][]string) []string {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %v\n%s", where, err, expr)
		return nil
	}
	labelsOf := func(sels []*parser.VectorSelector) map[string]bool {
		ls := map[string]bool{}
		for _, l := range targetLabels {
			ls[l] = true
		}
		for _, s := range sels {
			for _, l := range metrics[s.Name] {
				ls[l] = true
			}
		}
		return ls
	}
	selectors := func(n parser.Node) []*parser.VectorSelector {
		var out []*parser.VectorSelector
		parser.Inspect(n, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				out = append(out, vs)
			}
			return nil
		})
		return out
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			if n.Name == "" {
				t.Errorf("%s: a selector without a metric name: %s", where, n)
				return nil
			}
			names = append(names, n.Name)
			if _, ok := metrics[n.Name]; !ok {
				t.Errorf("%s: %s is not a metric Gatehouse exports (testdata/metric-names.txt)", where, n.Name)
				return nil
			}
			own := labelsOf([]*parser.VectorSelector{n})
			for _, m := range n.LabelMatchers {
				if m.Name != "__name__" && !own[m.Name] {
					t.Errorf("%s: %s has no label %q", where, n.Name, m.Name)
				}
			}
		case *parser.AggregateExpr:
			ls := labelsOf(selectors(n.Expr))
			for _, l := range n.Grouping {
				if !ls[l] {
					t.Errorf("%s: %s by (%s): no metric under it has that label", where, n.Op, l)
				}
			}
		}
		return nil
	})
	return names
}

func TestMonitoringObjectsAreOptional(t *testing.T) {
	r := render(t, "testdata/ha.yaml")
	if len(r.rules) != 0 || r.configMaps["gh-gatehouse-dashboard"] != nil || len(r.monitors) != 0 {
		t.Error("PrometheusRule, dashboard and ServiceMonitor are off by default")
	}
}

// TestDashboard checks the Grafana dashboard the chart ships: labelled for
// Grafana's sidecar, valid JSON, every query valid PromQL over metrics
// Gatehouse exports, and the panels the operators need.
func TestDashboard(t *testing.T) {
	r := render(t, "testdata/standalone.yaml", "--set", "grafanaDashboard.enabled=true,grafanaDashboard.annotations.grafana_folder=Auth")
	cm := r.configMaps["gh-gatehouse-dashboard"]
	if cm == nil {
		t.Fatal("no dashboard ConfigMap")
	}
	if cm.Labels["grafana_dashboard"] != "1" || cm.Annotations["grafana_folder"] != "Auth" {
		t.Errorf("dashboard ConfigMap labels %v annotations %v", cm.Labels, cm.Annotations)
	}
	file, err := os.ReadFile("../dashboards/gatehouse.json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(cm.Data["gatehouse.json"]) != strings.TrimSpace(string(file)) {
		t.Error("the ConfigMap does not carry dashboards/gatehouse.json as it is")
	}
	var dash struct {
		UID        string `json:"uid"`
		Title      string `json:"title"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID         int    `json:"id"`
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			GridPos struct{ H, W, X, Y int } `json:"gridPos"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(file, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Error("dashboard needs a uid and a title")
	}
	metrics := exported(t)
	used := map[string]bool{}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X+p.GridPos.W > 24 || p.GridPos.W == 0 {
			t.Errorf("panel %q: gridPos %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q should use the $datasource variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range checkExpr(t, "panel "+p.Title, promQL(tg.Expr), metrics) {
				used[n] = true
			}
		}
	}
	// Variables: label_values(<selector>, <label>) queries.
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*([a-z_]+)\)$`)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		match := labelValues.FindStringSubmatch(q)
		if match == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, q)
			continue
		}
		checkExpr(t, "variable "+v.Name, promQL(match[1]), metrics)
		if !slices.Contains(targetLabels, match[2]) {
			t.Errorf("variable %s: %s is not a target label", v.Name, match[2])
		}
	}
	for _, want := range []string{
		"gatehouse_http_requests_total", "gatehouse_http_request_duration_seconds_bucket",
		"gatehouse_logins_total", "gatehouse_authz_denied_total",
		"gatehouse_session_store_operations_total", "gatehouse_session_store_duration_seconds_bucket",
		"gatehouse_upstream_request_duration_seconds_bucket", "gatehouse_device_authorizations_total",
		"gatehouse_build_info", "gatehouse_config_reloads_total",
	} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
}

// TestPrometheusRule checks the alerts: strict decoding, PromQL over
// exported metrics only, promtool check rules, and promtool test rules
// with series that make each alert fire (and one that must not).
func TestPrometheusRule(t *testing.T) {
	r := render(t, "testdata/standalone.yaml", "--set", "prometheusRule.enabled=true,prometheusRule.labels.release=prometheus")
	if len(r.rules) != 1 {
		t.Fatalf("%d PrometheusRules", len(r.rules))
	}
	pr := r.rules[0]
	if pr.APIVersion != "monitoring.coreos.com/v1" || fmt.Sprint(pr.Metadata["labels"].(map[string]any)["release"]) != "prometheus" {
		t.Errorf("PrometheusRule %s, metadata %v", pr.APIVersion, pr.Metadata)
	}
	metrics := exported(t)
	alerts := map[string]rule{}
	for _, g := range pr.Spec.Groups {
		for _, rl := range g.Rules {
			if rl.Alert == "" {
				t.Errorf("group %s: a rule without an alert name", g.Name)
				continue
			}
			alerts[rl.Alert] = rl
			checkExpr(t, "alert "+rl.Alert, rl.Expr, metrics)
			if !strings.Contains(rl.Expr, `namespace="default"`) {
				t.Errorf("alert %s is not scoped to the release's namespace: %s", rl.Alert, rl.Expr)
			}
			if rl.Labels["severity"] == "" || rl.Annotations["summary"] == "" || rl.Annotations["description"] == "" {
				t.Errorf("alert %s needs a severity, a summary and a description", rl.Alert)
			}
		}
	}
	for _, want := range []string{"GatehouseSessionStoreUnreachable", "GatehouseSessionStoreErrors", "GatehouseSignInFailuresSpiking",
		"GatehouseUpstream5xx", "GatehouseConfigReloadFailed", "GatehouseCertificateExpiringSoon"} {
		if _, ok := alerts[want]; !ok {
			t.Errorf("no alert %s", want)
		}
	}

	promtool := promtoolBin(t)
	dir := t.TempDir()
	groups, err := yaml.Marshal(map[string]any{"groups": pr.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, groups, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", rulesFile).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s\n%s", err, out, groups)
	}

	// promtool test rules compares annotations too; those are checked
	// above (and their templates by check rules), so the copy under test
	// has none.
	bare := pr.Spec.Groups
	for i := range bare {
		for j := range bare[i].Rules {
			bare[i].Rules[j].Annotations = nil
		}
	}
	groups, _ = yaml.Marshal(map[string]any{"groups": bare})
	if err := os.WriteFile(filepath.Join(dir, "bare.yaml"), groups, 0o600); err != nil {
		t.Fatal(err)
	}
	const who = `namespace="default",job="gh-gatehouse"`
	who2 := map[string]string{"namespace": "default", "job": "gh-gatehouse"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range who2 {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	type alertTest struct {
		EvalTime  string           `json:"eval_time"`
		Alertname string           `json:"alertname"`
		ExpAlerts []map[string]any `json:"exp_alerts"`
	}
	type series struct {
		Series string `json:"series"`
		Values string `json:"values"`
	}
	type test struct {
		Name        string      `json:"name"`
		Interval    string      `json:"interval"`
		InputSeries []series    `json:"input_series"`
		AlertTests  []alertTest `json:"alert_rule_test"`
	}
	fires := func(labels map[string]string) []map[string]any {
		return []map[string]any{{"exp_labels": labels}}
	}
	tests := []test{
		{
			Name: "memcached unreachable", Interval: "1m",
			InputSeries: []series{
				{`gatehouse_session_store_operations_total{` + who + `,store="memcache",op="get",result="error"}`, "0+60x30"},
				{`gatehouse_session_store_operations_total{` + who + `,store="memcache",op="get",result="ok"}`, "0+0x30"},
			},
			AlertTests: []alertTest{
				{"10m", "GatehouseSessionStoreUnreachable", fires(with(map[string]string{"store": "memcache", "severity": "critical"}))},
				{"20m", "GatehouseSessionStoreErrors", fires(with(map[string]string{"store": "memcache", "op": "get", "severity": "warning"}))},
			},
		},
		{
			Name: "healthy store", Interval: "1m",
			InputSeries: []series{
				{`gatehouse_session_store_operations_total{` + who + `,store="memcache",op="get",result="error"}`, "0+0x30"},
				{`gatehouse_session_store_operations_total{` + who + `,store="memcache",op="get",result="ok"}`, "0+600x30"},
			},
			AlertTests: []alertTest{
				{"20m", "GatehouseSessionStoreUnreachable", nil},
				{"20m", "GatehouseSessionStoreErrors", nil},
			},
		},
		{
			Name: "sign-in errors", Interval: "1m",
			InputSeries: []series{
				{`gatehouse_logins_total{` + who + `,provider="corp",result="error"}`, "0+2x40"},
				{`gatehouse_logins_total{` + who + `,provider="corp",result="success"}`, "0+1x40"},
				{`gatehouse_logins_total{` + who + `,provider="github",result="success"}`, "0+5x40"},
				{`gatehouse_logins_total{` + who + `,provider="github",result="error"}`, "0+0x40"},
			},
			AlertTests: []alertTest{
				{"30m", "GatehouseSignInFailuresSpiking", fires(with(map[string]string{"provider": "corp", "severity": "warning"}))},
			},
		},
		{
			Name: "upstream 5xx", Interval: "1m",
			InputSeries: []series{
				{`gatehouse_http_requests_total{` + who + `,handler="upstream",code="502"}`, "0+10x30"},
				{`gatehouse_http_requests_total{` + who + `,handler="upstream",code="200"}`, "0+10x30"},
				{`gatehouse_http_requests_total{` + who + `,handler="ping",code="503"}`, "0+100x30"},
			},
			AlertTests: []alertTest{
				{"20m", "GatehouseUpstream5xx", fires(with(map[string]string{"severity": "warning"}))},
			},
		},
		{
			Name: "reload refused", Interval: "1m",
			InputSeries: []series{
				{`gatehouse_config_last_reload_successful{` + who + `,pod="gh-0"}`, "1 1 0x20"},
				{`gatehouse_config_last_reload_successful{` + who + `,pod="gh-1"}`, "1x22"},
			},
			AlertTests: []alertTest{
				{"4m", "GatehouseConfigReloadFailed", nil},
				{"10m", "GatehouseConfigReloadFailed", fires(with(map[string]string{"pod": "gh-0", "severity": "warning"}))},
			},
		},
		{
			Name: "certificate expiring", Interval: "1m",
			InputSeries: []series{
				// promtool's clock starts at 0: one expires in a day, the other in 300 years.
				{`gatehouse_tls_certificate_expiry_timestamp_seconds{` + who + `,pod="gh-0"}`, "86400x90"},
				{`gatehouse_tls_certificate_expiry_timestamp_seconds{` + who + `,pod="gh-1"}`, "9999999999x90"},
			},
			AlertTests: []alertTest{
				{"70m", "GatehouseCertificateExpiringSoon", fires(with(map[string]string{"pod": "gh-0", "severity": "warning"}))},
			},
		},
	}
	spec, err := yaml.Marshal(map[string]any{"rule_files": []string{"bare.yaml"}, "evaluation_interval": "1m", "tests": tests})
	if err != nil {
		t.Fatal(err)
	}
	testFile := filepath.Join(dir, "alerts_test.yaml")
	if err := os.WriteFile(testFile, spec, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "test", "rules", testFile)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s\n%s", err, out, spec)
	}
}

func promtoolBin(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: run make deps (scripts/install-deps.sh installs Debian's prometheus package)")
	}
	return p
}
