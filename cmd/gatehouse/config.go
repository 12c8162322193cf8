package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/gatehouse/gatehouse/assertion"
	"github.com/gatehouse/gatehouse/authn"
	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/internal/confcheck"
	"github.com/gatehouse/gatehouse/oauthserver"
	"github.com/gatehouse/gatehouse/oauthserver/workload"
	"github.com/gatehouse/gatehouse/pages"
	"github.com/gatehouse/gatehouse/proxy"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
	"github.com/gatehouse/gatehouse/tokens"
)

// Config is the whole configuration file. Each section's type belongs to
// the package that uses it, and that package validates it.
type Config struct {
	Server     proxy.ServerConfig           `mapstructure:"server"`
	Upstream   proxy.UpstreamConfig         `mapstructure:"upstream"`
	Auth       AuthConfig                   `mapstructure:"auth"`
	Session    session.Config               `mapstructure:"session"`
	Headers    proxy.HeadersConfig          `mapstructure:"headers"`
	Policies   []filters.PolicyConfig       `mapstructure:"policies"`
	Routes     []proxy.RouteConfig          `mapstructure:"routes"`
	DeviceFlow oauthserver.DeviceFlowConfig `mapstructure:"device_flow"`
	UI         pages.UIConfig               `mapstructure:"ui"`
	Tokens     tokens.Config                `mapstructure:"tokens"`
	Logging    LoggingConfig                `mapstructure:"logging"`
}

// AuthConfig is the auth section: who signs in (package authn) and which
// workload issuers' JWTs machines may bring (package workload).
type AuthConfig struct {
	authn.Config `mapstructure:",squash"`
	JWTIssuers   map[string]workload.IssuerConfig `mapstructure:"jwt_issuers"`
}

// LoggingConfig is the logging section.
type LoggingConfig struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// defaultConfig holds every default documented in config.example.yaml.
func defaultConfig() Config {
	return Config{
		Server: proxy.ServerConfig{Listen: ":4180", PathPrefix: "/oauth2", MetricsListen: ":9180"},
		Upstream: proxy.UpstreamConfig{
			URL: proxy.DefaultUpstreamURL, PassHostHeader: true, Timeout: 30 * time.Second,
			EncodedSlashes: "reject", PathParameters: "reject", SetAuthorization: "none",
		},
		Auth: AuthConfig{Config: authn.Config{
			GitHub: authn.GitHubConfig{
				URL: "https://github.com", APIURL: "https://api.github.com",
				Scopes: []string{"read:user", "user:email", "read:org"},
			},
			GitLab:    authn.GitLabConfig{URL: "https://gitlab.com", Scopes: []string{"openid", "profile", "email"}},
			Google:    authn.DefaultGoogle(),
			Microsoft: authn.DefaultMicrosoft(),
		}},
		Session: session.Config{
			// CookieName is derived after loading: see defaultCookieName.
			CookieSecure: true, CookieSameSite: "lax",
			Lifetime: 168 * time.Hour, IdleTimeout: 24 * time.Hour, RevalidateInterval: time.Hour,
			Store: sessionstore.Config{Type: "memory", Memcache: sessionstore.MemcacheConfig{
				Servers: []string{"127.0.0.1:11211"}, Timeout: 250 * time.Millisecond, MaxIdleConns: 64,
				ResolveInterval: sessionstore.DefaultResolveInterval, Replicas: sessionstore.DefaultReplicas,
			}},
		},
		Headers: proxy.HeadersConfig{
			User: "X-Forwarded-User", Email: "X-Forwarded-Email", Groups: "X-Forwarded-Groups",
			PreferredUsername: "X-Forwarded-Preferred-Username",
			Assertion:         assertion.Config{Enabled: true, Header: "X-Gatehouse-Assertion", Lifetime: 5 * time.Minute},
		},
		UI:         pages.UIConfig{Title: pages.DefaultTitle},
		DeviceFlow: oauthserver.DeviceFlowConfig{CodeLifetime: 10 * time.Minute, PollInterval: 5 * time.Second, TokenLifetime: 12 * time.Hour},
		Tokens: tokens.Config{Scopes: map[string][]tokens.ScopeRuleConfig{
			"read": {{Methods: []string{"GET", "HEAD"}, Paths: []string{"^/"}}},
		}},
		Logging: LoggingConfig{Level: "info", Format: "json"},
	}
}

// Loaded is a validated configuration and what validating it produced.
type Loaded struct {
	Config    Config
	File      string   // config file read, "" for none
	Warnings  []string // worth a log line, not fatal
	PublicURL *url.URL
	Trusted   []netip.Prefix
	Target    *url.URL
	Routes    proxy.Routes
	Policies  filters.Policies
	Global    filters.Lists
	Keys      []assertion.Key // assertion signing keys from files; empty: generate
	Scopes    tokens.Scopes
	Statics   tokens.Statics
	Pages     *pages.Renderer // the ui section's pages; nil: the embedded ones
	// RouteTable is the routes section compiled; nil: one upstream.
	RouteTable *proxy.RouteTable
	// ProviderRoots are the system's roots plus auth.ca_file, for every
	// provider's HTTP client; nil: the system's roots alone.
	ProviderRoots *x509.CertPool
	// Files are the other files the configuration names (allowed e-mails,
	// *_file secrets, signing keys, the TLS pair, CA bundles, the logo,
	// custom page templates): a change to any of them
	// reloads the configuration, as a change to File does.
	Files []string
	stamp [32]byte // filesHash(watched()) of the contents loaded
}

// watched lists every file whose content the configuration depends on.
func (l *Loaded) watched() []string {
	if l.File == "" {
		return l.Files
	}
	return append([]string{l.File}, l.Files...)
}

// ConfigError is an invalid configuration: one line per problem.
type ConfigError struct{ Problems confcheck.Problems }

func (e *ConfigError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = formatProblem(p)
	}
	return strings.Join(lines, "\n")
}

func formatProblem(p confcheck.Problem) string {
	key := p.Key
	if key == "" {
		return p.Message
	}
	return fmt.Sprintf("%s (%s): %s", key, envFor(key), p.Message)
}

// structureKeys are the keys set from the environment as one JSON value.
var structureKeys = sync.OnceValue(func() []string {
	var out []string
	for _, k := range leafKeys(reflect.TypeOf(Config{}), "") {
		if k.kind == kindStructure {
			out = append(out, k.path)
		}
	}
	return out
})

// envFor names the variable that sets key. Whatever lies inside a value
// given as JSON (policies[0].path, tokens.scopes.read[0].paths) is set by
// that JSON's variable; any other list element by its list's variable.
func envFor(key string) string {
	for _, s := range structureKeys() {
		if key == s || strings.HasPrefix(key, s+".") || strings.HasPrefix(key, s+"[") {
			return confcheck.EnvName(s)
		}
	}
	if i := strings.Index(key, "["); i >= 0 {
		key = key[:i]
	}
	return confcheck.EnvName(key)
}

// configFile picks the file: --config, else GATEHOUSE_CONFIG, else
// ./gatehouse.yaml if present.
func configFile(flag string, getenv func(string) string) string {
	if flag != "" {
		return flag
	}
	if f := getenv("GATEHOUSE_CONFIG"); f != "" {
		return f
	}
	if _, err := os.Stat("gatehouse.yaml"); err == nil {
		return "gatehouse.yaml"
	}
	return ""
}

// loadConfig reads the file (if any) and the environment, decodes them over
// the defaults and validates every section. environ is os.Environ() in
// production.
func loadConfig(file string, environ []string) (*Loaded, error) {
	v := viper.New()
	keys := leafKeys(reflect.TypeOf(Config{}), "")
	def := flatten(reflect.ValueOf(defaultConfig()), "")
	for k, val := range def {
		v.SetDefault(k, val)
	}
	// stamp fingerprints every file as it is read (the others just before
	// they are), so that the watcher sees any later change.
	stamp := sha256.New()
	if file != "" {
		b, err := os.ReadFile(file)
		if err == nil {
			v.SetConfigType("yaml")
			err = v.ReadConfig(bytes.NewReader(b))
		}
		if err != nil {
			return nil, &ConfigError{Problems: confcheck.Problems{{Message: fmt.Sprintf("cannot read config file %s: %v", file, err)}}}
		}
		stampFile(stamp, file, b, nil)
	}
	var ps confcheck.Problems
	warnings := applyEnv(v, keys, environ)
	settings := v.AllSettings()
	unknownKeys(&ps, settings, reflect.TypeOf(Config{}), "")

	cfg := Config{}
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:           &cfg,
		WeaklyTypedInput: true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			jsonListHook, commaListHook, mapstructure.StringToTimeDurationHookFunc(),
		),
	})
	if err != nil {
		return nil, err
	}
	var undecoded confcheck.Problems
	if err := dec.Decode(settings); err != nil {
		undecoded = decodeProblems(err)
		ps = append(ps, undecoded...)
	}
	cfg.Session.CookieName = defaultCookieName(cfg.Session, cfg.Server.PublicURL)
	files := namedFiles(reflect.ValueOf(cfg))
	// Custom templates live in a directory, not a *_file key: watch the
	// ones present now, so that editing one applies like any other file.
	files = append(files, cfg.UI.TemplateFiles()...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		stampFile(stamp, f, b, err)
	}
	// Validate even when some keys could not be read, so that every
	// problem is reported at once; a key that could not be read is left
	// out of validation, which would only complain about its zero value.
	l, vps := validate(cfg)
	for _, p := range vps {
		if !underAny(p.Key, undecoded) {
			ps = append(ps, p)
		}
	}
	if len(ps) > 0 {
		return nil, &ConfigError{Problems: ps}
	}
	l.File = file
	l.Files = files
	copy(l.stamp[:], stamp.Sum(nil))
	l.Warnings = append(warnings, l.Warnings...)
	return l, nil
}

// underAny reports whether key is, or lies inside, the key of one of ps.
func underAny(key string, ps confcheck.Problems) bool {
	for _, p := range ps {
		if p.Key != "" && (key == p.Key || strings.HasPrefix(key, p.Key+".") || strings.HasPrefix(key, p.Key+"[")) {
			return true
		}
	}
	return false
}

// defaultCookieName is session.cookie_name when none is configured:
// "__Host-gatehouse" when the cookie can carry that prefix (an https
// public URL, cookie_secure and no cookie_domain), so that no sibling
// host can set or shadow it; "_gatehouse" otherwise.
func defaultCookieName(c session.Config, publicURL string) string {
	if c.CookieName != "" {
		return c.CookieName
	}
	u, err := url.Parse(publicURL)
	if err == nil && strings.EqualFold(u.Scheme, "https") && c.CookieSecure && c.CookieDomain == "" {
		return "__Host-gatehouse"
	}
	return "_gatehouse"
}

// namedFiles lists, in order and once each, the files a configuration
// names: every non-empty key ending in _file and every entry of a key
// ending in _files.
func namedFiles(v reflect.Value) []string {
	var out []string
	seen := map[string]bool{}
	eachLeaf(v, func(_, name string, v reflect.Value) {
		if v.Kind() != reflect.String || !(strings.HasSuffix(name, "_file") || strings.HasSuffix(name, "_files")) {
			return
		}
		// A projected token rotates every hour or so and is read afresh at
		// each use: its rotation is no reason to rebuild everything.
		if name == "client_assertion_file" {
			return
		}
		if f := v.String(); f != "" && !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	})
	return out
}

// eachLeaf calls fn, in key order, with every value in a configuration
// that is not a struct, map, list or pointer: its key
// ("tokens.scopes.read[0].paths[1]"), the name of the struct field that
// holds it (for a list element, the list's; for a map entry, "") and the
// value.
func eachLeaf(v reflect.Value, fn func(key, name string, v reflect.Value)) {
	var walk func(v reflect.Value, key, name string)
	walk = func(v reflect.Value, key, name string) {
		switch v.Kind() {
		case reflect.Struct:
			t := v.Type()
			for i := 0; i < t.NumField(); i++ {
				tag, opts, _ := strings.Cut(t.Field(i).Tag.Get("mapstructure"), ",")
				switch {
				case opts == "squash":
					walk(v.Field(i), key, name)
				case tag != "" && tag != "-":
					walk(v.Field(i), confcheck.Join(key, tag), tag)
				}
			}
		case reflect.Map:
			keys := v.MapKeys()
			sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
			for _, k := range keys {
				walk(v.MapIndex(k), confcheck.Join(key, fmt.Sprint(k)), "")
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i), key+"["+strconv.Itoa(i)+"]", name)
			}
		case reflect.Pointer, reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem(), key, name)
			}
		default:
			fn(key, name, v)
		}
	}
	walk(v, "", "")
}

// validate asks every section to check itself.
func validate(cfg Config) (*Loaded, confcheck.Problems) {
	var ps confcheck.Problems
	l := &Loaded{}
	var sps confcheck.Problems
	l.PublicURL, l.Trusted, sps = cfg.Server.Validate()
	ps.Nest("server", sps)
	l.Target, l.Routes, sps = cfg.Upstream.Validate()
	ps.Nest("upstream", sps)
	l.Warnings = append(l.Warnings, cfg.Upstream.Warnings()...)
	ps.Nest("upstream", cfg.Upstream.ValidateAuthorization(cfg.Headers.Assertion.Enabled))
	if len(cfg.Routes) > 0 {
		ps.Nest("upstream", cfg.Upstream.ValidateWithRoutes())
	}
	l.RouteTable, sps = proxy.CompileRoutes(cfg.Routes, proxy.RouteDefaults{
		Upstream: cfg.Upstream, PathPrefix: cfg.Server.PathPrefix, Assertion: cfg.Headers.Assertion.Enabled,
	})
	ps.Nest("routes", sps)
	ps.Nest("routes", proxy.CookieDomainProblems(cfg.Routes, cfg.Session.CookieDomain))
	l.Warnings = append(l.Warnings, proxy.RoutesWarnings(cfg.Routes)...)
	var warnings []string
	l.Global, warnings, sps = cfg.Auth.Validate()
	l.Warnings = append(l.Warnings, warnings...)
	ps.Nest("auth", sps)
	l.ProviderRoots, sps = providerRoots(cfg.Auth.CAFile)
	ps.Nest("auth", sps)
	ps.Nest("session", cfg.Session.Validate())
	l.Warnings = append(l.Warnings, cfg.Session.Store.Warnings()...)
	ps.Nest("headers", cfg.Headers.Validate())
	l.Keys, sps = cfg.Headers.Assertion.Validate()
	ps.Nest("headers.assertion", sps)
	l.Policies, sps = filters.CompilePolicies(cfg.Policies)
	ps.Nest("policies", sps)
	l.Pages, warnings, sps = cfg.UI.Validate()
	l.Warnings = append(l.Warnings, warnings...)
	ps.Nest("ui", sps)
	ps.Nest("device_flow", cfg.DeviceFlow.Validate())
	l.Scopes, l.Statics, sps = cfg.Tokens.Compile()
	ps.Nest("tokens", sps)
	ps.Nest("auth.jwt_issuers", workload.ValidateAll(cfg.Auth.JWTIssuers, l.Scopes.Has))
	ps.Nest("logging", cfg.Logging.Validate())
	ps = append(ps, crossChecks(cfg, ps)...)
	l.Warnings = append(l.Warnings, patternWarnings(cfg)...)
	l.Warnings = append(l.Warnings, uiWarnings(cfg)...)
	l.Warnings = append(l.Warnings, publicURLWarnings(l.PublicURL)...)
	l.Config = cfg
	return l, ps
}

// Validate checks the logging section.
func (c LoggingConfig) Validate() confcheck.Problems {
	var ps confcheck.Problems
	switch c.Level {
	case "debug", "info", "warn", "error":
	default:
		ps.Addf("level", "must be debug, info, warn or error, not %q", c.Level)
	}
	if c.Format != "json" && c.Format != "text" {
		ps.Addf("format", "must be json or text, not %q", c.Format)
	}
	return ps
}
