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
	if public == nil || !strings.EqualFold(u.Host, public.Host) || u.Scheme != public.Scheme {
		return "/"
	}
	return u.String()
}
