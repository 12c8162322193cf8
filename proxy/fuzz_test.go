package proxy

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzStripCookie checks that no cookie named like Gatehouse's survives.
func FuzzStripCookie(f *testing.F) {
	for _, s := range []string{"a=1; _gatehouse=x", "_gatehouse=x;_gatehouse_state_abc=y; b=2", ";;", "_gatehouse", "__Host-_gatehouse_state_handoff=n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cookie string) {
		h := http.Header{"Cookie": {cookie}}
		stripCookie(h, "_gatehouse")
		r := &http.Request{Header: h}
		for _, c := range r.Cookies() {
			if c.Name == "_gatehouse" || strings.HasPrefix(c.Name, "_gatehouse_state_") || strings.HasPrefix(c.Name, "__Host-_gatehouse_state_") {
				t.Fatalf("cookie %q survived in %q", c.Name, h.Get("Cookie"))
			}
		}
	})
}
