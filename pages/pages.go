// Package pages renders Gatehouse's own HTML pages (sign-in, denied,
// error, signed-out, sign out everywhere, device) and JSON errors. The
// templates are embedded, small, and use no external assets, so they work
// offline and under a strict CSP.
package pages

import (
	"bytes"
	"embed"
	"encoding/json"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
)

//go:embed templates/*.html
var files embed.FS

// Renderer renders the pages. Build it once with New.
type Renderer struct {
	pages map[string]*template.Template
}

// New parses the embedded templates.
func New() *Renderer {
	r := &Renderer{pages: map[string]*template.Template{}}
	for _, name := range []string{"sign_in", "denied", "error", "signed_out", "sign_out_all", "device"} {
		r.pages[name] = template.Must(template.ParseFS(files, "templates/layout.html", "templates/"+name+".html"))
	}
	return r
}

// ProviderButton is one button on the sign-in page.
type ProviderButton struct {
	Name, DisplayName, StartURL string
}

// SignIn renders the sign-in page.
func (r *Renderer) SignIn(w http.ResponseWriter, providers []ProviderButton) {
	r.render(w, http.StatusOK, "sign_in", map[string]any{"Title": "Sign in", "Providers": providers})
}

// Denied renders the 403 page for a signed-in user who may not pass.
func (r *Renderer) Denied(w http.ResponseWriter, message, who, signOutURL string) {
	r.render(w, http.StatusForbidden, "denied", map[string]any{
		"Title": "Access denied", "Message": message, "Who": who, "SignOutURL": signOutURL,
	})
}

// Error renders an error page. message must be safe to show: never an
// internal error's text.
func (r *Renderer) Error(w http.ResponseWriter, status int, title, message, retryURL string) {
	r.render(w, status, "error", map[string]any{"Title": title, "Message": message, "RetryURL": retryURL})
}

// SignedOut renders the page shown after sign-out.
func (r *Renderer) SignedOut(w http.ResponseWriter, signInURL string) {
	r.render(w, http.StatusOK, "signed_out", map[string]any{"Title": "Signed out", "SignInURL": signInURL})
}

// SignOutAll renders the page that asks before signing out everywhere:
// its button POSTs action with the CSRF token; cancel leads back.
func (r *Renderer) SignOutAll(w http.ResponseWriter, who, action, csrf, cancel string) {
	r.render(w, http.StatusOK, "sign_out_all", map[string]any{
		"Title": "Sign out everywhere", "Who": who, "Action": action, "CSRF": csrf, "Cancel": cancel,
	})
}

func (r *Renderer) render(w http.ResponseWriter, status int, name string, data map[string]any) {
	var buf bytes.Buffer
	if err := r.pages[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		slog.Error("rendering page", "page", name, "err", err)
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	NoStore(h)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// DeviceRequest describes a device authorization waiting for approval.
type DeviceRequest struct {
	Client   string
	Scopes   []string
	UserCode string
}

// DevicePage is what the device page shows: a code form (with an optional
// error), a request to approve or deny, or a final message.
type DevicePage struct {
	Action  string
	Error   string
	Request *DeviceRequest
	Who     string
	CSRF    string
	Done    string
}

// Device renders the device verification page.
func (r *Renderer) Device(w http.ResponseWriter, status int, p DevicePage) {
	r.render(w, status, "device", map[string]any{
		"Title": "Connect a device", "Action": p.Action, "Error": p.Error, "Request": p.Request,
		"Who": p.Who, "CSRF": p.CSRF, "Done": p.Done,
	})
}

// JSONError writes an RFC 6749-style error body, e.g.
// {"error":"unauthorized","error_description":"..."}.
func JSONError(w http.ResponseWriter, status int, code, description string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	NoStore(h)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}

// NoStore marks a response as private to this request: never cached, never
// framed, never leaking its URL through Referer.
func NoStore(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
}

// WantsJSON reports whether a client prefers a JSON answer to an HTML page:
// it sent an Authorization header, or its Accept names JSON and not HTML.
func WantsJSON(r *http.Request) bool {
	if r.Header.Get("Authorization") != "" {
		return true
	}
	accept := strings.ToLower(r.Header.Get("Accept"))
	if strings.Contains(accept, "text/html") {
		return false
	}
	return strings.Contains(accept, "json")
}
