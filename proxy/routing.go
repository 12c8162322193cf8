package proxy

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse/gatehouse/authn"
	"github.com/gatehouse/gatehouse/internal/hostname"
	"github.com/gatehouse/gatehouse/pages"
)

// buildRoutes makes each route's reverse proxy, with the route's identity
// headers (or the global ones).
func (h *Handler) buildRoutes() {
	o := h.o
	h.publicHost = hostname.Canonical(o.PublicURL.Host)
	h.authBase = strings.TrimSuffix(o.PublicURL.String(), "/")
	// Every identity header name any route sets is removed from every
	// request, whichever route it goes to.
	var all []string
	for _, rt := range o.RouteTable.Routes() {
		if c := rt.headers; c != nil {
			all = append(all, c.User, c.Email, c.Groups, c.PreferredUsername)
		}
	}
	all = append(all, o.Headers.User, o.Headers.Email, o.Headers.Groups, o.Headers.PreferredUsername)
	h.headers = newIdentityHeaders(o.Headers, all...)
	h.routeForward = make([]http.Handler, len(o.RouteTable.Routes()))
	for _, rt := range o.RouteTable.Routes() {
		headers := h.headers
		if c := rt.headers; c != nil {
			headers = newIdentityHeaders(HeadersConfig{
				User: c.User, Email: c.Email, Groups: c.Groups, PreferredUsername: c.PreferredUsername,
				PassAccessToken: c.PassAccessToken, Assertion: o.Headers.Assertion,
			}, all...)
		}
		up := newUpstream(rt.target, rt.upstream, headers, h.trusted, o.Cookie, o.Pages, o.Logger, o.Metrics)
		if rt.strip {
			up.strip = rt.prefix
		}
		h.routeForward[rt.index] = up
	}
}

// noRoute answers a request no route takes: 404, and never an upstream
// (the first route would otherwise serve hosts nobody configured).
// (Counted as requests of handler no_route, not as a denial: nobody was
// asked who they are.)
func (h *Handler) noRoute(w http.ResponseWriter, r *http.Request) {
	if pages.WantsJSON(r) {
		pages.JSONError(w, http.StatusNotFound, "not_found", "no route for this host and path")
		return
	}
	h.o.Pages.Error(w, http.StatusNotFound, "Not found", "There is no service at this address.", "")
}

// refuseAmbiguousRoute answers a request whose path readings (decoded,
// without ";" parameters, with slashes merged) choose different routes:
// 400, and never an upstream.
func (h *Handler) refuseAmbiguousRoute(w http.ResponseWriter, r *http.Request) {
	const reason = "the path reaches different routes depending on how ';' parameters or repeated slashes are read"
	if pages.WantsJSON(r) {
		pages.JSONError(w, http.StatusBadRequest, "invalid_request", reason)
		return
	}
	h.o.Pages.Error(w, http.StatusBadRequest, "Bad request",
		"This address cannot be served: "+reason+". Servers could read it in different ways, so Gatehouse refuses it.", "")
}

// personalOnAuthHostOnly keeps the pages where a signed-in person acts
// with their session (approving a device code, listing and ending
// sessions) on the auth host. On a route host they would answer in the
// upstream's origin, where the upstream's own scripts could approve a
// device code as the person or end their sessions. A GET there is sent to
// the same page on the auth host; anything else gets 404. It reports
// whether it answered.
func (h *Handler) personalOnAuthHostOnly(w http.ResponseWriter, r *http.Request, clean string) bool {
	if h.o.RouteTable == nil || h.onAuthHost(r) || (clean != h.prefix+"/device" && clean != h.prefix+"/sessions") {
		return false
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		loc := h.authBase + clean
		if r.URL.RawQuery != "" {
			loc += "?" + r.URL.RawQuery
		}
		pages.NoStore(w.Header())
		http.Redirect(w, r, loc, http.StatusFound)
		return true
	}
	h.o.Logger.Info("refused on a route host", "event", "route_host_endpoint", "path", clean, "host", r.Host)
	if pages.WantsJSON(r) {
		pages.JSONError(w, http.StatusNotFound, "not_found", "this endpoint is served on "+h.o.PublicURL.Host+" only")
		return true
	}
	h.o.Pages.Error(w, http.StatusNotFound, "Not found", "This page is served on "+h.o.PublicURL.Host+" only.", "")
	return true
}

// onAuthHost reports whether r came to public_url's host (any port: a
// cookie does not tell ports apart either).
func (h *Handler) onAuthHost(r *http.Request) bool {
	return hostname.Canonical(r.Host) == h.publicHost
}

// origin is scheme://host of r as the browser addressed it.
func (h *Handler) origin(r *http.Request) string {
	return h.trusted.scheme(r) + "://" + r.Host
}

// startURL is where a browser without a session on a route host signs
// in: /start on the auth host, with rd the URL it asked for. With hand-off
// the browser is first bound (a cookie on this host), so that the code
// coming back can only be used by this browser.
func (h *Handler) startURL(w http.ResponseWriter, r *http.Request) string {
	u := h.authBase + h.prefix + "/start?rd=" + url.QueryEscape(h.origin(r)+r.URL.RequestURI())
	if h.o.Handoff != nil {
		b, err := h.o.Handoff.Bind(w)
		if err != nil {
			// Without a binding the auth host sends the browser back
			// unchanged; it will be bound next time.
			h.o.Logger.Error("binding a browser for the hand-off", "err", err)
		} else {
			u += "&binding=" + url.QueryEscape(b)
		}
	}
	return u
}

// toAuthHost sends sign_in and start on a route host to the auth host,
// where sign-in happens (state cookies, callbacks and the session the
// hand-off starts from live there), with rd made absolute on this host so
// the browser comes back. It reports whether it answered.
func (h *Handler) toAuthHost(w http.ResponseWriter, r *http.Request, clean string) bool {
	if h.o.RouteTable == nil || h.onAuthHost(r) || (clean != h.prefix+"/sign_in" && clean != h.prefix+"/start") {
		return false
	}
	q := r.URL.Query()
	rd := q.Get("rd")
	if rd == "" || strings.HasPrefix(rd, "/") {
		// A path is on this host; the auth host checks the result like
		// any rd, and an unsafe path becomes "/". So does one of our own
		// endpoints (the denied page's "sign in as someone else" comes
		// back through sign_in): after sign-in, the site itself.
		p := authn.SafeRedirect(rd, nil)
		if path, _, _ := strings.Cut(p, "?"); path == h.prefix || strings.HasPrefix(path, h.prefix+"/") {
			p = "/"
		}
		rd = h.origin(r) + p
	}
	q.Set("rd", rd)
	pages.NoStore(w.Header())
	http.Redirect(w, r, h.authBase+clean+"?"+q.Encode(), http.StatusFound)
	return true
}
