package oauthserver

import "net/http"

// Metadata serves RFC 8414 authorization server metadata, so clients can
// discover the device flow's endpoints.
func (d *Device) Metadata(w http.ResponseWriter, r *http.Request) {
	base := d.public
	writeOAuthJSON(w, http.StatusOK, map[string]any{
		"issuer":                                     base,
		"device_authorization_endpoint":              base + d.prefix + "/device/code",
		"token_endpoint":                             base + d.prefix + "/token",
		"revocation_endpoint":                        base + d.prefix + "/revoke",
		"grant_types_supported":                      []string{DeviceGrantType},
		"token_endpoint_auth_methods_supported":      []string{"none"},
		"revocation_endpoint_auth_methods_supported": []string{"none"},
		"scopes_supported":                           d.tokens.Scopes().Names(),
		"response_types_supported":                   []string{},
	})
}
