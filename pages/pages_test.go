package pages

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// everyPage renders each page once through its public method.
func everyPage(r *Renderer) map[string]*httptest.ResponseRecorder {
	out := map[string]*httptest.ResponseRecorder{}
	do := func(name string, render func(w http.ResponseWriter)) {
		rec := httptest.NewRecorder()
		render(rec)
		out[name] = rec
	}
	do("sign_in", func(w http.ResponseWriter) {
		r.SignIn(w, []ProviderButton{{Name: "corp", DisplayName: "Corp SSO", StartURL: "/oauth2/start?provider=corp"}})
	})
	do("denied", func(w http.ResponseWriter) { r.Denied(w, "Not allowed.", "alice@example.com", "/oauth2/sign_in") })
	do("error", func(w http.ResponseWriter) {
		r.Error(w, http.StatusBadGateway, "Upstream unavailable", "Try again.", "")
	})
	do("signed_out", func(w http.ResponseWriter) { r.SignedOut(w, "/oauth2/sign_in") })
	do("sign_out_all", func(w http.ResponseWriter) { r.SignOutAll(w, "alice", "/oauth2/sign_out?all=true", "c", "/") })
	do("device", func(w http.ResponseWriter) { r.Device(w, http.StatusOK, DevicePage{Action: "/oauth2/device"}) })
	return out
}

func mustValidate(t *testing.T, c UIConfig) (*Renderer, []string) {
	t.Helper()
	r, warnings, ps := c.Validate()
	if len(ps) > 0 {
		t.Fatalf("problems: %v", ps)
	}
	return r, warnings
}

func TestEveryPageCarriesTheBranding(t *testing.T) {
	logo := writeTemp(t, "logo.png", pngImage(t))
	r, warnings := mustValidate(t, UIConfig{
		Title: "Acme <Ops>", LogoFile: logo,
		FooterHTML: `Run by <a href="https://wiki.acme.example/ops">Ops</a>`,
	})
	if len(warnings) > 0 {
		t.Errorf("warnings: %q", warnings)
	}
	for name, rec := range everyPage(r) {
		body := rec.Body.String()
		for _, want := range []string{
			" · Acme &lt;Ops&gt;</title>",
			`<span>Acme &lt;Ops&gt;</span>`,
			`<img src="data:image/png;base64,`,
			`alt=""`, // the title next to it says it all
			`<footer id="footer">Run by <a href="https://wiki.acme.example/ops">Ops</a></footer>`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: no %q in\n%s", name, want, body)
			}
		}
		if strings.Contains(body, "ZgotmplZ") {
			t.Errorf("%s: html/template refused a value:\n%s", name, body)
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "img-src data:") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: CSP %q", name, csp)
		}
	}
}

func TestDefaultPages(t *testing.T) {
	for name, rec := range everyPage(New()) {
		body := rec.Body.String()
		if !strings.Contains(body, " · Gatehouse</title>") || strings.Contains(body, "<img") || strings.Contains(body, "<footer") {
			t.Errorf("%s:\n%s", name, body)
		}
		if csp := rec.Header().Get("Content-Security-Policy"); strings.Contains(csp, "img-src") {
			t.Errorf("%s: CSP %q allows images without a logo", name, csp)
		}
		if !strings.Contains(body, `name="viewport"`) || !strings.Contains(body, `lang="en"`) {
			t.Errorf("%s: not readable on a phone or without a language", name)
		}
	}
	// Every form control has a label.
	rec := httptest.NewRecorder()
	New().Device(rec, http.StatusOK, DevicePage{Action: "/oauth2/device"})
	if !strings.Contains(rec.Body.String(), `<label for="user_code">`) {
		t.Errorf("the code field has no label:\n%s", rec.Body.String())
	}
}

func TestLogoURL(t *testing.T) {
	tests := []struct {
		url, src, csp string
	}{
		{"https://cdn.example.com/brand/logo.svg?v=2", `src="https://cdn.example.com/brand/logo.svg?v=2"`, "img-src https://cdn.example.com"},
		{"http://10.0.0.1:8080/logo.png", `src="http://10.0.0.1:8080/logo.png"`, "img-src http://10.0.0.1:8080"},
		{"/static/logo.png", `src="/static/logo.png"`, "img-src 'self'"},
	}
	for _, tt := range tests {
		r, _ := mustValidate(t, UIConfig{LogoURL: tt.url})
		rec := everyPage(r)["sign_in"]
		if !strings.Contains(rec.Body.String(), tt.src) {
			t.Errorf("%s: no %s in\n%s", tt.url, tt.src, rec.Body.String())
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.HasSuffix(csp, "; "+tt.csp) {
			t.Errorf("%s: CSP %q, want it to end in %q", tt.url, csp, tt.csp)
		}
	}
}

func TestUIValidateProblems(t *testing.T) {
	dir := t.TempDir()
	gif := writeTemp(t, "logo.gif", []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"))
	html := writeTemp(t, "logo.html", []byte("<html><script>alert(1)</script></html>"))
	big := writeTemp(t, "big.png", append(pngImage(t), make([]byte, MaxLogoBytes)...))
	png := writeTemp(t, "logo.png", pngImage(t))
	tests := []struct {
		name     string
		c        UIConfig
		key, msg string
	}{
		{"long title", UIConfig{Title: strings.Repeat("x", 81)}, "title", "at most 80"},
		{"title with a newline", UIConfig{Title: "a\nb"}, "title", "control characters"},
		{"javascript logo", UIConfig{LogoURL: "javascript:alert(1)"}, "logo_url", "absolute http(s) URL"},
		{"data logo URL", UIConfig{LogoURL: "data:image/svg+xml,<svg onload=alert(1)>"}, "logo_url", "absolute http(s) URL"},
		{"scheme-relative logo", UIConfig{LogoURL: "//evil.example/logo.png"}, "logo_url", "absolute http(s) URL"},
		{"logo host that would break the policy", UIConfig{LogoURL: "https://a.example;script-src*/x.png"}, "logo_url", ""},
		{"both logos", UIConfig{LogoURL: "https://cdn.example.com/x.png", LogoFile: png}, "logo_url", "not both"},
		{"missing logo file", UIConfig{LogoFile: filepath.Join(dir, "nope.png")}, "logo_file", "cannot read"},
		{"GIF logo", UIConfig{LogoFile: gif}, "logo_file", "not a PNG, JPEG or SVG image"},
		{"HTML logo", UIConfig{LogoFile: html}, "logo_file", "not a PNG, JPEG or SVG image"},
		{"logo over 256 KiB", UIConfig{LogoFile: big}, "logo_file", "larger than 256 KiB"},
		{"long footer", UIConfig{FooterHTML: strings.Repeat("x", 8<<10+1)}, "footer_html", "at most"},
		{"missing templates directory", UIConfig{CustomTemplatesDir: filepath.Join(dir, "nope")}, "custom_templates_dir", "cannot read the directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, ps := tt.c.Validate()
			if r != nil || len(ps) != 1 || ps[0].Key != tt.key || !strings.Contains(ps[0].Message, tt.msg) {
				t.Fatalf("problems = %+v, want one for %s saying %q", ps, tt.key, tt.msg)
			}
		})
	}
}

func TestLogoFileTypes(t *testing.T) {
	var jpg bytes.Buffer
	if err := jpeg.Encode(&jpg, image.NewRGBA(image.Rect(0, 0, 2, 2)), nil); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]struct {
		content []byte
		mime    string
	}{
		"logo.png": {pngImage(t), "image/png"},
		"logo.jpg": {jpg.Bytes(), "image/jpeg"},
		"logo.svg": {[]byte(`<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>`), "image/svg+xml"},
		// The type is read from the content, not the name.
		"logo": {pngImage(t), "image/png"},
	} {
		r, _ := mustValidate(t, UIConfig{LogoFile: writeTemp(t, file, want.content)})
		if !strings.HasPrefix(string(r.brand.Logo), "data:"+want.mime+";base64,") {
			t.Errorf("%s: logo %.40q, want a %s data URI", file, r.brand.Logo, want.mime)
		}
	}
}

func TestFooterMarkupThatIsNotAllowedWarns(t *testing.T) {
	r, warnings := mustValidate(t, UIConfig{FooterHTML: `<script>alert(1)</script><a href="javascript:x" onclick="y">z</a>`})
	if len(warnings) != 1 || !strings.Contains(warnings[0], "ui.footer_html") {
		t.Fatalf("warnings = %q", warnings)
	}
	body := everyPage(r)["signed_out"].Body.String()
	if !strings.Contains(body, `<footer id="footer">&lt;script&gt;alert(1)&lt;/script&gt;<a>z</a></footer>`) {
		t.Errorf("footer:\n%s", body)
	}
}

func TestCustomTemplates(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("sign_in.html", `{{define "content"}}<h1>Welcome to {{.UI.Title}}</h1>{{range .Providers}}<a id="go-{{.Name}}" href="{{.StartURL}}">{{.DisplayName}}</a>{{end}}{{end}}`)
	write("README.md", "not a template")
	write("..data", "Kubernetes' ConfigMap bookkeeping")
	c := UIConfig{Title: "Acme", CustomTemplatesDir: dir}
	r, _ := mustValidate(t, c)
	pages := everyPage(r)
	if body := pages["sign_in"].Body.String(); !strings.Contains(body, "<h1>Welcome to Acme</h1>") ||
		!strings.Contains(body, `<a id="go-corp" href="/oauth2/start?provider=corp">Corp SSO</a>`) ||
		!strings.Contains(body, "<title>Sign in · Acme</title>") {
		t.Errorf("the override is not used inside the layout:\n%s", body)
	}
	if body := pages["denied"].Body.String(); !strings.Contains(body, `id="denied"`) {
		t.Errorf("a page without an override changed:\n%s", body)
	}
	if got := c.TemplateFiles(); len(got) != 1 || got[0] != filepath.Join(dir, "sign_in.html") {
		t.Errorf("TemplateFiles = %q", got)
	}

	// The layout is shared: overriding it changes every page, and a page
	// file may replace the whole page by defining layout itself.
	write("layout.html", `{{define "layout"}}<!doctype html><title>{{.Title}}</title><main class="acme">{{template "content" .}}</main>{{end}}`)
	write("signed_out.html", `{{define "layout"}}<!doctype html><p>Bye from {{.UI.Title}}. <a href="{{.SignInURL}}">Back</a>{{end}}`)
	r, _ = mustValidate(t, c)
	pages = everyPage(r)
	for name, rec := range pages {
		body := rec.Body.String()
		switch {
		case name == "signed_out":
			if body != `<!doctype html><p>Bye from Acme. <a href="/oauth2/sign_in">Back</a>` {
				t.Errorf("signed_out = %q", body)
			}
		case !strings.Contains(body, `<main class="acme">`):
			t.Errorf("%s does not use the custom layout:\n%s", name, body)
		}
	}
}

func TestBrokenCustomTemplatesAreProblems(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string // message prefixes, in order
	}{
		{"syntax error", map[string]string{"sign_in.html": `{{define "content"}}{{if .Providers}}{{end}`},
			[]string{"sign_in.html: template: sign_in.html:1:"}},
		{"unknown function", map[string]string{"denied.html": `{{define "content"}}{{shout .Message}}{{end}}`},
			[]string{`denied.html: template: denied.html:1: function "shout" not defined`}},
		{"misspelt field", map[string]string{"error.html": `{{define "content"}}{{.Mesage}}{{end}}`},
			[]string{`error.html: template: error.html:1:`}},
		{"field of the wrong page", map[string]string{"device.html": `{{define "content"}}{{if .Request}}{{.Request.Clinet}}{{end}}{{end}}`},
			[]string{`device.html: template: device.html:1:`}},
		{"layout that calls a missing template once for all pages", map[string]string{"layout.html": `{{define "layout"}}{{template "body" .}}{{end}}`},
			[]string{`layout.html: html/template:layout.html:1:`}},
		{"misspelt file name", map[string]string{"signin.html": `{{define "content"}}x{{end}}`},
			[]string{"signin.html: no embedded template has this name; the names are layout.html, sign_in.html"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			r, _, ps := UIConfig{CustomTemplatesDir: dir}.Validate()
			if r != nil || len(ps) != len(tt.want) {
				t.Fatalf("problems = %+v, want %d", ps, len(tt.want))
			}
			for i, p := range ps {
				if p.Key != "custom_templates_dir" || !strings.HasPrefix(p.Message, tt.want[i]) {
					t.Errorf("problem %d = %s: %s, want custom_templates_dir: %s…", i, p.Key, p.Message, tt.want[i])
				}
			}
		})
	}
}

// TestCustomTemplateFailingAtRuntimeFallsBack: a branch the sample renders
// never take can still fail; people then get the embedded page, not a 500.
func TestCustomTemplateFailingAtRuntimeFallsBack(t *testing.T) {
	dir := t.TempDir()
	tmpl := `{{define "content"}}{{if gt (len .Providers) 2}}{{.Nope}}{{end}}<p id="custom">custom</p>{{end}}`
	if err := os.WriteFile(filepath.Join(dir, "sign_in.html"), []byte(tmpl), 0o600); err != nil {
		t.Fatal(err)
	}
	r, _ := mustValidate(t, UIConfig{CustomTemplatesDir: dir})
	rec := httptest.NewRecorder()
	r.SignIn(rec, []ProviderButton{{Name: "a"}, {Name: "b"}, {Name: "c"}})
	if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), `id="custom"`) || !strings.Contains(rec.Body.String(), `id="provider-c"`) {
		t.Fatalf("%d:\n%s", rec.Code, rec.Body.String())
	}
}

func pngImage(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 2, 2))
	img.Set(0, 0, color.RGBA{R: 0x24, G: 0x58, B: 0xd3, A: 0xff})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func writeTemp(t *testing.T, name string, content []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}
