package pages

import (
	"html/template"
	"net/url"
	"strings"

	"golang.org/x/net/html"
)

// footerTags are the elements ui.footer_html may use. Nothing here can
// run script, load a resource or change the page outside the footer.
var footerTags = map[string]bool{
	"a": true, "b": true, "i": true, "em": true, "strong": true, "br": true, "span": true, "p": true,
}

// SanitizeFooter makes ui.footer_html safe to put in every page: the
// allowed tags (a, b, i, em, strong, br, span, p) are rebuilt from their
// parsed form with at most a title attribute and, on a, an http, https or
// mailto href; every other tag, comment or declaration is escaped, so it
// shows as text; text is re-escaped; open tags are closed at the end, so
// the footer cannot swallow the rest of the page. changed reports whether
// anything was escaped or dropped, for a warning at start.
//
// The output is built from tokens, never copied from the input, so what a
// browser parses is exactly what was checked here: an allowed element
// with escaped attribute values, or text.
func SanitizeFooter(in string) (out template.HTML, changed bool) {
	z := html.NewTokenizer(strings.NewReader(in))
	var b strings.Builder
	var open []string // allowed elements not closed yet, innermost last
	asText := func(raw string) {
		changed = true
		b.WriteString(escapeText(raw))
	}
	for {
		tt := z.Next()
		raw := string(z.Raw())
		switch tt {
		case html.ErrorToken:
			// The end, or an unfinished tag at the end: show what is left.
			if raw != "" {
				asText(raw)
			}
			for i := len(open) - 1; i >= 0; i-- {
				b.WriteString("</" + open[i] + ">")
			}
			return template.HTML(b.String()), changed
		case html.TextToken:
			b.WriteString(escapeText(string(z.Text())))
		case html.StartTagToken, html.SelfClosingTagToken:
			// Read what follows as markup even after <script>, <style>,
			// <textarea> or <plaintext>, as after any other tag: their
			// contents get the same treatment as the rest.
			z.NextIsNotRawText()
			tok := z.Token()
			if !footerTags[tok.Data] {
				asText(raw)
				continue
			}
			b.WriteString("<" + tok.Data)
			seen := map[string]bool{}
			for _, a := range tok.Attr {
				ok := !seen[a.Key] && (a.Key == "title" || (a.Key == "href" && tok.Data == "a" && SafeLink(a.Val)))
				if !ok {
					changed = true
					continue
				}
				// The first of duplicated attributes wins, as in browsers.
				seen[a.Key] = true
				b.WriteString(" " + a.Key + `="` + escapeText(a.Val) + `"`)
			}
			b.WriteString(">")
			// A self-closing slash means nothing on these elements in
			// HTML: <b/> opens a b, as a browser reads it.
			if tok.Data != "br" {
				open = append(open, tok.Data)
			}
		case html.EndTagToken:
			tok := z.Token()
			if !footerTags[tok.Data] {
				asText(raw)
				continue
			}
			i := len(open) - 1
			for i >= 0 && open[i] != tok.Data {
				i--
			}
			if i < 0 {
				changed = true // closes nothing that is open (or a </br>)
				continue
			}
			for j := len(open) - 1; j >= i; j-- {
				b.WriteString("</" + open[j] + ">")
			}
			open = open[:i]
		default: // comments, doctypes
			asText(raw)
		}
	}
}

// escapeText escapes s for HTML text or a quoted attribute value, after
// normalising what the tokenizer normalises (line ends, NUL), so that
// sanitizing twice gives what sanitizing once gave.
func escapeText(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	return html.EscapeString(s)
}

// SafeLink reports whether a link may appear in a page Gatehouse renders:
// an absolute http or https URL with a host, or a mailto: address. A
// relative URL is refused too: only a scheme checked here can be trusted
// to be the one the browser uses.
func SafeLink(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		return u.Host != "" && u.Opaque == ""
	case "mailto":
		return u.Opaque != ""
	}
	return false
}
