package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

const routesYAML = minimalYAML + `
routes:
  - name: grafana
    from: {host: "Grafana.Example.com."}
    to: "http://grafana:3000"
    set_authorization: assertion
    headers: {user: X-WEBAUTH-USER}
  - name: prometheus
    from: {host: "ops.example.com", path_prefix: "/prometheus/"}
    to: "http://prometheus:9090"
    strip_prefix: true
    timeout: 5s
    pass_host_header: false
    allowed_groups: ["ops"]
    policies:
      - path: "^/prometheus/api/v1/admin"
        allowed_emails: ["root@example.com"]
`

func TestRoutesFromYAML(t *testing.T) {
	l := mustLoad(t, writeFile(t, routesYAML), nil)
	if l.RouteTable == nil || len(l.RouteTable.Routes()) != 2 {
		t.Fatalf("routes = %+v", l.RouteTable)
	}
	g, p := l.Config.Routes[0], l.Config.Routes[1]
	if g.PassHostHeader != nil || g.Timeout != nil || g.Headers == nil || g.Headers.User != "X-WEBAUTH-USER" {
		t.Fatalf("grafana = %+v", g)
	}
	if p.PassHostHeader == nil || *p.PassHostHeader || p.Timeout == nil || *p.Timeout != 5*time.Second {
		t.Fatalf("prometheus = %+v", p)
	}
	if r := l.RouteTable.Routes()[0]; r.Host() != "grafana.example.com" || r.Prefix() != "/" {
		t.Fatalf("grafana compiled to %s %s", r.Host(), r.Prefix())
	}
	if r := l.RouteTable.Routes()[1]; r.Prefix() != "/prometheus" {
		t.Fatalf("prometheus prefix %q", r.Prefix())
	}
	// check prints optional keys as values, not pointers.
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "--config", writeFile(t, routesYAML)}, strings.NewReader(""), &out, &errOut, nil); code != 0 {
		t.Fatalf("check exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "timeout: 5s") || !strings.Contains(out.String(), "preferred_username: \"\"") {
		t.Fatalf("check output:\n%s", out.String())
	}
}

func TestRoutesFromEnvironment(t *testing.T) {
	env := append(minimalEnv(), `GATEHOUSE_ROUTES=[{"name":"a","from":{"host":"a.example.com"},"to":"http://a:1","timeout":"2s"},`+
		`{"name":"b","from":{"host":"*.example.com"},"to":"https://b:2"}]`)
	l := mustLoad(t, "", env)
	if len(l.RouteTable.Routes()) != 2 || *l.Config.Routes[0].Timeout != 2*time.Second {
		t.Fatalf("routes = %+v", l.Config.Routes)
	}
}

func TestRoutesProblems(t *testing.T) {
	route := func(extra string) string {
		return `{"name":"a","from":{"host":"a.example.com"},"to":"http://a:1"` + extra + `}`
	}
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"upstream.url with routes", []string{"GATEHOUSE_UPSTREAM_URL=http://app:8080", "GATEHOUSE_ROUTES=[" + route("") + "]"},
			"upstream.url (GATEHOUSE_UPSTREAM_URL): must be left unset when routes are configured"},
		{"upstream.skip_auth_routes with routes", []string{"GATEHOUSE_UPSTREAM_SKIP_AUTH_ROUTES=^/health$", "GATEHOUSE_ROUTES=[" + route("") + "]"},
			"upstream.skip_auth_routes (GATEHOUSE_UPSTREAM_SKIP_AUTH_ROUTES): must be empty when routes are configured"},
		{"duplicate names", []string{"GATEHOUSE_ROUTES=[" + route("") + "," + `{"name":"a","from":{"host":"b.example.com"},"to":"http://b:1"}` + "]"},
			"routes[1].name (GATEHOUSE_ROUTES): \"a\" is also the name of routes[0]"},
		{"same host and prefix", []string{"GATEHOUSE_ROUTES=[" + route("") + "," + `{"name":"b","from":{"host":"A.example.com","path_prefix":"/"},"to":"http://b:1"}` + "]"},
			"routes[1].from (GATEHOUSE_ROUTES): routes[0] already answers"},
		{"bad host", []string{"GATEHOUSE_ROUTES=[" + `{"name":"a","from":{"host":"a.*.example.com"},"to":"http://a:1"}` + "]"},
			"routes[0].from.host (GATEHOUSE_ROUTES): \"a.*.example.com\" is not a host name"},
		{"host with port", []string{"GATEHOUSE_ROUTES=[" + `{"name":"a","from":{"host":"a.example.com:443"},"to":"http://a:1"}` + "]"},
			"routes[0].from.host"},
		{"prefix without slash", []string{"GATEHOUSE_ROUTES=[" + `{"name":"a","from":{"host":"a.example.com","path_prefix":"docs"},"to":"http://a:1"}` + "]"},
			"routes[0].from.path_prefix (GATEHOUSE_ROUTES): must start with '/'"},
		{"prefix under server.path_prefix", []string{"GATEHOUSE_ROUTES=[" + `{"name":"a","from":{"host":"a.example.com","path_prefix":"/oauth2/x"},"to":"http://a:1"}` + "]"},
			"lies under server.path_prefix"},
		{"relative to", []string{"GATEHOUSE_ROUTES=[" + `{"name":"a","from":{"host":"a.example.com"},"to":"/a"}` + "]"},
			"routes[0].to (GATEHOUSE_ROUTES): \"/a\" is not an absolute http(s) URL"},
		{"set_authorization", []string{"GATEHOUSE_ROUTES=[" + route(`,"set_authorization":"basic"`) + "]"},
			"routes[0].set_authorization (GATEHOUSE_ROUTES): \"basic\" is not one of none, assertion, access_token"},
		{"assertion without assertions", []string{"GATEHOUSE_HEADERS_ASSERTION_ENABLED=false", "GATEHOUSE_ROUTES=[" + route(`,"set_authorization":"assertion"`) + "]"},
			"routes[0].set_authorization (GATEHOUSE_ROUTES): assertion needs headers.assertion.enabled"},
		{"upstream assertion without assertions", []string{"GATEHOUSE_HEADERS_ASSERTION_ENABLED=false", "GATEHOUSE_UPSTREAM_SET_AUTHORIZATION=assertion"},
			"upstream.set_authorization (GATEHOUSE_UPSTREAM_SET_AUTHORIZATION): assertion needs headers.assertion.enabled"},
		{"bad route filter", []string{"GATEHOUSE_ROUTES=[" + route(`,"allowed_emails":["not-an-address"]`) + "]"},
			"routes[0].allowed_emails (GATEHOUSE_ROUTES): \"not-an-address\" is not an e-mail address"},
		{"bad route policy", []string{"GATEHOUSE_ROUTES=[" + route(`,"policies":[{"path":"^/admin"}]`) + "]"},
			"routes[0].policies[0] (GATEHOUSE_ROUTES): a policy needs at least one allowed_* list"},
		{"zero timeout", []string{"GATEHOUSE_ROUTES=[" + route(`,"timeout":"0s"`) + "]"}, "routes[0].timeout (GATEHOUSE_ROUTES)"},
		{"unknown key", []string{"GATEHOUSE_ROUTES=[" + route(`,"strip_prefx":true`) + "]"}, "routes[0].strip_prefx (GATEHOUSE_ROUTES): unknown key"},
		{"host outside cookie_domain", []string{"GATEHOUSE_SESSION_COOKIE_DOMAIN=.example.org", "GATEHOUSE_ROUTES=[" + route("") + "]"},
			"routes[0].from.host (GATEHOUSE_ROUTES): \"a.example.com\" is not under session.cookie_domain"},
		{"bad route header", []string{"GATEHOUSE_ROUTES=[" + route(`,"headers":{"user":"X User"}`) + "]"},
			"routes[0].headers.user (GATEHOUSE_ROUTES): \"X User\" is not a valid HTTP header name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig("", append(minimalEnv(), tt.env...))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v\nwant a line containing %q", err, tt.want)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !problemLine.MatchString(line) {
					t.Errorf("line %q does not name a key and its variable", line)
				}
			}
		})
	}
	// A cookie_domain that covers every route host (wildcards included) is fine.
	env := append(minimalEnv(), "GATEHOUSE_SESSION_COOKIE_DOMAIN=.example.com",
		`GATEHOUSE_ROUTES=[{"name":"a","from":{"host":"a.example.com"},"to":"http://a:1"},{"name":"w","from":{"host":"*.example.com"},"to":"http://w:1"}]`)
	mustLoad(t, "", env)
}

func TestRoutePatternsAreCheckedForAnchors(t *testing.T) {
	env := append(minimalEnv(), `GATEHOUSE_ROUTES=[{"name":"a","from":{"host":"a.example.com"},"to":"http://a:1",`+
		`"skip_auth_routes":["GET=/health"],"api_routes":["/api/"],"policies":[{"path":"/admin","allowed_groups":["ops"]}]}]`)
	l := mustLoad(t, "", env)
	all := strings.Join(l.Warnings, "\n")
	for _, want := range []string{
		`routes[0].skip_auth_routes: the pattern "GET=/health" is not anchored at the start`,
		`routes[0].api_routes: the pattern "/api/" is not anchored`,
		`routes[0].policies[0].path: the pattern "/admin" is not anchored`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no warning %q in:\n%s", want, all)
		}
	}
}
