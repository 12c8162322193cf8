// Package pages renders Gatehouse's own HTML pages (sign-in, denied,
// error, signed-out, sign out everywhere, device) and JSON errors. The
// templates are embedded, small, and use no external assets, so they work
// offline and under a strict CSP. The ui section (UIConfig) brands them
// and may replace any template with a file of its own.
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

// pageNames are the pages, each rendered inside layout.html. A file of the
// same name (sign_in.html, layout.html, ...) in ui.custom_templates_dir
// replaces the embedded one.
var pageNames = []string{"sign_in", "denied", "error", "signed_out", "sign_out_all", "device", "sessions"}

// baseCSP is every page's Content-Security-Policy: no script, no external
// anything; img-src is added for a configured logo.
const baseCSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Renderer renders the pages. Build it once with New, or from the ui
// section with UIConfig.Validate.
type Renderer struct {
	builtin map[string]*template.Template
	custom  map[string]*template.Template // pages that use an override file
	brand   Brand
	csp     string
}

// Brand is what every page shows of the ui section; templates read it as
// .UI (.UI.Title, .UI.Logo, .UI.Footer).
type Brand struct {
	Title  string
	Logo   template.URL  // a checked http(s) URL, path or data: URI; "" for none
	Footer template.HTML // sanitized by SanitizeFooter
}

// New builds a renderer with the embedded templates and no branding.
func New() *Renderer {
	r, err := newRenderer(Brand{Title: DefaultTitle}, "", nil)
	if err != nil {
		panic(err) // the embedded templates are tested
	}
	return r
}

// newRenderer parses the embedded templates and, for the pages that
// overrides (file name -> content) touch, the custom sets.
func newRenderer(b Brand, imgSrc string, overrides map[string]string) (*Renderer, error) {
	r := &Renderer{builtin: map[string]*template.Template{}, custom: map[string]*template.Template{}, brand: b, csp: baseCSP}
	if imgSrc != "" {
		r.csp += "; img-src " + imgSrc
	}
	for _, name := range pageNames {
		t, err := parsePage(name, embedded, nil)
		if err != nil {
			return nil, err
		}
		r.builtin[name] = t
		if overrides[layoutFile] == "" && overrides[name+".html"] == "" {
			continue
		}
		if r.custom[name], err = parsePage(name, embedded, overrides); err != nil {
			return nil, err
		}
	}
	return r, nil
}

const layoutFile = "layout.html"

// embedded reads an embedded template file.
func embedded(file string) (string, error) {
	b, err := files.ReadFile("templates/" + file)
	return string(b), err
}

// parsePage parses layout.html and the page's file, each from overrides
// when it holds that file. A page file may also define "layout" to replace
// the whole page. A key missing from a page's data is an error, so that
// a misspelt field in an override fails at check, not as an empty page.
func parsePage(name string, builtin func(string) (string, error), overrides map[string]string) (*template.Template, error) {
	t := template.New(name).Option("missingkey=error")
	for _, file := range []string{layoutFile, name + ".html"} {
		src, ok := overrides[file]
		if !ok {
			var err error
			if src, err = builtin(file); err != nil {
				return nil, err
			}
		}
		if _, err := t.New(file).Parse(src); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// ProviderButton is one button on the sign-in page.
type ProviderButton struct {
	Name, DisplayName, StartURL string
}

// The page data, one function per page, shared by the handlers and by
// the sample renders that check custom templates.

func signInData(providers []ProviderButton) map[string]any {
	return map[string]any{"Title": "Sign in", "Providers": providers}
}

func deniedData(message, who, signOutURL string) map[string]any {
	return map[string]any{"Title": "Access denied", "Message": message, "Who": who, "SignOutURL": signOutURL}
}

func errorData(title, message, retryURL string) map[string]any {
	return map[string]any{"Title": title, "Message": message, "RetryURL": retryURL, "RequestID": ""}
}

func signedOutData(signInURL string) map[string]any {
	return map[string]any{"Title": "Signed out", "SignInURL": signInURL}
}

func signOutAllData(who, action, csrf, cancel string) map[string]any {
	return map[string]any{"Title": "Sign out everywhere", "Who": who, "Action": action, "CSRF": csrf, "Cancel": cancel}
}

func deviceData(p DevicePage) map[string]any {
	return map[string]any{
		"Title": "Connect a device", "Action": p.Action, "Error": p.Error, "Request": p.Request,
		"Who": p.Who, "CSRF": p.CSRF, "Done": p.Done,
	}
}

// SignIn renders the sign-in page.
func (r *Renderer) SignIn(w http.ResponseWriter, providers []ProviderButton) {
	r.render(w, http.StatusOK, "sign_in", signInData(providers))
}

// Denied renders the 403 page for a signed-in user who may not pass.
func (r *Renderer) Denied(w http.ResponseWriter, message, who, signOutURL string) {
	r.render(w, http.StatusForbidden, "denied", deniedData(message, who, signOutURL))
}

// Error renders an error page. message must be safe to show: never an
// internal error's text.
func (r *Renderer) Error(w http.ResponseWriter, status int, title, message, retryURL string) {
	r.render(w, status, "error", errorData(title, message, retryURL))
}

// SignedOut renders the page shown after sign-out.
func (r *Renderer) SignedOut(w http.ResponseWriter, signInURL string) {
	r.render(w, http.StatusOK, "signed_out", signedOutData(signInURL))
}

// SignOutAll renders the page that asks before signing out everywhere:
// its button POSTs action with the CSRF token; cancel leads back.
func (r *Renderer) SignOutAll(w http.ResponseWriter, who, action, csrf, cancel string) {
	r.render(w, http.StatusOK, "sign_out_all", signOutAllData(who, action, csrf, cancel))
}

// render writes a page. A custom template that fails here (a branch the
// sample renders at check did not reach) is logged and the embedded page
// is shown instead: a typo in an override must not lock people out.
func (r *Renderer) render(w http.ResponseWriter, status int, name string, data map[string]any) {
	data["UI"] = r.brand
	var buf bytes.Buffer
	if t, ok := r.custom[name]; ok {
		err := t.ExecuteTemplate(&buf, "layout", data)
		if err == nil {
			r.write(w, status, buf.Bytes())
			return
		}
		slog.Error("rendering a custom page template; showing the built-in page", "page", name, "err", err)
		buf.Reset()
	}
	if err := r.builtin[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		slog.Error("rendering page", "page", name, "err", err)
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	r.write(w, status, buf.Bytes())
}

func (r *Renderer) write(w http.ResponseWriter, status int, page []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", r.csp)
	NoStore(h)
	w.WriteHeader(status)
	_, _ = w.Write(page)
}

// SessionRow is one line of the sessions page, already formatted.
type SessionRow struct {
	ID, Kind, Provider, ClientID, Scopes string
	Created, LastSeen, Where             string
	Current                              bool
}

// SessionsPage is what the sessions page shows: the signed-in person's
// sessions and tokens, each with a form that ends it (POST action with
// the CSRF token), and one that ends them all.
type SessionsPage struct {
	Who, Action, CSRF, Notice string
	Sessions                  []SessionRow
}

// Sessions renders the sessions page.
func (r *Renderer) Sessions(w http.ResponseWriter, p SessionsPage) {
	r.render(w, http.StatusOK, "sessions", sessionsData(p))
}

func sessionsData(p SessionsPage) map[string]any {
	return map[string]any{"Title": "Your sessions", "Who": p.Who, "Action": p.Action, "CSRF": p.CSRF,
		"Notice": p.Notice, "Sessions": p.Sessions}
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
	r.render(w, status, "device", deviceData(p))
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
