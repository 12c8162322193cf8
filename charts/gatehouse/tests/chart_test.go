// Package tests renders the Helm chart with helm and checks the manifests
// decode strictly into Kubernetes API types and carry what Gatehouse needs.
// It is its own module so the Kubernetes API types stay out of Gatehouse's.
package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = ".."

func helmBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "helm")
	if _, err := os.Stat(p); err != nil {
		t.Fatal("helm not found: run make test, which installs it with the Go toolchain (charts/install-helm.sh)")
	}
	return p
}

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		return out.String() + errOut.String(), fmt.Errorf("helm %s: %v: %s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), nil
}

// rendered holds the decoded manifests of one helm template run.
type rendered struct {
	deployments     map[string]*appsv1.Deployment
	statefulSets    map[string]*appsv1.StatefulSet
	services        map[string]*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	ingresses       []*networkingv1.Ingress
	pdbs            map[string]*policyv1.PodDisruptionBudget
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	networkPolicies map[string]*networkingv1.NetworkPolicy
	monitors        []*serviceMonitor
	rules           []*prometheusRule
}

// serviceMonitor and prometheusRule are the parts of the Prometheus
// Operator's types the chart uses; decoding is strict, so a field the
// chart renders must be here (and spelled as in the CRD).
type serviceMonitor struct {
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Metadata   map[string]any     `json:"metadata"`
	Spec       serviceMonitorSpec `json:"spec"`
}

type serviceMonitorSpec struct {
	Selector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
	Endpoints []struct {
		Port     string `json:"port"`
		Path     string `json:"path"`
		Interval string `json:"interval"`
	} `json:"endpoints"`
}

type prometheusRule struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   map[string]any `json:"metadata"`
	Spec       struct {
		Groups []ruleGroup `json:"groups"`
	} `json:"spec"`
}

type ruleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []rule `json:"rules"`
}

type rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// decodeStrict turns a YAML document into v, failing on any field the
// Kubernetes type does not have.
func decodeStrict(t *testing.T, doc []byte, v any) {
	t.Helper()
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		t.Fatalf("YAML: %v\n%s", err, doc)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("strict decode into %T: %v\n%s", v, err, doc)
	}
}

// render runs helm template on the chart with a values file (none when
// valuesFile is "") and decodes every manifest.
func render(t *testing.T, valuesFile string, extra ...string) *rendered {
	t.Helper()
	args := []string{"template", "gh", chartDir}
	if valuesFile != "" {
		args = append(args, "-f", valuesFile)
	}
	return renderArgs(t, append(args, extra...)...)
}

func renderArgs(t *testing.T, args ...string) *rendered {
	t.Helper()
	out, err := helm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	r := decodeAll(t, out)
	checkNoSecretsInConfigMaps(t, r)
	return r
}

func decodeAll(t *testing.T, out string) *rendered {
	t.Helper()
	r := &rendered{deployments: map[string]*appsv1.Deployment{}, statefulSets: map[string]*appsv1.StatefulSet{},
		services: map[string]*corev1.Service{}, configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, networkPolicies: map[string]*networkingv1.NetworkPolicy{}}
	for _, doc := range strings.Split(out, "\n---") {
		doc = strings.TrimSpace(doc)
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil || head.Kind == "" {
			continue
		}
		switch head.Kind {
		case "Deployment":
			var d appsv1.Deployment
			decodeStrict(t, []byte(doc), &d)
			r.deployments[d.Name] = &d
		case "StatefulSet":
			var s appsv1.StatefulSet
			decodeStrict(t, []byte(doc), &s)
			r.statefulSets[s.Name] = &s
		case "Service":
			var s corev1.Service
			decodeStrict(t, []byte(doc), &s)
			r.services[s.Name] = &s
		case "ConfigMap":
			var c corev1.ConfigMap
			decodeStrict(t, []byte(doc), &c)
			r.configMaps[c.Name] = &c
		case "Secret":
			var s corev1.Secret
			decodeStrict(t, []byte(doc), &s)
			r.secrets[s.Name] = &s
		case "Ingress":
			var i networkingv1.Ingress
			decodeStrict(t, []byte(doc), &i)
			r.ingresses = append(r.ingresses, &i)
		case "PodDisruptionBudget":
			var p policyv1.PodDisruptionBudget
			decodeStrict(t, []byte(doc), &p)
			r.pdbs[p.Name] = &p
		case "HorizontalPodAutoscaler":
			var h autoscalingv2.HorizontalPodAutoscaler
			decodeStrict(t, []byte(doc), &h)
			r.hpas = append(r.hpas, &h)
		case "NetworkPolicy":
			var n networkingv1.NetworkPolicy
			decodeStrict(t, []byte(doc), &n)
			r.networkPolicies[n.Name] = &n
		case "ServiceMonitor":
			var m serviceMonitor
			decodeStrict(t, []byte(doc), &m)
			r.monitors = append(r.monitors, &m)
		case "PrometheusRule":
			var p prometheusRule
			decodeStrict(t, []byte(doc), &p)
			r.rules = append(r.rules, &p)
		default:
			t.Fatalf("unexpected kind %s", head.Kind)
		}
	}
	return r
}

// checkNoSecretsInConfigMaps fails when a value of any rendered Secret
// appears in any rendered ConfigMap.
func checkNoSecretsInConfigMaps(t *testing.T, r *rendered) {
	t.Helper()
	for sname, s := range r.secrets {
		for key, value := range s.Data {
			v := strings.TrimSpace(string(value))
			if len(v) < 8 {
				t.Fatalf("secret %s/%s is too short to search for", sname, key)
			}
			for cname, c := range r.configMaps {
				for file, content := range c.Data {
					if strings.Contains(content, v) {
						t.Errorf("ConfigMap %s (%s) holds the value of secret %s/%s", cname, file, sname, key)
					}
				}
			}
		}
	}
}

func (r *rendered) gatehouse(t *testing.T) (*appsv1.Deployment, *corev1.Container) {
	t.Helper()
	d := r.deployments["gh-gatehouse"]
	if d == nil {
		t.Fatal("no gh-gatehouse Deployment")
	}
	return d, container(t, &d.Spec.Template.Spec, "gatehouse")
}

func container(t *testing.T, pod *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for i := range pod.Containers {
		if c := &pod.Containers[i]; c.Name == name {
			return c
		}
	}
	t.Fatalf("no %s container", name)
	return nil
}

func envOf(c *corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

// configOf is the config.yaml of a ConfigMap, decoded.
func configOf(t *testing.T, r *rendered, name string) map[string]any {
	t.Helper()
	cm := r.configMaps[name]
	if cm == nil {
		t.Fatalf("no ConfigMap %s", name)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// lookup follows a dotted path through decoded YAML maps.
func lookup(v any, path string) any {
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func checkCommon(t *testing.T, r *rendered) (*appsv1.Deployment, *corev1.Container) {
	t.Helper()
	d, c := r.gatehouse(t)
	checkPod(t, r, &d.Spec.Template, c, "gh-gatehouse")
	pod := d.Spec.Template.Spec
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("pod must run as non-root")
	}
	return d, c
}

// checkPod checks Gatehouse's container in a pod, whoever owns the pod:
// probes, its own non-root security context, secrets as files, its
// volumes (named so they do not clash with an app's) and checksums.
func checkPod(t *testing.T, r *rendered, tpl *corev1.PodTemplateSpec, c *corev1.Container, fullname string) {
	t.Helper()
	pod := tpl.Spec
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/ping" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/ready" {
		t.Error("probes should be GET /ping (liveness) and /ready (readiness)")
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container must have a read-only root and no privilege escalation")
	}
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 65532 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("Gatehouse's container must carry its own non-root user (65532), whatever the pod says")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("Gatehouse needs default requests and a memory limit: %+v", c.Resources)
	}
	if env := envOf(c); env["GATEHOUSE_SESSION_SECRET_FILE"] != "/etc/gatehouse/secrets/session-secret" {
		t.Errorf("GATEHOUSE_SESSION_SECRET_FILE = %q", env["GATEHOUSE_SESSION_SECRET_FILE"])
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	if mounts["gatehouse-secrets"] != "/etc/gatehouse/secrets" || mounts["gatehouse-config"] != "/etc/gatehouse/config" {
		t.Errorf("mounts = %v", mounts)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		if _, dup := volumes[v.Name]; dup {
			t.Errorf("volume %s twice in the pod", v.Name)
		}
		volumes[v.Name] = v
	}
	for name := range mounts {
		if _, ok := volumes[name]; !ok {
			t.Errorf("mount %s has no volume", name)
		}
	}
	if cm := volumes["gatehouse-config"].ConfigMap; cm == nil || r.configMaps[cm.Name] == nil || cm.Name != fullname {
		t.Errorf("gatehouse-config volume = %+v; want the rendered ConfigMap %s", volumes["gatehouse-config"], fullname)
	}
	if s := volumes["gatehouse-secrets"].Secret; s == nil || (len(r.secrets) > 0 && r.secrets[s.SecretName] == nil) {
		t.Errorf("gatehouse-secrets volume = %+v; want the rendered Secret", volumes["gatehouse-secrets"])
	}
	if tpl.Annotations["checksum/gatehouse-config"] == "" || tpl.Annotations["checksum/gatehouse-secret"] == "" {
		t.Error("checksum annotations missing")
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil || strings.Contains(e.Name, "SECRET") && !strings.HasSuffix(e.Name, "_FILE") {
			t.Errorf("secret passed as a value: %s", e.Name)
		}
	}
	ports := map[string]bool{}
	names := map[string]bool{}
	for _, ct := range pod.Containers {
		if names[ct.Name] {
			t.Errorf("container %s twice", ct.Name)
		}
		names[ct.Name] = true
		for _, p := range ct.Ports {
			if ports[p.Name] {
				t.Errorf("port name %s twice in the pod", p.Name)
			}
			ports[p.Name] = true
		}
	}
	if !ports["gatehouse"] || !ports["gh-metrics"] {
		t.Errorf("Gatehouse's ports gatehouse and gh-metrics missing: %v", ports)
	}
}

// checkServiceMonitor checks that the one ServiceMonitor selects the
// Service named want, by its labels, and no other, on a port it has.
func checkServiceMonitor(t *testing.T, r *rendered, want string) {
	t.Helper()
	if len(r.monitors) != 1 {
		t.Fatalf("%d ServiceMonitors", len(r.monitors))
	}
	m := r.monitors[0]
	for name, svc := range r.services {
		if got := matches(m.Spec.Selector.MatchLabels, svc.Labels); got != (name == want) {
			t.Errorf("ServiceMonitor selector %v matches Service %s (labels %v): %v", m.Spec.Selector.MatchLabels, name, svc.Labels, got)
		}
	}
	svc := r.services[want]
	if svc == nil {
		t.Fatalf("no Service %s", want)
	}
	found := false
	for _, p := range svc.Spec.Ports {
		found = found || p.Name == m.Spec.Endpoints[0].Port
	}
	if !found || m.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoint %+v is not a port of Service %s", m.Spec.Endpoints[0], want)
	}
}

// portsOf maps a container's port names to numbers.
func portsOf(c *corev1.Container) map[string]int32 {
	m := map[string]int32{}
	for _, p := range c.Ports {
		m[p.Name] = p.ContainerPort
	}
	return m
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildOut  []byte
)

// gatehouseBinary builds ./cmd/gatehouse once per test run.
func gatehouseBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gatehouse-chart-test")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "gatehouse")
		build := exec.Command("go", "build", "-o", binPath, "./cmd/gatehouse")
		build.Dir = filepath.Join(chartDir, "..", "..")
		buildOut, buildErr = build.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("building gatehouse: %v\n%s", buildErr, buildOut)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// checkConfigWithGatehouse runs `gatehouse check` on the rendered
// config.yaml with the container's environment, secret files stood in
// by temporary files: the chart must produce a configuration Gatehouse
// accepts.
func checkConfigWithGatehouse(t *testing.T, r *rendered, configMap string, c *corev1.Container) {
	t.Helper()
	bin := gatehouseBinary(t)
	dir := t.TempDir()
	cm := r.configMaps[configMap]
	if cm == nil {
		t.Fatalf("no ConfigMap %s", configMap)
	}
	// The whole file, session.store (dnssrv+ servers, replicas,
	// resolve_interval) included: check validates it without resolving.
	b := []byte(cm.Data["config.yaml"])
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	secrets := filepath.Join(dir, "secrets")
	_ = os.Mkdir(secrets, 0o700)
	env := []string{"PATH=" + os.Getenv("PATH")}
	for name, value := range envOf(c) {
		if strings.HasPrefix(value, "/etc/gatehouse/secrets/") {
			file := filepath.Join(secrets, filepath.Base(value))
			if strings.HasSuffix(file, ".pem") {
				continue // the test key is a placeholder; key parsing has its own tests
			}
			_ = os.WriteFile(file, []byte("secret-value-for-tests-0123456789abcdef"), 0o600)
			value = file
		}
		env = append(env, name+"="+value)
	}
	cmd := exec.Command(bin, "check", "--config", file)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gatehouse check rejected the rendered configuration: %v\n%s\n%s", err, b, out)
	}
}

// notes renders NOTES.txt (the gatehouse.notes template) with the given
// helm arguments: helm template does not print notes, so a copy of the
// chart gets a ConfigMap that carries them.
func notes(t *testing.T, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "gatehouse")
	copyChart(t, chartDir, dir)
	tpl := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: test-notes\ndata:\n  notes: {{ include \"gatehouse.notes\" . | quote }}\n"
	if err := os.WriteFile(filepath.Join(dir, "templates", "zz-test-notes.yaml"), []byte(tpl), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := helm(t, append([]string{"template", "gh", dir, "--show-only", "templates/zz-test-notes.yaml"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	decodeStrict(t, []byte(out), &cm)
	return cm.Data["notes"]
}

// copyChart copies the chart without its tests.
func copyChart(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() && rel == "tests" {
			return filepath.SkipDir
		}
		target := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLint(t *testing.T) {
	for _, f := range []string{"testdata/standalone.yaml", "testdata/ha.yaml", "testdata/sidecar.yaml"} {
		if out, err := helm(t, "lint", "--strict", chartDir, "-f", f); err != nil {
			t.Errorf("%s: %v\n%s", f, err, out)
		}
	}
}

func TestStandalone(t *testing.T) {
	r := render(t, "testdata/standalone.yaml")
	d, c := checkCommon(t, r)
	env := envOf(c)
	if env["GATEHOUSE_AUTH_GITHUB_CLIENT_SECRET_FILE"] == "" || env["GATEHOUSE_AUTH_OIDC_CORP_CLIENT_SECRET_FILE"] == "" {
		t.Errorf("provider secret files missing: %v", env)
	}
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Error("standalone has one container")
	}
	s := r.secrets["gh-gatehouse"]
	if s == nil || string(s.Data["session-secret"]) == "" || string(s.Data["oidc-corp-client-secret"]) != "corp-secret-0123456789" {
		t.Fatalf("secret = %v", s)
	}
	if len(r.ingresses) != 1 || len(r.monitors) != 1 || len(r.pdbs) != 0 || len(r.hpas) != 0 || len(r.statefulSets) != 0 || len(r.networkPolicies) != 0 {
		t.Errorf("ingress %d, servicemonitor %d, pdb %d, hpa %d, statefulset %d, networkpolicy %d",
			len(r.ingresses), len(r.monitors), len(r.pdbs), len(r.hpas), len(r.statefulSets), len(r.networkPolicies))
	}
	cfg := configOf(t, r, "gh-gatehouse")
	if lookup(cfg, "server.public_url") != "https://dash.example.com" {
		t.Errorf("config.yaml = %v", cfg)
	}
	if lookup(cfg, "session.store") != nil {
		t.Errorf("one replica keeps sessions in memory: session.store = %v", lookup(cfg, "session.store"))
	}
	// The Service reaches Gatehouse's port, and the ServiceMonitor selects
	// that Service (by its labels) and its metrics port.
	svc := r.services["gh-gatehouse"]
	ports := portsOf(c)
	svcPorts := map[string]corev1.ServicePort{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Name] = p
		if _, ok := ports[p.TargetPort.String()]; !ok {
			t.Errorf("Service port %s targets %s, not a port of the container (%v)", p.Name, p.TargetPort.String(), ports)
		}
	}
	if r.ingresses[0].Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port.Name != "http" || svcPorts["http"].TargetPort.StrVal != "gatehouse" {
		t.Error("the Ingress should reach Gatehouse through the Service's http port")
	}
	checkServiceMonitor(t, r, "gh-gatehouse")
	checkConfigWithGatehouse(t, r, "gh-gatehouse", c)

	// A config change changes the checksum, so the pods roll.
	r2 := render(t, "testdata/standalone.yaml", "--set", "config.upstream.url=http://other:3000")
	d2, _ := r2.gatehouse(t)
	if d.Spec.Template.Annotations["checksum/gatehouse-config"] == d2.Spec.Template.Annotations["checksum/gatehouse-config"] {
		t.Error("checksum/gatehouse-config did not change with the config")
	}
	r3 := render(t, "testdata/standalone.yaml", "--set", "secrets.oidc.corp=another-corp-secret-0123")
	d3, _ := r3.gatehouse(t)
	if d.Spec.Template.Annotations["checksum/gatehouse-secret"] == d3.Spec.Template.Annotations["checksum/gatehouse-secret"] {
		t.Error("checksum/gatehouse-secret did not change with the secrets")
	}
}

func TestSidecar(t *testing.T) {
	r := render(t, "testdata/sidecar.yaml")
	d, c := checkCommon(t, r)
	if n := len(d.Spec.Template.Spec.Containers); n != 2 {
		t.Fatalf("%d containers, want gatehouse and the app", n)
	}
	if got := lookup(configOf(t, r, "gh-gatehouse"), "upstream.url"); got != "http://127.0.0.1:3000" {
		t.Errorf("upstream = %v, want the app on loopback", got)
	}
	app := container(t, &d.Spec.Template.Spec, "grafana")
	if sc := app.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 472 {
		t.Errorf("the app keeps its own securityContext: %+v", sc)
	}
	if psc := d.Spec.Template.Spec.SecurityContext; psc.RunAsUser != nil {
		t.Errorf("the pod-wide securityContext forces a user (%d) on the app", *psc.RunAsUser)
	}
	svc := r.services["gh-gatehouse"]
	for _, p := range svc.Spec.Ports {
		if p.TargetPort.String() == "app" || p.Port == 3000 || p.TargetPort.IntValue() == 3000 {
			t.Errorf("the Service exposes the app's port: %+v", p)
		}
	}
	if len(r.networkPolicies) != 0 {
		t.Error("NetworkPolicy rendered without networkPolicy.enabled")
	}
	n := notes(t, "-f", "testdata/sidecar.yaml")
	if strings.Contains(n, "reachable only through Gatehouse") || !strings.Contains(n, "WARNING") || !strings.Contains(n, "networkPolicy.enabled") {
		t.Errorf("without the NetworkPolicy the notes must not claim the app is unreachable:\n%s", n)
	}
	checkConfigWithGatehouse(t, r, "gh-gatehouse", c)
}

// checkNetworkPolicy checks a policy that admits traffic to the pods
// only on Gatehouse's ports (so never on the app's).
func checkNetworkPolicy(t *testing.T, np *networkingv1.NetworkPolicy, podLabels map[string]string, gatehouse *corev1.Container, appPort int) {
	t.Helper()
	if np == nil {
		t.Fatal("no NetworkPolicy")
	}
	for k, v := range np.Spec.PodSelector.MatchLabels {
		if podLabels[k] != v {
			t.Errorf("NetworkPolicy selects %s=%s; the pods have %v", k, v, podLabels)
		}
	}
	if len(np.Spec.PodSelector.MatchLabels) == 0 {
		t.Error("NetworkPolicy selects every pod of the namespace")
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Errorf("policyTypes = %v", np.Spec.PolicyTypes)
	}
	allowed := map[int32]bool{}
	for _, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			t.Errorf("an ingress rule admits every port: %+v", rule)
		}
		for _, p := range rule.Ports {
			if p.Port == nil || p.Port.IntValue() == 0 {
				t.Errorf("port %+v is not a number", p)
				continue
			}
			allowed[int32(p.Port.IntValue())] = true
		}
	}
	ports := portsOf(gatehouse)
	want := map[int32]bool{ports["gatehouse"]: true, ports["gh-metrics"]: true}
	if len(allowed) != 2 || !allowed[ports["gatehouse"]] || !allowed[ports["gh-metrics"]] {
		t.Errorf("NetworkPolicy admits ports %v, want only Gatehouse's %v", allowed, want)
	}
	if allowed[int32(appPort)] {
		t.Errorf("NetworkPolicy admits the app's port %d", appPort)
	}
}

func TestSidecarNetworkPolicy(t *testing.T) {
	r := render(t, "testdata/sidecar.yaml", "--set", "networkPolicy.enabled=true")
	d, c := checkCommon(t, r)
	checkNetworkPolicy(t, r.networkPolicies["gh-gatehouse"], d.Spec.Template.Labels, c, 3000)
	if n := notes(t, "-f", "testdata/sidecar.yaml", "--set", "networkPolicy.enabled=true"); !strings.Contains(n, "reachable only through Gatehouse") || strings.Contains(n, "WARNING") {
		t.Errorf("notes with the NetworkPolicy:\n%s", n)
	}
}

// matches reports whether labels carry every key and value of selector.
func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// checkSoftAntiAffinity checks a preferred (never required) anti-affinity
// over nodes against the pod's own labels.
func checkSoftAntiAffinity(t *testing.T, what string, spec *corev1.PodSpec, labels map[string]string) {
	t.Helper()
	a := spec.Affinity
	if a == nil || a.PodAntiAffinity == nil {
		t.Fatalf("%s: no pod anti-affinity", what)
	}
	if len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 0 {
		t.Errorf("%s: anti-affinity must be soft (preferred), not required", what)
	}
	pref := a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution
	if len(pref) != 1 || pref[0].PodAffinityTerm.TopologyKey != "kubernetes.io/hostname" ||
		!matches(pref[0].PodAffinityTerm.LabelSelector.MatchLabels, labels) {
		t.Errorf("%s: preferred anti-affinity = %+v, want one term over kubernetes.io/hostname selecting %v", what, pref, labels)
	}
}

func TestHA(t *testing.T) {
	r := render(t, "testdata/ha.yaml", "--namespace", "auth", "--set", "serviceMonitor.enabled=true")
	d, c := checkCommon(t, r)
	checkServiceMonitor(t, r, "gh-gatehouse")
	if *d.Spec.Replicas != 3 {
		t.Errorf("Gatehouse replicas = %d", *d.Spec.Replicas)
	}
	if envOf(c)["GATEHOUSE_HEADERS_ASSERTION_SIGNING_KEY_FILES"] != "/etc/gatehouse/secrets/signing-key.pem" {
		t.Error("replicas need the shared signing key")
	}
	// memcached: a StatefulSet of three behind a headless Service.
	sts := r.statefulSets["gh-gatehouse-memcached"]
	svc := r.services["gh-gatehouse-memcached"]
	if sts == nil || svc == nil {
		t.Fatal("memcached StatefulSet and headless Service should be rendered")
	}
	if r.deployments["gh-gatehouse-memcached"] != nil {
		t.Error("memcached is a StatefulSet, not a Deployment")
	}
	if *sts.Spec.Replicas != 3 || sts.Spec.ServiceName != svc.Name {
		t.Errorf("StatefulSet replicas %d serviceName %q, want 3 and %q", *sts.Spec.Replicas, sts.Spec.ServiceName, svc.Name)
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("memcached Service clusterIP = %q, want None (headless)", svc.Spec.ClusterIP)
	}
	podLabels := sts.Spec.Template.Labels
	if !matches(svc.Spec.Selector, podLabels) || !matches(sts.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("memcached selectors %v / %v do not match the pods' labels %v", svc.Spec.Selector, sts.Spec.Selector.MatchLabels, podLabels)
	}
	if matches(svc.Spec.Selector, d.Spec.Template.Labels) || matches(r.services["gh-gatehouse"].Spec.Selector, podLabels) {
		t.Error("the memcached and Gatehouse Services select each other's pods")
	}
	mc := container(t, &sts.Spec.Template.Spec, "memcached")
	if mc.Resources.Requests.Memory().IsZero() || mc.Resources.Limits.Memory().IsZero() {
		t.Errorf("memcached needs default resources: %+v", mc.Resources)
	}
	// The SRV name Gatehouse resolves is the headless Service's port.
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("memcached Service ports = %+v", svc.Spec.Ports)
	}
	port := svc.Spec.Ports[0]
	if port.Protocol != corev1.ProtocolTCP || portsOf(mc)[port.TargetPort.String()] != 11211 {
		t.Errorf("memcached Service port %+v does not reach the container's 11211", port)
	}
	wantSRV := fmt.Sprintf("dnssrv+_%s._tcp.%s.auth.svc.cluster.local", port.Name, svc.Name)
	cfg := configOf(t, r, "gh-gatehouse")
	store := lookup(cfg, "session.store")
	want := map[string]any{"type": "memcache", "memcache": map[string]any{
		"servers": []any{wantSRV}, "replicas": float64(2), "resolve_interval": "10s"}}
	if fmt.Sprint(store) != fmt.Sprint(want) {
		t.Errorf("session.store = %v\nwant %v", store, want)
	}
	if port.Name != "memcache" {
		t.Errorf("memcached's port is named %q, want memcache (the SRV service name)", port.Name)
	}
	// Disruption budgets and soft anti-affinity for both.
	for name, labels := range map[string]map[string]string{"gh-gatehouse": d.Spec.Template.Labels, "gh-gatehouse-memcached": podLabels} {
		pdb := r.pdbs[name]
		if pdb == nil {
			t.Errorf("no PodDisruptionBudget %s", name)
			continue
		}
		if !matches(pdb.Spec.Selector.MatchLabels, labels) {
			t.Errorf("PDB %s selects %v, not the pods (%v)", name, pdb.Spec.Selector.MatchLabels, labels)
		}
		if pdb.Spec.MinAvailable == nil && pdb.Spec.MaxUnavailable == nil {
			t.Errorf("PDB %s has no budget", name)
		}
	}
	if len(r.pdbs) != 2 {
		t.Errorf("%d PDBs, want 2", len(r.pdbs))
	}
	checkSoftAntiAffinity(t, "gatehouse", &d.Spec.Template.Spec, d.Spec.Template.Labels)
	checkSoftAntiAffinity(t, "memcached", &sts.Spec.Template.Spec, podLabels)
	// The NetworkPolicies: Gatehouse's ports only, memcached from Gatehouse only.
	checkNetworkPolicy(t, r.networkPolicies["gh-gatehouse"], d.Spec.Template.Labels, c, 0)
	mnp := r.networkPolicies["gh-gatehouse-memcached"]
	if mnp == nil || !matches(mnp.Spec.PodSelector.MatchLabels, podLabels) || len(mnp.Spec.Ingress) != 1 ||
		len(mnp.Spec.Ingress[0].From) != 1 || !matches(mnp.Spec.Ingress[0].From[0].PodSelector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("memcached NetworkPolicy should admit Gatehouse's pods only: %+v", mnp)
	}
	n := notes(t, "-f", "testdata/ha.yaml", "--namespace", "auth")
	if !strings.Contains(n, wantSRV) {
		t.Errorf("notes do not name the memcached servers:\n%s", n)
	}
	checkConfigWithGatehouse(t, r, "gh-gatehouse", c)
}

func TestAutoscalingWithMemcache(t *testing.T) {
	r := render(t, "testdata/memcache.yaml")
	checkCommon(t, r)
	if r.statefulSets["gh-gatehouse-memcached"] == nil {
		t.Fatal("autoscaling should deploy memcached")
	}
	if len(r.pdbs) != 2 || len(r.hpas) != 1 {
		t.Errorf("pdb %d hpa %d, want 2 and 1", len(r.pdbs), len(r.hpas))
	}
	// memcached.enabled deploys it for a single replica too.
	one := render(t, "testdata/standalone.yaml", "--set", "memcached.enabled=true")
	if sts := one.statefulSets["gh-gatehouse-memcached"]; sts == nil || *sts.Spec.Replicas != 3 {
		t.Error("memcached.enabled=true should deploy three memcached pods")
	}
	if lookup(configOf(t, one, "gh-gatehouse"), "session.store.type") != "memcache" {
		t.Error("memcached.enabled=true should point session.store at it")
	}
	// A long release name still gives valid StatefulSet and Service names
	// (a StatefulSet's name leaves room for its pods' revision label).
	long := render(t, "testdata/memcache.yaml", "--set", "fullnameOverride="+strings.Repeat("g", 63))
	for name := range long.statefulSets {
		if len(name) > 52 {
			t.Errorf("StatefulSet name %q is %d characters, more than 52", name, len(name))
		}
	}
	// One memcached pod: no PDB for it (it could never be evicted).
	r1 := render(t, "testdata/memcache.yaml", "--set", "memcached.replicas=1")
	if r1.pdbs["gh-gatehouse-memcached"] != nil {
		t.Error("a PDB for a single memcached pod blocks node drains")
	}
}

func TestExternalMemcached(t *testing.T) {
	r := render(t, "testdata/ha.yaml", "--set", "memcached.external.servers={dns+memcached.cache:11211,10.0.0.9:11211}")
	if len(r.statefulSets) != 0 || r.services["gh-gatehouse-memcached"] != nil {
		t.Error("memcached deployed despite external servers")
	}
	got := lookup(configOf(t, r, "gh-gatehouse"), "session.store.memcache.servers")
	if fmt.Sprint(got) != "[dns+memcached.cache:11211 10.0.0.9:11211]" {
		t.Errorf("servers = %v", got)
	}
}

func TestExistingSecret(t *testing.T) {
	r := render(t, "testdata/existing-secret.yaml")
	d, c := checkCommon(t, r)
	if len(r.secrets) != 0 {
		t.Errorf("a Secret was rendered despite existingSecret")
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "gatehouse-secrets" && (v.Secret == nil || v.Secret.SecretName != "my-gatehouse-secrets") {
			t.Errorf("secrets volume = %+v", v)
		}
	}
	if envOf(c)["GATEHOUSE_AUTH_OIDC_CORP_CLIENT_SECRET_FILE"] == "" {
		t.Error("the OIDC client secret file should be referenced")
	}
	// existingSecretHasSigningKey counts as the shared key for replicas.
	render(t, "testdata/existing-secret.yaml", "--set", "replicaCount=2")
}

// TestSidecarInAnotherChart renders testdata/host-chart, a chart that owns
// a web app and includes the gatehouse.sidecar.* templates, with this
// chart packaged as its dependency (which also checks .helmignore).
func TestSidecarInAnotherChart(t *testing.T) {
	dir := t.TempDir()
	host := filepath.Join(dir, "hostapp")
	copyChart(t, "testdata/host-chart", host)
	if out, err := helm(t, "package", chartDir, "-d", filepath.Join(host, "charts")); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	list, err := exec.Command("tar", "tzf", filepath.Join(host, "charts", "gatehouse-0.1.0.tgz")).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(list)) {
		if strings.HasPrefix(f, "gatehouse/tests/") || strings.HasSuffix(f, ".go") || strings.HasSuffix(f, "go.mod") {
			t.Errorf("the package holds %s (.helmignore)", f)
		}
	}
	if !slices.Contains(strings.Fields(string(list)), "gatehouse/dashboards/gatehouse.json") {
		t.Error("the package lacks the dashboard")
	}

	r := renderArgs(t, "template", "web", host, "--namespace", "shop")
	d := r.deployments["web-hostapp"]
	if d == nil || len(r.deployments) != 1 {
		t.Fatalf("want only the host's Deployment, got %v", r.deployments)
	}
	if r.services["web-gatehouse"] != nil || len(r.ingresses) != 0 || len(r.hpas) != 0 || r.pdbs["web-gatehouse"] != nil {
		t.Error("with sidecar.external the gatehouse chart must not render a Service, Ingress, HPA or PDB of its own")
	}
	pod := &d.Spec.Template.Spec
	c := container(t, pod, "gatehouse")
	checkPod(t, r, &d.Spec.Template, c, "web-gatehouse")
	app := container(t, pod, "web")
	if sc := app.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 101 || sc.ReadOnlyRootFilesystem == nil || *sc.ReadOnlyRootFilesystem {
		t.Errorf("the app's own securityContext changed: %+v", sc)
	}
	for _, v := range pod.Volumes {
		if v.Name == "gatehouse-secrets" && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o444) {
			t.Errorf("in another chart's pod (no fsGroup of ours) the secret files must be readable by Gatehouse's user: mode %v", v.Secret.DefaultMode)
		}
	}
	if got := lookup(configOf(t, r, "web-gatehouse"), "upstream.url"); got != "http://127.0.0.1:8080" {
		t.Errorf("upstream = %v, want the app on loopback", got)
	}
	// The host's Service reaches Gatehouse, not the app.
	svc := r.services["web-hostapp"]
	ports := portsOf(c)
	for _, p := range svc.Spec.Ports {
		if _, ok := ports[p.TargetPort.String()]; !ok {
			t.Errorf("host Service port %+v does not target a Gatehouse port (%v)", p, ports)
		}
	}
	if !matches(svc.Spec.Selector, d.Spec.Template.Labels) {
		t.Error("host Service does not select the host's pods")
	}
	checkNetworkPolicy(t, r.networkPolicies["web-gatehouse"], d.Spec.Template.Labels, c, 8080)
	// Two replicas: memcached and the signing key come along.
	if r.statefulSets["web-gatehouse-memcached"] == nil {
		t.Error("replicaCount 2 should deploy memcached")
	}
	if envOf(c)["GATEHOUSE_HEADERS_ASSERTION_SIGNING_KEY_FILES"] == "" {
		t.Error("the signing key is not passed")
	}
	mnp := r.networkPolicies["web-gatehouse-memcached"]
	if mnp == nil || !matches(mnp.Spec.Ingress[0].From[0].PodSelector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("memcached should admit the host's pods (which run Gatehouse): %+v", mnp)
	}
	checkConfigWithGatehouse(t, r, "web-gatehouse", c)

	// Without a signing key, two replicas of the host fail the render.
	if _, err := helm(t, "template", "web", host, "--set", "gatehouse.secrets.signingKey="); err == nil || !strings.Contains(err.Error(), "signing key") {
		t.Errorf("host chart with 2 replicas and no signing key: %v", err)
	}
}

func TestRenderFails(t *testing.T) {
	for name, c := range map[string]struct {
		args []string
		want string // in the error
	}{
		"replicas without a signing key":    {[]string{"-f", "testdata/standalone.yaml", "--set", "replicaCount=3"}, "signing key"},
		"autoscaling without a signing key": {[]string{"-f", "testdata/standalone.yaml", "--set", "autoscaling.enabled=true"}, "signing key"},
		"existingSecret without its signing key": {
			[]string{"-f", "testdata/existing-secret.yaml", "--set", "replicaCount=2,existingSecretHasSigningKey=false"}, "signing key"},
		"replicas without a shared store": {[]string{"-f", "testdata/ha.yaml", "--set", "memcached.enabled=false"}, "shared session store"},
		"sidecar without an app image":    {[]string{"-f", "testdata/sidecar.yaml", "--set", "sidecar.app.image="}, "sidecar.app.image"},
		"external sidecar NetworkPolicy without a pod selector": {
			[]string{"-f", "testdata/sidecar.yaml", "--set", "sidecar.external=true,networkPolicy.enabled=true"}, "networkPolicy.podSelector"},
		"no session secret": {[]string{"--set", "config.server.public_url=https://x"}, "sessionSecret"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := helm(t, append([]string{"template", "gh", chartDir}, c.args...)...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("helm template %v: %v; want a failure naming %q", c.args, err, c.want)
			}
		})
	}
	// One replica may sign with a generated key; a disabled assertion
	// needs no key at all.
	render(t, "testdata/standalone.yaml")
	render(t, "testdata/ha.yaml", "--set", "secrets.signingKey=,config.headers.assertion.enabled=false")
}

func TestSchemaRejectsBadValues(t *testing.T) {
	for name, c := range map[string]struct {
		set  string
		want string // in helm's message
	}{
		"unknown top-level key":            {"replicas=3", "additional properties 'replicas'"},
		"wrong type":                       {"replicaCount=many", "/replicaCount"},
		"session secret in the config":     {"config.session.secret=oops", "invalid propertyName 'secret'"},
		"client_secret in the config":      {"config.auth.github.client_secret=oops", "invalid propertyName 'client_secret'"},
		"OIDC client_secret in the config": {"config.auth.oidc.corp.client_secret=oops", "invalid propertyName 'client_secret'"},
		"client_assertion in the config":   {"config.auth.microsoft.client_assertion=oops", "invalid propertyName 'client_assertion'"},
		"secret in a list in the config":   {"config.routes[0].name=a,config.routes[0].extra_auth_params.client_secret=oops", "invalid propertyName 'client_secret'"},
		"upper-case secret key":            {"config.auth.github.Client_Secret=oops", "invalid propertyName 'Client_Secret'"},
		"password in the config":           {"config.upstream.basic_auth_password=oops", "invalid propertyName 'basic_auth_password'"},
		"short session secret":             {"secrets.sessionSecret=short", "/secrets/sessionSecret"},
		"short client secret":              {"secrets.oidc.corp=abc", "/secrets/oidc/corp"},
		"signing key that is not PEM":      {"secrets.signingKey=abc", "/secrets/signingKey"},
		"bad memcached mode":               {"memcached.enabled=sometimes", "/memcached/enabled"},
		"bad memcached server":             {"memcached.external.servers={memcached}", "/memcached/external/servers/0"},
		"unknown resources key":            {"resources.request.cpu=1", "additional properties 'request'"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := helm(t, "template", "gh", chartDir, "-f", "testdata/standalone.yaml", "--set", c.set)
			if err == nil || !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("helm template --set %s: %v; want the schema to refuse it (%q)", c.set, err, c.want)
			}
		})
	}
	// The templates refuse secrets under config too, for renders that skip
	// the schema (--skip-schema-validation, or a parent chart's values).
	for _, key := range []string{"config.auth.github.client_secret", "config.session.secret", "config.routes[0].x.client_assertion"} {
		_, err := helm(t, "template", "gh", chartDir, "-f", "testdata/standalone.yaml", "--skip-schema-validation", "--set", key+"=oops-0123456789")
		if err == nil || !strings.Contains(err.Error(), "never go into the ConfigMap") {
			t.Errorf("%s without the schema: %v", key, err)
		}
	}
	// *_file keys are paths, not secrets, and belong in the config.
	render(t, "testdata/standalone.yaml", "--set", "config.auth.github.client_secret_file=/etc/gatehouse/secrets/github-client-secret")
}
