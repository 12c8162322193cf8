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
	"strings"
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
		t.Fatal("helm not found: run make test, which installs it with the Go toolchain")
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
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	ingresses   []*networkingv1.Ingress
	pdbs        []*policyv1.PodDisruptionBudget
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	monitors    []map[string]any
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

func render(t *testing.T, valuesFile string, extra ...string) *rendered {
	t.Helper()
	args := append([]string{"template", "gh", chartDir, "-f", valuesFile}, extra...)
	out, err := helm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	r := &rendered{deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
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
			r.pdbs = append(r.pdbs, &p)
		case "HorizontalPodAutoscaler":
			var h autoscalingv2.HorizontalPodAutoscaler
			decodeStrict(t, []byte(doc), &h)
			r.hpas = append(r.hpas, &h)
		case "ServiceMonitor":
			var m map[string]any
			decodeStrict(t, []byte(doc), &m)
			r.monitors = append(r.monitors, m)
		default:
			t.Fatalf("unexpected kind %s", head.Kind)
		}
	}
	return r
}

func (r *rendered) gatehouse(t *testing.T) (*appsv1.Deployment, *corev1.Container) {
	t.Helper()
	d := r.deployments["gh-gatehouse"]
	if d == nil {
		t.Fatal("no gh-gatehouse Deployment")
	}
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == "gatehouse" {
			return d, c
		}
	}
	t.Fatal("no gatehouse container")
	return nil, nil
}

func envOf(c *corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

func checkCommon(t *testing.T, r *rendered) (*appsv1.Deployment, *corev1.Container) {
	t.Helper()
	d, c := r.gatehouse(t)
	pod := d.Spec.Template.Spec
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Error("enableServiceLinks should be false")
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/ping" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/ready" {
		t.Error("probes should be GET /ping (liveness) and /ready (readiness)")
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container must have a read-only root and no privilege escalation")
	}
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("pod must run as non-root")
	}
	if env := envOf(c); env["GATEHOUSE_SESSION_SECRET_FILE"] != "/etc/gatehouse/secrets/session-secret" {
		t.Errorf("GATEHOUSE_SESSION_SECRET_FILE = %q", env["GATEHOUSE_SESSION_SECRET_FILE"])
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	if mounts["secrets"] != "/etc/gatehouse/secrets" || mounts["config"] != "/etc/gatehouse/config" {
		t.Errorf("mounts = %v", mounts)
	}
	if d.Spec.Template.Annotations["checksum/config"] == "" || d.Spec.Template.Annotations["checksum/secret"] == "" {
		t.Error("checksum annotations missing")
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil || strings.Contains(e.Name, "SECRET") && !strings.HasSuffix(e.Name, "_FILE") {
			t.Errorf("secret passed as a value: %s", e.Name)
		}
	}
	return d, c
}

// checkConfigWithGatehouse runs `gatehouse check` on the rendered
// config.yaml with the Deployment's environment, secret files stood in
// by temporary files: the chart must produce a configuration Gatehouse
// accepts.
func checkConfigWithGatehouse(t *testing.T, r *rendered, c *corev1.Container) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "gatehouse")
	build := exec.Command("go", "build", "-o", bin, "./cmd/gatehouse")
	build.Dir = filepath.Join(chartDir, "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building gatehouse: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(r.configMaps["gh-gatehouse"].Data["config.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	secrets := filepath.Join(dir, "secrets")
	_ = os.Mkdir(secrets, 0o700)
	env := []string{"PATH=" + os.Getenv("PATH")}
	for name, value := range envOf(c) {
		if strings.HasPrefix(value, "/etc/gatehouse/secrets/") {
			file := filepath.Join(secrets, filepath.Base(value))
			content := "secret-value-for-tests-0123456789abcdef"
			if strings.HasSuffix(file, ".pem") {
				continue // the test key is a placeholder; key parsing has its own tests
			}
			_ = os.WriteFile(file, []byte(content), 0o600)
			value = file
		}
		if strings.HasPrefix(name, "GATEHOUSE_SESSION_STORE") {
			continue // memcached is not running here; the store is checked by its own tests
		}
		env = append(env, name+"="+value)
	}
	cmd := exec.Command(bin, "check", "--config", cfg)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gatehouse check rejected the rendered configuration: %v\n%s", err, out)
	}
}

func TestLint(t *testing.T) {
	if out, err := helm(t, "lint", chartDir, "-f", "testdata/standalone.yaml"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestStandalone(t *testing.T) {
	r := render(t, "testdata/standalone.yaml")
	d, c := checkCommon(t, r)
	env := envOf(c)
	if env["GATEHOUSE_AUTH_GITHUB_CLIENT_SECRET_FILE"] == "" || env["GATEHOUSE_AUTH_OIDC_CORP_CLIENT_SECRET_FILE"] == "" {
		t.Errorf("provider secret files missing: %v", env)
	}
	if _, ok := env["GATEHOUSE_SESSION_STORE_TYPE"]; ok {
		t.Error("one replica should keep sessions in memory")
	}
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Error("standalone has one container")
	}
	s := r.secrets["gh-gatehouse"]
	if s == nil || string(s.Data["session-secret"]) == "" || string(s.Data["oidc-corp-client-secret"]) != "corp-secret" {
		t.Fatalf("secret = %v", s)
	}
	if len(r.ingresses) != 1 || len(r.monitors) != 1 || len(r.pdbs) != 0 || len(r.hpas) != 0 {
		t.Errorf("ingress %d, servicemonitor %d, pdb %d, hpa %d", len(r.ingresses), len(r.monitors), len(r.pdbs), len(r.hpas))
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(r.configMaps["gh-gatehouse"].Data["config.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["server"].(map[string]any)["public_url"] != "https://dash.example.com" {
		t.Errorf("config.yaml = %v", cfg)
	}
	checkConfigWithGatehouse(t, r, c)

	// A config change changes the checksum, so the pods roll.
	r2 := render(t, "testdata/standalone.yaml", "--set", "config.upstream.url=http://other:3000")
	d2, _ := r2.gatehouse(t)
	if d.Spec.Template.Annotations["checksum/config"] == d2.Spec.Template.Annotations["checksum/config"] {
		t.Error("checksum/config did not change with the config")
	}
}

func TestSidecar(t *testing.T) {
	r := render(t, "testdata/sidecar.yaml")
	d, c := checkCommon(t, r)
	if n := len(d.Spec.Template.Spec.Containers); n != 2 {
		t.Fatalf("%d containers, want gatehouse and the app", n)
	}
	if got := envOf(c)["GATEHOUSE_UPSTREAM_URL"]; got != "http://127.0.0.1:3000" {
		t.Errorf("upstream = %q, want the app on loopback", got)
	}
	svc := r.services["gh-gatehouse"]
	for _, p := range svc.Spec.Ports {
		if p.TargetPort.String() == "app" || p.Port == 3000 {
			t.Errorf("the Service exposes the app's port: %+v", p)
		}
	}
	checkConfigWithGatehouse(t, r, c)
}

func TestMemcacheWithReplicas(t *testing.T) {
	r := render(t, "testdata/memcache.yaml")
	_, c := checkCommon(t, r)
	env := envOf(c)
	if env["GATEHOUSE_SESSION_STORE_TYPE"] != "memcache" || env["GATEHOUSE_SESSION_STORE_MEMCACHE_SERVERS"] != "gh-gatehouse-memcached:11211" {
		t.Errorf("store env = %v", env)
	}
	if r.deployments["gh-gatehouse-memcached"] == nil || r.services["gh-gatehouse-memcached"] == nil {
		t.Fatal("memcached Deployment and Service should be rendered")
	}
	if env["GATEHOUSE_HEADERS_ASSERTION_SIGNING_KEY_FILES"] != "/etc/gatehouse/secrets/signing-key.pem" {
		t.Error("replicas need the shared signing key")
	}
	if len(r.pdbs) != 1 || len(r.hpas) != 1 {
		t.Errorf("pdb %d hpa %d, want 1 and 1", len(r.pdbs), len(r.hpas))
	}
	checkConfigWithGatehouse(t, r, c)
}

func TestExistingSecret(t *testing.T) {
	r := render(t, "testdata/existing-secret.yaml")
	d, c := checkCommon(t, r)
	if len(r.secrets) != 0 {
		t.Errorf("a Secret was rendered despite existingSecret")
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "secrets" && (v.Secret == nil || v.Secret.SecretName != "my-gatehouse-secrets") {
			t.Errorf("secrets volume = %+v", v)
		}
	}
	if envOf(c)["GATEHOUSE_AUTH_OIDC_CORP_CLIENT_SECRET_FILE"] == "" {
		t.Error("the OIDC client secret file should be referenced")
	}
}

func TestSchemaRejectsBadValues(t *testing.T) {
	for name, set := range map[string][]string{
		"unknown top-level key": {"--set", "replicas=3"},
		"wrong type":            {"--set", "replicaCount=many"},
		"secret in the config":  {"--set", "config.session.secret=oops"},
		"bad memcached mode":    {"--set", "memcached.enabled=sometimes"},
	} {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"template", "gh", chartDir, "-f", "testdata/standalone.yaml"}, set...)
			if _, err := helm(t, args...); err == nil {
				t.Fatalf("helm accepted %v", set)
			}
		})
	}
	if _, err := helm(t, "template", "gh", chartDir, "--set", "config.server.public_url=https://x"); err == nil || !strings.Contains(err.Error(), "sessionSecret") {
		t.Fatalf("missing session secret: %v", err)
	}
}
