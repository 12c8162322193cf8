// Package hostname brings host names to the one form every host decision
// compares: route matching, the hosts a redirect may name, and the host a
// hand-off code is bound to. Comparing them in different forms would let
// "Grafana.Example.com." and "grafana.example.com" be two hosts to one
// check and one host to another.
package hostname

import (
	"net"
	"strings"

	"github.com/gatehouse/gatehouse/identity"
)

// Canonical returns the host name of a Host header or URL host: without
// its port, in lower case, and without one trailing dot (DNS reads
// "example.com." as "example.com"). IPv6 literals lose their brackets.
//
// A host with any byte outside ASCII is no host at all: Canonical returns
// "", which names nothing. Unicode case folding would otherwise read
// "\u0130" (capital I with a dot) as "i" and the Kelvin sign as "k", so
// that a name browsers resolve to a different (punycode) domain compared
// equal to a route host. Only ASCII letters are lowered.
func Canonical(hostport string) string {
	for i := 0; i < len(hostport); i++ {
		if hostport[i] >= 0x80 {
			return ""
		}
	}
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	h = strings.TrimSuffix(h, ".")
	return identity.LowerASCII(h)
}

// Matches reports whether the canonical host name host is pattern: a
// canonical name, or "*." followed by one, which stands for exactly one
// more label ("*.example.com" matches "a.example.com", neither
// "example.com" nor "a.b.example.com").
func Matches(pattern, host string) bool {
	if parent, ok := strings.CutPrefix(pattern, "*."); ok {
		label, rest, found := strings.Cut(host, ".")
		return found && label != "" && rest == parent
	}
	return pattern == host
}
