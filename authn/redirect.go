package authn

import (
	"net/url"
	"strings"
)

// maxRedirectLen bounds rd; longer values are not URLs a person follows.
const maxRedirectLen = 4096

// SafeRedirect returns rd when it is a path on this host or an absolute
// URL on public's host, and "/" otherwise. It is the one place that
// decides where Gatehouse may send a browser after sign-in or sign-out, so
// that rd can never make Gatehouse an open redirector.
func SafeRedirect(rd string, public *url.URL) string {
	return SafeRedirectTo(rd, public, nil)
}

// SafeRedirectTo is SafeRedirect that also accepts an absolute URL on a
// host for which routeHost reports true, with any port: the hosts routes
// answer, which sign-in sends browsers back to. Such a URL must be https,
// or http when public_url is http too, so that a link cannot downgrade the
// way back (and a hand-off code on it) to plain http.
func SafeRedirectTo(rd string, public *url.URL, routeHost func(host string) bool) string {
	if rd == "" || len(rd) > maxRedirectLen {
		return "/"
	}
	// Browsers treat '\' as '/' and ignore tabs and newlines inside URLs,
	// so "/\evil.com" or "/\t/evil.com" would leave the host.
	for _, c := range rd {
		if c == '\\' || c < 0x20 || c == 0x7f {
			return "/"
		}
	}
	if strings.HasPrefix(rd, "/") {
		if strings.HasPrefix(rd, "//") {
			return "/"
		}
		u, err := url.Parse(rd)
		if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
			return "/"
		}
		return rd
	}
	u, err := url.Parse(rd)
	if err != nil || u.User != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return "/"
	}
	if !asciiHost(u.Host) {
		// Unicode case folding would take "\u212A" (Kelvin) for "k" and
		// "\u0130" for "i": such a name is another domain to a browser.
		return "/"
	}
	if public != nil && strings.EqualFold(u.Host, public.Host) && u.Scheme == public.Scheme {
		return u.String()
	}
	downgrade := u.Scheme == "http" && (public == nil || public.Scheme != "http")
	if routeHost != nil && u.Host != "" && !downgrade && routeHost(u.Host) {
		return u.String()
	}
	return "/"
}

// asciiHost reports whether host is ASCII only (as strings.EqualFold then
// compares it: ASCII letters alone fold).
func asciiHost(host string) bool {
	for i := 0; i < len(host); i++ {
		if host[i] >= 0x80 {
			return false
		}
	}
	return true
}
