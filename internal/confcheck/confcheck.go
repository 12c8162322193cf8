// Package confcheck is the shared vocabulary for configuration problems.
//
// Every package that owns a configuration section validates it itself and
// reports what is wrong as Problems keyed by the YAML path relative to its
// section. cmd/gatehouse prefixes the section, adds the environment variable
// name and prints one line per problem.
package confcheck

import (
	"fmt"
	"os"
	"strings"
)

// Problem is one thing wrong with the configuration.
type Problem struct {
	Key     string // YAML key path, e.g. "session.secret"
	Message string
}

// Problems collects problems for one section.
type Problems []Problem

// Addf records a problem for key.
func (ps *Problems) Addf(key, format string, args ...any) {
	*ps = append(*ps, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
}

// Nest appends the problems of a subsection, prefixing their keys.
func (ps *Problems) Nest(prefix string, sub Problems) {
	for _, p := range sub {
		*ps = append(*ps, Problem{Key: Join(prefix, p.Key), Message: p.Message})
	}
}

// Join joins key path elements with dots, skipping empty ones. A list
// index ("[2]" or "[2].path") attaches to the element before it without a
// dot: Join("policies", "[0].path") is "policies[0].path".
func Join(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		if p == "" {
			continue
		}
		if b.Len() > 0 && !strings.HasPrefix(p, "[") {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

// EnvName is the environment variable that sets key: GATEHOUSE_ and the key
// path upper-cased with dots as underscores.
func EnvName(key string) string {
	return "GATEHOUSE_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Secret resolves a secret given inline or through its *_file twin. Setting
// both is a problem, because which one wins would be a guess. The file's
// content is trimmed of surrounding whitespace (Kubernetes secrets often end
// in a newline).
func Secret(ps *Problems, key, value, file string) string {
	if file == "" {
		return value
	}
	if value != "" {
		ps.Addf(key, "set either %s or %s_file, not both", key, key)
		return value
	}
	b, err := os.ReadFile(file)
	if err != nil {
		ps.Addf(key+"_file", "cannot read secret file: %v", err)
		return ""
	}
	return strings.TrimSpace(string(b))
}
