package pages

import (
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/internal/confcheck"
)

// DefaultTitle is ui.title when none is configured.
const DefaultTitle = "Gatehouse"

// Limits of the ui section. The logo is inlined into every page as a
// data: URI, so it must stay small.
const (
	MaxLogoBytes     = 256 << 10
	maxFooterBytes   = 8 << 10
	maxTitleRunes    = 80
	maxTemplateBytes = 256 << 10
)

// UIConfig is the ui section: how Gatehouse's own pages look.
type UIConfig struct {
	Title   string `mapstructure:"title"`
	LogoURL string `mapstructure:"logo_url"`
	// LogoFile is a PNG, JPEG or SVG image of at most 256 KiB, inlined
	// into each page as a data: URI (no endpoint to route or cache).
	LogoFile string `mapstructure:"logo_file"`
	// FooterHTML is shown at the bottom of every page after
	// SanitizeFooter.
	FooterHTML string `mapstructure:"footer_html"`
	// CustomTemplatesDir holds files that replace embedded templates of
	// the same name (layout.html, sign_in.html, ...).
	CustomTemplatesDir string `mapstructure:"custom_templates_dir"`
	// SkipProviderButton sends the sign-in page straight to the one
	// provider when exactly one is configured.
	SkipProviderButton bool `mapstructure:"skip_provider_button"`
}

// Validate checks the ui section and builds the renderer from it: the
// logo is read and checked, the footer sanitized, and every custom
// template parsed and rendered with sample data, so that `gatehouse
// check` reports a broken template. Warnings name what was changed on
// the way (markup removed from the footer).
func (c UIConfig) Validate() (*Renderer, []string, confcheck.Problems) {
	var ps confcheck.Problems
	var warnings []string
	b := Brand{Title: strings.TrimSpace(c.Title)}
	switch {
	case b.Title == "":
		b.Title = DefaultTitle
	case utf8.RuneCountInString(b.Title) > maxTitleRunes:
		ps.Addf("title", "must be at most %d characters, got %d", maxTitleRunes, utf8.RuneCountInString(b.Title))
	case strings.IndexFunc(b.Title, unicode.IsControl) >= 0:
		ps.Addf("title", "must not hold control characters (tabs, newlines)")
	}
	var imgSrc string
	switch {
	case c.LogoURL != "" && c.LogoFile != "":
		ps.Addf("logo_url", "set either logo_url or logo_file, not both")
	case c.LogoURL != "":
		logo, src, err := logoFromURL(c.LogoURL)
		if err != nil {
			ps.Addf("logo_url", "%v", err)
		}
		b.Logo, imgSrc = logo, src
	case c.LogoFile != "":
		logo, err := logoFromFile(c.LogoFile)
		if err != nil {
			ps.Addf("logo_file", "%v", err)
		}
		b.Logo, imgSrc = logo, "data:"
	}
	if len(c.FooterHTML) > maxFooterBytes {
		ps.Addf("footer_html", "must be at most %d bytes, got %d", maxFooterBytes, len(c.FooterHTML))
	}
	var changed bool
	b.Footer, changed = SanitizeFooter(c.FooterHTML)
	if changed {
		warnings = append(warnings, "ui.footer_html: markup other than a, b, i, em, strong, br, span and p, attributes "+
			"other than title and href, and links other than http(s) and mailto are shown as text or removed")
	}
	var overrides map[string]string
	if c.CustomTemplatesDir != "" {
		var tps confcheck.Problems
		overrides, tps = readOverrides(c.CustomTemplatesDir)
		ps = append(ps, tps...)
	}
	// Render the overrides that parsed even when other keys have
	// problems, so that check reports every problem at once.
	r, err := newRenderer(b, imgSrc, overrides)
	if err != nil {
		// Each override parsed alone, and the embedded set is tested:
		// only a clash between two overrides gets here.
		ps.Addf("custom_templates_dir", "%v", err)
		return nil, warnings, ps
	}
	ps = append(ps, r.checkCustom(overrides)...)
	if len(ps) > 0 {
		return nil, warnings, ps
	}
	return r, warnings, nil
}

// TemplateFiles lists the override files in CustomTemplatesDir, so that
// a change to one of them reloads the configuration like a change to any
// other file it names. Unreadable entries are left to Validate.
func (c UIConfig) TemplateFiles() []string {
	if c.CustomTemplatesDir == "" {
		return nil
	}
	entries, err := os.ReadDir(c.CustomTemplatesDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if isOverrideName(e.Name()) {
			out = append(out, filepath.Join(c.CustomTemplatesDir, e.Name()))
		}
	}
	return out
}

// isOverrideName: a visible .html file. Kubernetes mounts a ConfigMap with
// hidden "..data" entries beside the files; those are not templates.
func isOverrideName(name string) bool {
	return !strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".html")
}

// templateFiles are the names an override may have.
func templateFiles() []string {
	out := []string{layoutFile}
	for _, n := range pageNames {
		out = append(out, n+".html")
	}
	return out
}

// readOverrides reads every .html file of dir; each must be named after an
// embedded template (a misspelt name would be silently ignored otherwise).
func readOverrides(dir string) (map[string]string, confcheck.Problems) {
	var ps confcheck.Problems
	entries, err := os.ReadDir(dir)
	if err != nil {
		ps.Addf("custom_templates_dir", "cannot read the directory: %v", err)
		return nil, ps
	}
	known := map[string]bool{}
	for _, n := range templateFiles() {
		known[n] = true
	}
	out := map[string]string{}
	for _, e := range entries {
		name := e.Name()
		if !isOverrideName(name) {
			continue
		}
		if !known[name] {
			ps.Addf("custom_templates_dir", "%s: no embedded template has this name; the names are %s",
				name, strings.Join(templateFiles(), ", "))
			continue
		}
		src, err := readLimited(filepath.Join(dir, name), maxTemplateBytes)
		if err != nil {
			ps.Addf("custom_templates_dir", "%s: %v", name, err)
			continue
		}
		// Parse each file alone first, so a syntax error is reported once,
		// for its file, rather than for every page that includes it.
		if _, err := template.New(name).Parse(string(src)); err != nil {
			ps.Addf("custom_templates_dir", "%s: %v", name, err)
			continue
		}
		out[name] = string(src)
	}
	return out, ps
}

// checkCustom renders every page that uses an override with each sample,
// keyed by the override file to blame: the page's own file when it has
// one, else layout.html. One mistake in layout.html is reported once.
func (r *Renderer) checkCustom(overrides map[string]string) confcheck.Problems {
	var ps confcheck.Problems
	seen := map[string]bool{}
	for _, name := range pageNames {
		t, ok := r.custom[name]
		if !ok {
			continue
		}
		file := name + ".html"
		if _, own := overrides[file]; !own {
			file = layoutFile
		}
		for _, data := range samples(name) {
			data["UI"] = r.brand
			if err := t.ExecuteTemplate(io.Discard, "layout", data); err != nil {
				msg := fmt.Sprintf("%s: %v", file, err)
				if !seen[msg] {
					seen[msg] = true
					ps.Addf("custom_templates_dir", "%s", msg)
				}
				break
			}
		}
	}
	return ps
}

// samples are data a page is rendered with at check: between them, every
// field set and every branch of the embedded templates taken.
func samples(page string) []map[string]any {
	switch page {
	case "sign_in":
		return []map[string]any{
			signInData([]ProviderButton{{Name: "corp", DisplayName: "Corp SSO", StartURL: "/oauth2/start?provider=corp&rd=%2F"}}),
			signInData(nil),
		}
	case "denied":
		return []map[string]any{
			deniedData("Your e-mail domain is not allowed.", "alice@example.com", "/oauth2/sign_in"),
			deniedData("Your e-mail domain is not allowed.", "", "/oauth2/sign_in"),
		}
	case "error":
		return []map[string]any{
			errorData("Sign-in expired", "Please start again.", "/oauth2/sign_in"),
			errorData("Service unavailable", "Please try again in a moment.", ""),
		}
	case "signed_out":
		return []map[string]any{signedOutData("/oauth2/sign_in")}
	case "sign_out_all":
		return []map[string]any{signOutAllData("alice@example.com", "/oauth2/sign_out?all=true", "csrf", "/")}
	case "device":
		return []map[string]any{
			deviceData(DevicePage{Action: "/oauth2/device"}),
			deviceData(DevicePage{Action: "/oauth2/device", Error: "That code is not valid."}),
			deviceData(DevicePage{Action: "/oauth2/device", Who: "alice@example.com", CSRF: "csrf",
				Request: &DeviceRequest{Client: "gatehouse-cli", Scopes: []string{"read"}, UserCode: "ABCD-EFGH"}}),
			deviceData(DevicePage{Action: "/oauth2/device", Done: "Device connected"}),
		}
	case "sessions":
		return []map[string]any{
			sessionsData(SessionsPage{Who: "alice@example.com", Action: "/oauth2/sessions", CSRF: "csrf", Notice: "Session ended.",
				Sessions: []SessionRow{
					{ID: "a", Kind: "browser", Provider: "corp", Created: "2026-01-02 10:00 UTC", LastSeen: "2026-01-02 11:00 UTC", Where: "192.0.2.1 · Firefox", Current: true},
					{ID: "b", Kind: "device", Provider: "corp", ClientID: "gatehouse-cli", Scopes: "read", Created: "2026-01-02 10:00 UTC"},
				}}),
			sessionsData(SessionsPage{Who: "alice@example.com", Action: "/oauth2/sessions", CSRF: "csrf"}),
		}
	}
	return []map[string]any{{"Title": page}}
}

// cspHost is a host (and port) that can stand in a Content-Security-
// Policy source as it is: no character that would end or split the source.
var cspHost = regexp.MustCompile(`^([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$`)

// logoFromURL checks ui.logo_url: an absolute http(s) URL or a path on
// this host. It returns the URL and the img-src the page's policy needs.
func logoFromURL(s string) (template.URL, string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", "", fmt.Errorf("%q is not a URL: %v", s, err)
	}
	if u.Scheme == "" && u.Host == "" && strings.HasPrefix(u.Path, "/") && !strings.HasPrefix(s, "//") && u.Opaque == "" {
		return template.URL(u.String()), "'self'", nil
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.User != nil || !cspHost.MatchString(u.Host) {
		return "", "", fmt.Errorf("%q must be an absolute http(s) URL, e.g. https://cdn.example.com/logo.svg, or a path on this host", s)
	}
	return template.URL(u.String()), u.Scheme + "://" + u.Host, nil
}

// logoFromFile reads ui.logo_file and returns it as a data: URI.
func logoFromFile(file string) (template.URL, error) {
	b, err := readLimited(file, MaxLogoBytes)
	if err != nil {
		return "", err
	}
	mime := imageType(b)
	if mime == "" {
		return "", fmt.Errorf("%s is not a PNG, JPEG or SVG image", file)
	}
	return template.URL("data:" + mime + ";base64," + base64.StdEncoding.EncodeToString(b)), nil
}

// imageType is the MIME type of a PNG, JPEG or SVG image, "" for
// anything else. An SVG in an img element runs no script and loads
// nothing, so it is as safe there as a bitmap.
func imageType(b []byte) string {
	switch ct := http.DetectContentType(b); {
	case ct == "image/png", ct == "image/jpeg":
		return ct
	case strings.HasPrefix(ct, "text/") && utf8.Valid(b) && strings.Contains(strings.ToLower(string(b)), "<svg"):
		return "image/svg+xml"
	}
	return ""
}

// readLimited reads a file of at most limit bytes.
func readLimited(file string, limit int64) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read: %v", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read: %v", err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d KiB", file, limit>>10)
	}
	return b, nil
}
