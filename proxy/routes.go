package proxy

import (
	"regexp"

	"github.com/gatehouse/gatehouse/canonical"
)

// Routes are the compiled skip-auth and API route lists.
type Routes struct {
	SkipAuth []routeMatcher
	API      []routeMatcher
	// Paths are the operator's choices for encoded slashes and ";".
	Paths canonical.Options
}

type routeMatcher struct {
	method string // "" for any
	path   *regexp.Regexp
}

// matchAny reports whether a route matches method and the canonical path.
func matchAny(ms []routeMatcher, method, path string) bool {
	for _, m := range ms {
		if (m.method == "" || m.method == method) && m.path.MatchString(path) {
			return true
		}
	}
	return false
}
