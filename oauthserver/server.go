// Package oauthserver is Gatehouse as an authorization server for machines:
// the OAuth device flow (RFC 8628) with its approval page, the token and
// revocation (RFC 7009) endpoints, RFC 8414 metadata, and OpenID Connect
// Back-Channel Logout. Proving who a person is stays in package authn;
// bearer JWTs from trusted workload issuers are verified by the
// subpackage workload.
package oauthserver

import (
	"net/http"
	"strings"
)

// Server mounts the machine-facing endpoints.
type Server struct {
	device *Device // nil: device flow off
	revoke http.HandlerFunc
	logout map[string]http.Handler // back-channel logout by provider name
}

// Config gathers what Server serves; every part may be nil.
type Config struct {
	Device *Device                 // the device flow; nil: off
	Revoke http.HandlerFunc        // RFC 7009 revocation (see Revoke); nil: off
	Logout map[string]http.Handler // back-channel logout receivers by OIDC provider name
}

// New returns the endpoints of c.
func New(c Config) *Server {
	return &Server{device: c.Device, revoke: c.Revoke, logout: c.Logout}
}

// Register mounts the endpoints under prefix (server.path_prefix) on mux.
func (s *Server) Register(mux *http.ServeMux, prefix string) {
	if s.revoke != nil {
		mux.HandleFunc("POST "+prefix+"/revoke", s.revoke)
	}
	if d := s.device; d != nil {
		mux.HandleFunc("POST "+prefix+"/device/code", d.Code)
		mux.HandleFunc("GET "+prefix+"/device", d.Page)
		mux.HandleFunc("POST "+prefix+"/device", d.Page)
		mux.HandleFunc("POST "+prefix+"/token", d.Token)
	} else {
		mux.HandleFunc("POST "+prefix+"/device/code", DeviceFlowDisabled)
		mux.HandleFunc("POST "+prefix+"/token", DeviceFlowDisabled)
	}
	for name, h := range s.logout {
		mux.Handle("POST "+prefix+"/backchannel_logout/"+name, h)
	}
}

// HasMetadata reports whether there is anything for RFC 8414 metadata to
// describe (the device flow).
func (s *Server) HasMetadata() bool { return s != nil && s.device != nil }

// Metadata serves RFC 8414 authorization server metadata at
// /.well-known/oauth-authorization-server (outside the path prefix).
func (s *Server) Metadata(w http.ResponseWriter, r *http.Request) { s.device.Metadata(w, r) }

// DeviceFlowDisabled answers the device flow's endpoints when it is off,
// in the protocol's own terms rather than with a page.
func DeviceFlowDisabled(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/token") {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "the device flow is not enabled on this server")
		return
	}
	oauthError(w, http.StatusBadRequest, "unauthorized_client", "the device flow is not enabled on this server")
}
