package workload

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/confcheck"
)

func keysOf(ps confcheck.Problems) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.Key)
	}
	return out
}

func TestDefaults(t *testing.T) {
	c := IssuerConfig{Issuer: "https://kubernetes.default.svc"}
	c.Defaults()
	want := IssuerConfig{
		Issuer:      "https://kubernetes.default.svc",
		IssuerURL:   "https://kubernetes.default.svc",
		Algorithms:  []string{"RS256", "ES256"},
		UserClaim:   "sub",
		MaxLifetime: 24 * time.Hour,
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("Defaults = %+v", c)
	}
	f := IssuerConfig{Issuer: "x", JWKSFile: "/keys.json", Algorithms: []string{"EdDSA"}, UserClaim: "email", MaxLifetime: time.Hour}
	f.Defaults()
	if f.IssuerURL != "" || f.Algorithms[0] != "EdDSA" || f.UserClaim != "email" || f.MaxLifetime != time.Hour {
		t.Fatalf("Defaults overrode settings: %+v", f)
	}
	c.Algorithms[0] = "PS256"
	if DefaultAlgorithms[0] != "RS256" {
		t.Fatal("Defaults shares DefaultAlgorithms")
	}
}

func TestFieldsMatchTags(t *testing.T) {
	typ := reflect.TypeFor[IssuerConfig]()
	var tags []string
	for i := range typ.NumField() {
		tags = append(tags, typ.Field(i).Tag.Get("mapstructure"))
	}
	if !reflect.DeepEqual(tags, Fields) {
		t.Fatalf("Fields = %v; tags = %v", Fields, tags)
	}
}

func TestValidate(t *testing.T) {
	ok := IssuerConfig{Issuer: "https://kubernetes.default.svc", Audiences: []string{"gatehouse"}}
	known := func(s string) bool { return s == "read" || s == "deploy" }
	mod := func(f func(c *IssuerConfig)) IssuerConfig {
		c := ok
		f(&c)
		return c
	}
	tests := []struct {
		name  string
		entry string
		cfg   IssuerConfig
		keys  []string // problem keys, in order
		text  string   // part of the first message
	}{
		{"minimal", "k8s", ok, []string{}, ""},
		{"everything", "gha", IssuerConfig{
			Issuer: "https://token.actions.githubusercontent.com", JWKSURL: "https://token.actions.githubusercontent.com/.well-known/jwks?v=2",
			Audiences: []string{"a", "b"}, Algorithms: []string{"RS256", "PS384", "ES512", "EdDSA"},
			Claims: map[string]string{"repository": "acme/*", "ref": `refs/heads/\*`}, MaxLifetime: time.Hour, Scopes: []string{"read", "deploy"},
		}, []string{}, ""},
		{"non-URL issuer with a key file", "x", IssuerConfig{Issuer: "spiffe-ish", JWKSFile: "/k.json", Audiences: []string{"a"}}, []string{}, ""},
		{"bad name", "K8s", ok, []string{""}, "lower-case"},
		{"name with a dash", "k-8", ok, []string{""}, "lower-case"},
		{"no issuer", "k8s", mod(func(c *IssuerConfig) { c.Issuer = "" }), []string{"issuer"}, "required"},
		{"issuer with spaces", "k8s", mod(func(c *IssuerConfig) { c.Issuer = " https://a.example" }), []string{"issuer", "issuer"}, "spaces"},
		{"issuer not a URL for discovery", "k8s", mod(func(c *IssuerConfig) { c.Issuer = "kubernetes" }), []string{"issuer"}, "discovered"},
		{"two key sources", "k8s", mod(func(c *IssuerConfig) { c.IssuerURL, c.JWKSFile = "https://a.example", "/k.json" }), []string{"jwks_file"}, "only one"},
		{"three key sources", "k8s", mod(func(c *IssuerConfig) {
			c.IssuerURL, c.JWKSURL, c.JWKSFile = "https://a.example", "https://a.example/k", "/k.json"
		}), []string{"jwks_url", "jwks_file"}, "only one"},
		{"bad issuer_url", "k8s", mod(func(c *IssuerConfig) { c.IssuerURL = "a.example/x" }), []string{"issuer_url"}, "absolute"},
		{"issuer_url with a query", "k8s", mod(func(c *IssuerConfig) { c.IssuerURL = "https://a.example/?x=1" }), []string{"issuer_url"}, "query"},
		{"bad jwks_url", "k8s", mod(func(c *IssuerConfig) { c.JWKSURL = "file:///etc/keys" }), []string{"jwks_url"}, "absolute"},
		{"no audiences", "k8s", mod(func(c *IssuerConfig) { c.Audiences = nil }), []string{"audiences"}, "required"},
		{"empty audience", "k8s", mod(func(c *IssuerConfig) { c.Audiences = []string{"a", " "} }), []string{"audiences"}, "empty"},
		{"HS256", "k8s", mod(func(c *IssuerConfig) { c.Algorithms = []string{"RS256", "HS256"} }), []string{"algorithms"}, "asymmetric only"},
		{"none", "k8s", mod(func(c *IssuerConfig) { c.Algorithms = []string{"none"} }), []string{"algorithms"}, "asymmetric only"},
		{"lower-case alg", "k8s", mod(func(c *IssuerConfig) { c.Algorithms = []string{"rs256"} }), []string{"algorithms"}, "asymmetric only"},
		{"empty claim value", "k8s", mod(func(c *IssuerConfig) { c.Claims = map[string]string{"repository": ""} }), []string{"claims.repository"}, "empty"},
		{"trailing escape", "k8s", mod(func(c *IssuerConfig) { c.Claims = map[string]string{"ref": `main\`} }), []string{"claims.ref"}, "lone"},
		{"empty claim name", "k8s", mod(func(c *IssuerConfig) { c.Claims = map[string]string{"": "x"} }), []string{"claims"}, "empty"},
		{"negative max_lifetime", "k8s", mod(func(c *IssuerConfig) { c.MaxLifetime = -time.Second }), []string{"max_lifetime"}, "positive"},
		{"unknown scope", "k8s", mod(func(c *IssuerConfig) { c.Scopes = []string{"read", "admin"} }), []string{"scopes"}, `"admin"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := tt.cfg.Validate(tt.entry, known)
			if got := keysOf(ps); !reflect.DeepEqual(got, tt.keys) {
				t.Fatalf("problem keys %v; want %v (%v)", got, tt.keys, ps)
			}
			if tt.text != "" && !strings.Contains(ps[0].Message, tt.text) {
				t.Fatalf("message %q; want it to mention %q", ps[0].Message, tt.text)
			}
			// Defaults must not hide or invent problems.
			d := tt.cfg
			d.Defaults()
			if got := keysOf(d.Validate(tt.entry, known)); !reflect.DeepEqual(got, tt.keys) {
				t.Fatalf("after Defaults: problem keys %v; want %v", got, tt.keys)
			}
		})
	}
}

func TestValidateAll(t *testing.T) {
	issuers := map[string]IssuerConfig{
		"a": {Issuer: "https://kubernetes.default.svc", JWKSFile: "/a.json", Audiences: []string{"x"}},
		"b": {Issuer: "https://kubernetes.default.svc", JWKSFile: "/b.json", Audiences: []string{"x"}},
		"c": {Issuer: "https://token.actions.githubusercontent.com", Scopes: []string{"nope"}},
	}
	ps := ValidateAll(issuers, func(string) bool { return false })
	// c is GitHub Actions with no claim rule: any repository anywhere
	// could get in.
	want := []string{"b.issuer", "c.audiences", "c.claims", "c.scopes"}
	if got := keysOf(ps); !reflect.DeepEqual(got, want) {
		t.Fatalf("problem keys %v; want %v (%v)", got, want, ps)
	}
	if !strings.Contains(ps[0].Message, "jwt_issuers.a") {
		t.Errorf("duplicate message %q does not name the other entry", ps[0].Message)
	}
	if issuers["c"].IssuerURL != "https://token.actions.githubusercontent.com" || issuers["a"].UserClaim != "sub" {
		t.Errorf("defaults not filled in place: %+v", issuers)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	in := map[string]IssuerConfig{"k8s": {Issuer: "https://kubernetes.default.svc", Algorithms: []string{"HS256"}}}
	_, err := New(in, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "jwt_issuers.k8s.algorithms") || !strings.Contains(err.Error(), "jwt_issuers.k8s.audiences") {
		t.Fatalf("New = %v", err)
	}
	if in["k8s"].UserClaim != "" {
		t.Fatal("New modified its argument")
	}
	v, err := New(map[string]IssuerConfig{
		"b": {Issuer: "https://b.example", Audiences: []string{"x"}},
		"a": {Issuer: "https://a.example", Audiences: []string{"x"}},
	}, nil, nil, nil)
	if err != nil || strings.Join(v.Issuers(), ",") != "a,b" {
		t.Fatalf("New = %v, %v", v, err)
	}
}
