package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// trustedProxies decides whose X-Forwarded-* headers are believed.
type trustedProxies []netip.Prefix

// peer is the address of the TCP peer.
func peer(r *http.Request) netip.Addr {
	a, _ := peerText(r)
	return a
}

// peerText is peer, and its text when that is exactly a.String() without
// formatting it again (an IPv4 address: netip parses only its canonical
// dotted form), else "".
func peerText(r *http.Request) (netip.Addr, string) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, ""
	}
	if a.Is4() {
		return a, host
	}
	return a.Unmap(), ""
}

func (t trustedProxies) contains(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// trusts reports whether the request came straight from a trusted proxy.
func (t trustedProxies) trusts(r *http.Request) bool { return t.contains(peer(r)) }

// ClientIP is the address of the client: the peer, or, when the peer is a
// trusted proxy, the right-most X-Forwarded-For entry that is not.
func (t trustedProxies) clientIP(r *http.Request) string {
	p, text := peerText(r)
	if !t.contains(p) {
		if text != "" {
			return text // no allocation: it runs twice per request
		}
		return p.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		if a = a.Unmap(); !t.contains(a) {
			return a.String()
		}
	}
	return p.String()
}

// scheme is the scheme the client used.
func (t trustedProxies) scheme(r *http.Request) string {
	if t.trusts(r) {
		if p := strings.ToLower(r.Header.Get("X-Forwarded-Proto")); p == "http" || p == "https" {
			return p
		}
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// ClientIP returns a function giving a request's client address: the peer,
// or behind trusted proxies the right-most untrusted X-Forwarded-For hop.
// Rate limits use it, so clients behind a load balancer are told apart.
func ClientIP(trusted []netip.Prefix) func(*http.Request) string {
	return trustedProxies(trusted).clientIP
}
