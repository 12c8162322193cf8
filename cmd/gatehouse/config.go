package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/gatehouse/gatehouse/assertion"
	"github.com/gatehouse/gatehouse/tokens"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/gatehouse/gatehouse/authn"
	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/internal/confcheck"
	"github.com/gatehouse/gatehouse/proxy"
	"github.com/gatehouse/gatehouse/session"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// Config is the whole configuration file. Each section's type belongs to
// the package that uses it, and that package validates it.
type Config struct {
	Server     proxy.ServerConfig     `mapstructure:"server"`
	Upstream   proxy.UpstreamConfig   `mapstructure:"upstream"`
	Auth       authn.Config           `mapstructure:"auth"`
	Session    session.Config         `mapstructure:"session"`
	Headers    proxy.HeadersConfig    `mapstructure:"headers"`
	Policies   []filters.PolicyConfig `mapstructure:"policies"`
	DeviceFlow authn.DeviceFlowConfig `mapstructure:"device_flow"`
	Tokens     tokens.Config          `mapstructure:"tokens"`
	Logging    LoggingConfig          `mapstructure:"logging"`
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
			URL: "http://127.0.0.1:8080", PassHostHeader: true, Timeout: 30 * time.Second,
		},
		Auth: authn.Config{
			GitHub: authn.GitHubConfig{
				URL: "https://github.com", APIURL: "https://api.github.com",
				Scopes: []string{"read:user", "user:email", "read:org"},
			},
			GitLab: authn.GitLabConfig{URL: "https://gitlab.com", Scopes: []string{"openid", "profile", "email"}},
		},
		Session: session.Config{
			CookieName: "_gatehouse", CookieSecure: true, CookieSameSite: "lax",
			Lifetime: 168 * time.Hour, IdleTimeout: 24 * time.Hour, RevalidateInterval: time.Hour,
			Store: sessionstore.Config{Type: "memory", Memcache: sessionstore.MemcacheConfig{
				Servers: []string{"127.0.0.1:11211"}, Timeout: 250 * time.Millisecond, MaxIdleConns: 64,
			}},
		},
		Headers: proxy.HeadersConfig{
			User: "X-Forwarded-User", Email: "X-Forwarded-Email", Groups: "X-Forwarded-Groups",
			PreferredUsername: "X-Forwarded-Preferred-Username",
			Assertion:         assertion.Config{Enabled: true, Header: "X-Gatehouse-Assertion", Lifetime: 5 * time.Minute},
		},
		DeviceFlow: authn.DeviceFlowConfig{CodeLifetime: 10 * time.Minute, PollInterval: 5 * time.Second, TokenLifetime: 12 * time.Hour},
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
	env := confcheck.EnvName(strings.NewReplacer("[", "_", "]", "").Replace(key))
	if strings.Contains(key, "[") {
		// A list element has no variable of its own; the list does.
		env = confcheck.EnvName(key[:strings.Index(key, "[")])
	}
	return fmt.Sprintf("%s (%s): %s", key, env, p.Message)
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
	if file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, &ConfigError{Problems: confcheck.Problems{{Message: fmt.Sprintf("cannot read config file %s: %v", file, err)}}}
		}
	}
	var ps confcheck.Problems
	warnings := applyEnv(v, keys, environ)
	unknownKeys(&ps, v.AllSettings(), reflect.TypeOf(Config{}), "")

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
	if err := dec.Decode(v.AllSettings()); err != nil {
		ps = append(ps, decodeProblems(err)...)
	}
	if len(ps) > 0 {
		return nil, &ConfigError{Problems: ps}
	}
	l, vps := validate(cfg)
	if len(vps) > 0 {
		return nil, &ConfigError{Problems: vps}
	}
	l.File = file
	l.Warnings = append(warnings, l.Warnings...)
	return l, nil
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
	var warnings []string
	l.Global, warnings, sps = cfg.Auth.Validate()
	l.Warnings = append(l.Warnings, warnings...)
	ps.Nest("auth", sps)
	ps.Nest("session", cfg.Session.Validate())
	ps.Nest("headers", cfg.Headers.Validate())
	l.Keys, sps = cfg.Headers.Assertion.Validate()
	ps.Nest("headers.assertion", sps)
	l.Policies, sps = filters.CompilePolicies(cfg.Policies)
	ps.Nest("policies", sps)
	ps.Nest("device_flow", cfg.DeviceFlow.Validate())
	l.Scopes, l.Statics, sps = cfg.Tokens.Compile()
	ps.Nest("tokens", sps)
	ps.Nest("logging", cfg.Logging.Validate())
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

// keyKind says how a configuration key is set from the environment.
type keyKind int

const (
	kindScalar    keyKind = iota // a string, number, bool or duration
	kindList                     // comma-separated
	kindStructure                // JSON (a list of objects, a map)
	kindNamedMap                 // auth.oidc: GATEHOUSE_AUTH_OIDC_<NAME>_<FIELD>
)

type keyInfo struct {
	path string
	kind keyKind
	elem reflect.Type // for kindNamedMap: the entry type
}

// leafKeys lists the keys of a config struct type, by mapstructure tag.
func leafKeys(t reflect.Type, prefix string) []keyInfo {
	var out []keyInfo
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if opts == "squash" {
			out = append(out, leafKeys(f.Type, prefix)...)
			continue
		}
		path := confcheck.Join(prefix, name)
		switch {
		case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)):
			out = append(out, leafKeys(f.Type, path)...)
		case f.Type.Kind() == reflect.Map && f.Type.Elem().Kind() == reflect.Struct:
			out = append(out, keyInfo{path: path, kind: kindNamedMap, elem: f.Type.Elem()})
		case f.Type.Kind() == reflect.Map || (f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct):
			out = append(out, keyInfo{path: path, kind: kindStructure})
		case f.Type.Kind() == reflect.Slice:
			out = append(out, keyInfo{path: path, kind: kindList})
		default:
			out = append(out, keyInfo{path: path, kind: kindScalar})
		}
	}
	return out
}

// applyEnv sets every key named by a GATEHOUSE_ variable; the environment
// beats the file. Variables that name no key are reported once as a
// warning and otherwise ignored: Kubernetes injects GATEHOUSE_PORT and
// friends for a Service called gatehouse.
func applyEnv(v *viper.Viper, keys []keyInfo, environ []string) []string {
	byEnv := map[string]keyInfo{}
	var maps []keyInfo
	for _, k := range keys {
		if k.kind == kindNamedMap {
			maps = append(maps, k)
			continue
		}
		byEnv[confcheck.EnvName(k.path)] = k
	}
	var unknown []string
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "GATEHOUSE_") || name == "GATEHOUSE_CONFIG" {
			continue
		}
		if k, ok := byEnv[name]; ok {
			v.Set(k.path, value)
			continue
		}
		if path, ok := namedMapKey(maps, name); ok {
			v.Set(path, value)
			continue
		}
		unknown = append(unknown, name)
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return []string{"ignoring environment variables that name no configuration key: " + strings.Join(unknown, ", ")}
}

var mapEntryName = regexp.MustCompile(`^[A-Z][A-Z0-9]*$`)

// namedMapKey maps GATEHOUSE_AUTH_OIDC_CORP_ISSUER_URL to
// auth.oidc.corp.issuer_url. Entry names hold no '_', so the split is
// never ambiguous.
func namedMapKey(maps []keyInfo, env string) (string, bool) {
	for _, m := range maps {
		prefix := confcheck.EnvName(m.path) + "_"
		rest, ok := strings.CutPrefix(env, prefix)
		if !ok {
			continue
		}
		entry, field, ok := strings.Cut(rest, "_")
		if !ok || !mapEntryName.MatchString(entry) {
			continue
		}
		for _, k := range leafKeys(m.elem, "") {
			if strings.ToUpper(strings.ReplaceAll(k.path, ".", "_")) == field {
				return m.path + "." + strings.ToLower(entry) + "." + k.path, true
			}
		}
	}
	return "", false
}

// unknownKeys reports keys in the file that the configuration does not
// have, so a typo is an error rather than a silently ignored setting.
func unknownKeys(ps *confcheck.Problems, settings map[string]any, t reflect.Type, prefix string) {
	fields := map[string]reflect.Type{}
	var collect func(t reflect.Type)
	collect = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
			if opts == "squash" {
				collect(f.Type)
				continue
			}
			fields[name] = f.Type
		}
	}
	collect(t)
	for k, val := range settings {
		ft, ok := fields[k]
		path := confcheck.Join(prefix, k)
		if !ok {
			ps.Addf(path, "unknown key")
			continue
		}
		sub, isMap := val.(map[string]any)
		switch {
		case !isMap:
		case ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Duration(0)):
			unknownKeys(ps, sub, ft, path)
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct:
			for name, entry := range sub {
				if em, ok := entry.(map[string]any); ok {
					unknownKeys(ps, em, ft.Elem(), path+"."+name)
				}
			}
		}
	}
}

// flatten turns a struct into dotted keys and values, for viper defaults.
func flatten(v reflect.Value, prefix string) map[string]any {
	out := map[string]any{}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		fv := v.Field(i)
		if opts == "squash" {
			for k, x := range flatten(fv, prefix) {
				out[k] = x
			}
			continue
		}
		path := confcheck.Join(prefix, name)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
			for k, x := range flatten(fv, path) {
				out[k] = x
			}
			continue
		}
		if f.Type.Kind() == reflect.Map && f.Type.Elem().Kind() == reflect.Struct {
			continue // named maps have no defaults of their own
		}
		out[path] = fv.Interface()
	}
	return out
}

// commaListHook reads "a, b,c" as a list, as environment variables give them.
func commaListHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String || to.Kind() != reflect.Slice || to.Elem().Kind() != reflect.String {
		return data, nil
	}
	s := strings.TrimSpace(data.(string))
	if strings.HasPrefix(s, "[") {
		var list []string
		if err := json.Unmarshal([]byte(s), &list); err != nil {
			return nil, fmt.Errorf("not a JSON list of strings: %v", err)
		}
		return list, nil
	}
	out := []string{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out, nil
}

// jsonListHook reads a JSON value from the environment for keys that are
// lists of objects or maps (policies, tokens.static, tokens.scopes).
func jsonListHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String {
		return data, nil
	}
	structured := to.Kind() == reflect.Map || (to.Kind() == reflect.Slice && to.Elem().Kind() == reflect.Struct)
	if !structured {
		return data, nil
	}
	s := strings.TrimSpace(data.(string))
	if s == "" {
		return nil, nil
	}
	var out any
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, fmt.Errorf("must be JSON when set from the environment: %v", err)
	}
	return out, nil
}

// decodeProblems turns mapstructure's joined errors into one problem per key.
func decodeProblems(err error) confcheck.Problems {
	var ps confcheck.Problems
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var de *mapstructure.DecodeError
		if errors.As(err, &de) {
			ps.Addf(de.Name(), "%s", friendlyDecodeError(de.Unwrap()))
			return
		}
		ps.Addf("", "%v", err)
	}
	walk(err)
	return ps
}

func friendlyDecodeError(err error) string {
	var pe *mapstructure.ParseError
	if errors.As(err, &pe) {
		return fmt.Sprintf("cannot read as %s: %v", typeName(pe.Expected.Type()), pe.Err)
	}
	var ue *mapstructure.UnconvertibleTypeError
	if errors.As(err, &ue) {
		return fmt.Sprintf("expected %s", typeName(ue.Expected.Type()))
	}
	msg := err.Error()
	if strings.Contains(msg, "time: ") {
		return "not a duration (use e.g. 30s, 15m, 24h): " + strings.TrimPrefix(msg, "time: ")
	}
	return msg
}

func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		return "a duration (e.g. 30s, 24h)"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Int:
		return "a whole number"
	case t.Kind() == reflect.Slice:
		return "a list"
	}
	return t.String()
}
