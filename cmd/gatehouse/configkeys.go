package main

import (
	"encoding/json"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/viper"

	"github.com/gatehouse/gatehouse/internal/confcheck"
)

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
		case structuredType(f.Type):
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
	return unknownEnvWarnings(unknown, byEnv, maps)
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

// unknownKeys reports keys the configuration does not have, at any depth:
// in sections, in named maps (auth.oidc.NAME), in lists of objects
// (policies[i], tokens.static[i]) and in maps of lists
// (tokens.scopes.NAME[i]). A typo is then an error rather than a silently
// ignored setting: a dropped "expire_at" makes a token live for ever. A
// list of objects or a map set from the environment arrives as JSON text
// and is read the same way.
func unknownKeys(ps *confcheck.Problems, val any, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if s, ok := val.(string); ok && structuredType(t) {
		var parsed any
		if json.Unmarshal([]byte(strings.TrimSpace(s)), &parsed) != nil {
			return // not JSON: the decoder reports that
		}
		val = parsed
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := val.(map[string]any)
		if !ok || t == reflect.TypeOf(time.Time{}) {
			return
		}
		fields := structFields(t)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			path := confcheck.Join(path, k)
			ft, ok := fields[strings.ToLower(k)]
			if !ok {
				ps.Addf(path, "unknown key")
				continue
			}
			unknownKeys(ps, m[k], ft, path)
		}
	case reflect.Map:
		m, ok := val.(map[string]any)
		if !ok {
			return
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			unknownKeys(ps, m[k], t.Elem(), confcheck.Join(path, k))
		}
	case reflect.Slice:
		list, ok := val.([]any)
		if !ok {
			return
		}
		for i, e := range list {
			unknownKeys(ps, e, t.Elem(), path+"["+strconv.Itoa(i)+"]")
		}
	}
}

// structuredType says whether a key of type t is set from the environment
// as JSON: a map, or a list of objects.
func structuredType(t reflect.Type) bool {
	return t.Kind() == reflect.Map || (t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct)
}

// structFields maps a struct's keys (lower case, as viper and mapstructure
// compare them) to their types, with squashed structs' keys inlined.
func structFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if opts == "squash" {
			for k, ft := range structFields(f.Type) {
				fields[k] = ft
			}
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		fields[strings.ToLower(name)] = f.Type
	}
	return fields
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

// commaListHook reads a list given as one string, as environment variables
