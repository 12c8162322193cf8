package workload

import (
	"errors"
	"unicode/utf8"
)

// Claim rules are an exact value or a glob:
//
//	*   one or more characters other than "/" and ":"
//	?   exactly one character (any)
//	\c  the character c itself (so "\*" is a literal star)
//
// The whole value must match. "*" stops at "/" and ":" because those
// separate the parts of the values people write rules for: "acme/*" must
// admit the repository acme/app but never acme/app/x, and
// "system:serviceaccount:ci:*" must not reach into another namespace.

type globOp uint8

const (
	globLit  globOp = iota // one literal rune
	globAny                // ?
	globStar               // *
)

type globTok struct {
	op globOp
	r  rune
}

// glob is a compiled claim rule.
type glob []globTok

var errTrailingEscape = errors.New(`ends with a lone "\"; write "\\" for a backslash`)

func compileGlob(pattern string) (glob, error) {
	if pattern == "" {
		return nil, errors.New("must not be empty")
	}
	if !utf8.ValidString(pattern) {
		return nil, errors.New("must be valid UTF-8")
	}
	var g glob
	rs := []rune(pattern)
	for i := 0; i < len(rs); i++ {
		switch rs[i] {
		case '*':
			g = append(g, globTok{op: globStar})
		case '?':
			g = append(g, globTok{op: globAny})
		case '\\':
			if i+1 == len(rs) {
				return nil, errTrailingEscape
			}
			i++
			g = append(g, globTok{op: globLit, r: rs[i]})
		default:
			g = append(g, globTok{op: globLit, r: rs[i]})
		}
	}
	return g, nil
}

func checkGlob(pattern string) error {
	_, err := compileGlob(pattern)
	return err
}

func globSeparator(r rune) bool { return r == '/' || r == ':' }

// match reports whether the whole of value matches. It tracks the set of
// value positions reachable after each token, so it runs in
// O(len(pattern)·len(value)) whatever the input: no backtracking blow-up
// for a hostile claim value.
func (g glob) match(value string) bool {
	v := []rune(value)
	cur := make([]bool, len(v)+1)
	next := make([]bool, len(v)+1)
	cur[0] = true
	for _, t := range g {
		clear(next)
		hit := false
		switch t.op {
		case globLit:
			for i, r := range v {
				if cur[i] && r == t.r {
					next[i+1], hit = true, true
				}
			}
		case globAny:
			for i := range v {
				if cur[i] {
					next[i+1], hit = true, true
				}
			}
		case globStar:
			// next[i+1]: the star consumed v[j..i] for some j with cur[j],
			// at least one rune and no separator.
			run := false
			for i, r := range v {
				run = (run || cur[i]) && !globSeparator(r)
				if run {
					next[i+1], hit = true, true
				}
			}
		}
		if !hit {
			return false
		}
		cur, next = next, cur
	}
	return cur[len(v)]
}
