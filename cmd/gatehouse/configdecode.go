package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"

	"github.com/gatehouse/gatehouse/internal/confcheck"
)

// give them: see splitList.
func commaListHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String || to.Kind() != reflect.Slice || to.Elem().Kind() != reflect.String {
		return data, nil
	}
	return splitList(data.(string))
}

// splitList reads "a, b,c" as a list. A value that starts with '[' and
// parses as a JSON array of strings is that array. Otherwise it is split
// on commas, but never on one inside (), {} or [] or after a backslash:
// "^/v{1,2}/health$" is one regex, not the routes "^/v{1" and
// "2}/health$".
func splitList(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") {
		var list []string
		err := json.Unmarshal([]byte(s), &list)
		if err == nil {
			return list, nil
		}
		if rest := strings.TrimSpace(s[1:]); rest == "" || rest[0] == '"' || rest[0] == ']' {
			return nil, fmt.Errorf("not a JSON list of strings: %v", err)
		}
		// Not JSON: a regex such as "[a-z]+/x" that begins with a class.
	}
	out := []string{}
	for _, part := range splitTopLevel(s) {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out, nil
}

// splitTopLevel splits s on the commas outside brackets. Inside a regex
// character class ("[,]", "[^]{]") every character is literal; a
// backslash escapes the character after it.
func splitTopLevel(s string) []string {
	var parts []string
	depth, start, inClass := 0, 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			i++
		case inClass:
			inClass = c != ']'
		case c == '[':
			inClass = true
			// A ']' first in the class ("[]]", "[^]]") is a literal.
			if i+1 < len(s) && s[i+1] == '^' {
				i++
			}
			if i+1 < len(s) && s[i+1] == ']' {
				i++
			}
		case c == '(' || c == '{':
			depth++
		case (c == ')' || c == '}') && depth > 0:
			depth--
		case c == ',' && depth == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// jsonListHook reads a JSON value from the environment for keys that are
// lists of objects or maps (policies, tokens.static, tokens.scopes).
func jsonListHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String {
		return data, nil
	}
	if !structuredType(to) {
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
