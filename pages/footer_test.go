package pages

import (
	"strings"
	"testing"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

func TestSanitizeFooter(t *testing.T) {
	tests := []struct {
		in, want string
		changed  bool
	}{
		{"", "", false},
		{"Run by the platform team", "Run by the platform team", false},
		{`<a href="https://wiki.example.com/gatehouse" title="Help">Help</a> · <a href="mailto:ops@example.com">ops</a>`,
			`<a href="https://wiki.example.com/gatehouse" title="Help">Help</a> · <a href="mailto:ops@example.com">ops</a>`, false},
		{`<p><b>Bold</b>, <i>i</i>, <em>em</em>, <strong>s</strong>,<br><span>span</span></p>`,
			`<p><b>Bold</b>, <i>i</i>, <em>em</em>, <strong>s</strong>,<br><span>span</span></p>`, false},
		{"<B>loud</B> &amp; <BR/>", "<b>loud</b> &amp; <br>", false},
		{"Tom & Jerry <3", "Tom &amp; Jerry &lt;3", false},
		{`<a href='https://x.example/?a=1&amp;b="2"'>q</a>`, `<a href="https://x.example/?a=1&amp;b=&#34;2&#34;">q</a>`, false},
		// Not allowed: shown as text, never as markup.
		{"<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;", true},
		{`<img src=x onerror=alert(1)>`, "&lt;img src=x onerror=alert(1)&gt;", true},
		{"<style>body{display:none}</style>", "&lt;style&gt;body{display:none}&lt;/style&gt;", true},
		{"<!-- note -->hi", "&lt;!-- note --&gt;hi", true},
		{"<textarea><b>x</b></textarea>", "&lt;textarea&gt;<b>x</b>&lt;/textarea&gt;", true},
		// Allowed tags lose what they may not carry.
		{`<a href="javascript:alert(1)">x</a>`, "<a>x</a>", true},
		{`<a href="JaVaScRiPt:alert(1)">x</a>`, "<a>x</a>", true},
		{`<a href="&#106;avascript:alert(1)">x</a>`, "<a>x</a>", true},
		{"<a href=\"java\tscript:alert(1)\">x</a>", "<a>x</a>", true},
		{`<a href=" javascript:alert(1)">x</a>`, "<a>x</a>", true},
		{`<a href="data:text/html,<script>alert(1)</script>">x</a>`, "<a>x</a>", true},
		{`<a href="/relative">x</a>`, "<a>x</a>", true},
		{`<a href="https:evil">x</a>`, "<a>x</a>", true},
		{`<b onclick="alert(1)" style="color:red" title="t">x</b>`, `<b title="t">x</b>`, true},
		{`<span href="https://x.example">x</span>`, "<span>x</span>", true},
		// The first of duplicated attributes counts, as in browsers.
		{`<a href="https://a.example" href="javascript:alert(1)">x</a>`, `<a href="https://a.example">x</a>`, false},
		// Structure: unclosed tags are closed, stray end tags dropped.
		{"<b>open <i>both", "<b>open <i>both</i></b>", false},
		{"<b>x</i></b></p>", "<b>x</b>", true},
		{"<b><i>x</b>y", "<b><i>x</i></b>y", false},
		{"<a href=\"https://x.example\">unfinished <", "<a href=\"https://x.example\">unfinished &lt;</a>", false},
		{"<b/>x", "<b>x</b>", false},
		{"x<b", "x&lt;b", true},
	}
	for _, tt := range tests {
		got, changed := SanitizeFooter(tt.in)
		if string(got) != tt.want || changed != tt.changed {
			t.Errorf("SanitizeFooter(%q) = %q, %v; want %q, %v", tt.in, got, changed, tt.want, tt.changed)
		}
	}
}

// XSS vectors from the usual cheat sheets: none may leave a script, an
// event handler or a javascript: URL behind.
var footerAttacks = []string{
	"<script>alert(1)</script>",
	"<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
	"<scr<script>ipt>alert(1)</scr</script>ipt>",
	"<<script>script>alert(1)<</script>/script>",
	`<a href="javascript:alert(1)" onmouseover="alert(1)">x</a>`,
	`<a href="jav&#x09;ascript:alert(1)">x</a>`,
	`<a href="vbscript:msgbox(1)">x</a>`,
	`<a href=javascript&colon;alert(1)>x</a>`,
	`<svg/onload=alert(1)>`,
	`<body onload=alert(1)>`,
	`<iframe src="javascript:alert(1)"></iframe>`,
	`<p style="background:url(javascript:alert(1))">x</p>`,
	`<span/onmouseover=alert(1)>x</span>`,
	`<b """><script>alert(1)</script>">`,
	"<a href=\"https://x.example\"\x00onclick=alert(1)>x</a>",
	`<math><mi xlink:href="javascript:alert(1)">x</mi></math>`,
	`<!--<script>alert(1)</script>-->`,
	`<![CDATA[<script>alert(1)</script>]]>`,
	`<noscript><p title="</noscript><img src=x onerror=alert(1)>">`,
	`<plaintext><script>alert(1)</script>`,
	`<title><script>alert(1)</script></title>`,
	`<a href="https://ok.example" title="x&quot; onclick=&quot;alert(1)">x</a>`,
	`<p title='a' onclick='alert(1)'>x</p>`,
	`<form action="javascript:alert(1)"><button>x</button></form>`,
}

func TestFooterNeverCarriesScript(t *testing.T) {
	for _, in := range footerAttacks {
		out, _ := SanitizeFooter(in)
		checkFooter(t, in, string(out))
	}
}

// checkFooter fails the test when out, parsed as a browser would inside a
// footer element, holds anything but allowed elements with allowed
// attributes and safe links, or a script tag in any spelling.
func checkFooter(t *testing.T, in, out string) {
	t.Helper()
	if strings.Contains(strings.ToLower(out), "<script") {
		t.Fatalf("SanitizeFooter(%q) = %q: a script tag survived", in, out)
	}
	ctx := &html.Node{Type: html.ElementNode, Data: "footer", DataAtom: atom.Footer}
	nodes, err := html.ParseFragment(strings.NewReader(out), ctx)
	if err != nil {
		t.Fatalf("SanitizeFooter(%q) = %q does not parse: %v", in, out, err)
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		switch n.Type {
		case html.ElementNode:
			if !footerTags[n.Data] || n.Namespace != "" {
				t.Fatalf("SanitizeFooter(%q) = %q: element %s survived", in, out, n.Data)
			}
			for _, a := range n.Attr {
				switch {
				case strings.HasPrefix(strings.ToLower(a.Key), "on"):
					t.Fatalf("SanitizeFooter(%q) = %q: event handler %s survived", in, out, a.Key)
				case a.Key == "href" && n.Data == "a":
					if !SafeLink(a.Val) || strings.Contains(strings.ToLower(a.Val), "script:") {
						t.Fatalf("SanitizeFooter(%q) = %q: link %q survived", in, out, a.Val)
					}
				case a.Key == "title":
				default:
					t.Fatalf("SanitizeFooter(%q) = %q: attribute %s survived", in, out, a.Key)
				}
			}
		case html.CommentNode, html.DoctypeNode:
			t.Fatalf("SanitizeFooter(%q) = %q: a %v node survived", in, out, n.Type)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	for _, n := range nodes {
		walk(n)
	}
}

// FuzzSanitizeFooter: whatever the input, the output is safe by
// checkFooter, and sanitizing it again changes nothing (the output is
// its own canonical form, so nothing is left for a second reading).
// Seeds: testdata/fuzz/FuzzSanitizeFooter and footerAttacks.
func FuzzSanitizeFooter(f *testing.F) {
	for _, s := range footerAttacks {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, _ := SanitizeFooter(in)
		checkFooter(t, in, string(out))
		again, changed := SanitizeFooter(string(out))
		if again != out || changed {
			t.Fatalf("not idempotent: SanitizeFooter(%q) = %q, then %q (changed %v)", in, out, again, changed)
		}
	})
}
