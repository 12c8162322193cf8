package proxy

import (
	"net/http"
	"path"
	"regexp"
	"strings"
)

// Routes are the compiled skip-auth and API route lists.
type Routes struct {
	SkipAuth []routeMatcher
	API      []routeMatcher
}

type routeMatcher struct {
	method string // "" for any
	path   *regexp.Regexp
}

func matchAny(ms []routeMatcher, method, cleanPath string) bool {
	for _, m := range ms {
		if (m.method == "" || m.method == method) && m.path.MatchString(cleanPath) {
			return true
		}
	}
	return false
}

// CleanPath is the path every route decision is made on: the request's own
// path, percent-decoded once (so %2F is '/' and %2e%2e is ".."), with
// "..", "." and "//" resolved and the query never included. A trailing
// slash is kept, so "^/admin/" still matches "/admin/". Decisions are
// never made on X-Forwarded-Uri or the like.
func CleanPath(r *http.Request) string {
	p := r.URL.Path
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean
}
