package canonical

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	keep := Options{EncodedSlashes: KeepSlashes, PathParameters: KeepParams}
	decode := Options{EncodedSlashes: DecodeSlashes}
	tests := []struct {
		name     string
		raw      string
		o        Options
		escaped  string // "" with refused
		decoded  string
		stripped string
		redirect string // resolved path, for dot segments
		refused  bool
	}{
		{name: "plain", raw: "/admin/users", escaped: "/admin/users", decoded: "/admin/users"},
		{name: "root", raw: "/", escaped: "/", decoded: "/"},
		{name: "unreserved decoded", raw: "/%61dmin/%7Eme", escaped: "/admin/~me", decoded: "/admin/~me"},
		{name: "other escapes kept upper-case", raw: "/a%20b/%e2%82%ac", escaped: "/a%20b/%E2%82%AC", decoded: "/a b/€"},
		{name: "raw unsafe characters escaped", raw: "/a b/\"x\"/€", escaped: "/a%20b/%22x%22/%E2%82%AC", decoded: "/a b/\"x\"/€"},
		{name: "sub-delims stay raw", raw: "/a!$&'()*+,=:@", escaped: "/a!$&'()*+,=:@", decoded: "/a!$&'()*+,=:@"},
		{name: "encoded sub-delim stays encoded", raw: "/a%21", escaped: "/a%21", decoded: "/a!"},
		{name: "double slash kept", raw: "//admin//x/", escaped: "//admin//x/", decoded: "//admin//x/"},
		{name: "percent itself", raw: "/100%25", escaped: "/100%25", decoded: "/100%"},

		{name: "dot dot", raw: "/public/../admin", redirect: "/admin"},
		{name: "encoded dot dot", raw: "/public/%2e%2E/admin", redirect: "/admin"},
		{name: "single dot", raw: "/a/./b", redirect: "/a/b"},
		{name: "trailing dot dot keeps slash", raw: "/a/b/..", redirect: "/a/"},
		{name: "above root", raw: "/../../etc", redirect: "/etc"},
		{name: "dot dot over empty segment", raw: "/a//../b", redirect: "/a/b"},
		{name: "dots then double slash", raw: "/x/..//admin", redirect: "//admin"},
		{name: "three dots are a name", raw: "/.../a", escaped: "/.../a", decoded: "/.../a"},

		{name: "backslash", raw: `/public\..\admin`, refused: true},
		{name: "encoded backslash", raw: "/public%5c..%5cadmin", refused: true},
		{name: "encoded slash", raw: "/admin%2F..%2Fpublic/x", refused: true},
		{name: "encoded slash lower", raw: "/admin%2fx", refused: true},
		{name: "params", raw: "/admin;x/users", refused: true},
		{name: "encoded params", raw: "/admin%3bx/users", refused: true},
		{name: "params on dot dot", raw: "/public/..;/admin", refused: true},
		{name: "params on dot dot even when kept", raw: "/public/..;/admin", o: keep, refused: true},
		{name: "encoded params on dot dot when kept", raw: "/public/..%3B/admin", o: keep, refused: true},
		{name: "control char", raw: "/a\x01b", refused: true},
		{name: "DEL", raw: "/a\x7f", refused: true},
		{name: "NUL encoded", raw: "/a%00b", refused: true},
		{name: "encoded newline", raw: "/a%0d%0aSet-Cookie:x", refused: true},
		{name: "truncated escape", raw: "/a%2", refused: true},
		{name: "bad hex", raw: "/a%zz", refused: true},
		{name: "IIS unicode escape", raw: "/a/%u002e%u002e/b", refused: true},
		{name: "overlong dot", raw: "/a/%c0%ae%c0%ae/b", refused: true},
		{name: "invalid UTF-8 raw", raw: "/a\xff", refused: true},
		{name: "raw hash", raw: "/a#b", refused: true},
		{name: "not a path", raw: "admin", refused: true},
		{name: "empty", raw: "", refused: true},

		{name: "keep slash", raw: "/repos/a%2fb/x", o: keep, escaped: "/repos/a%2Fb/x", decoded: "/repos/a%2Fb/x"},
		{name: "keep slash hiding dots", raw: "/a/..%2F..%2Fadmin", o: keep, refused: true},
		{name: "keep slash hiding dots after params", raw: "/public;x%2F..%2Fadmin", o: keep, refused: true},
		{name: "keep slash hiding dots after encoded params", raw: "/public%3Bx%2F..%2Fadmin", o: keep, refused: true},
		{name: "keep slash, dots with params", raw: "/a%2F..;x%2Fadmin", o: keep, refused: true},
		{name: "keep params", raw: "/admin;jsessionid=1/users", o: keep, escaped: "/admin;jsessionid=1/users",
			decoded: "/admin;jsessionid=1/users", stripped: "/admin/users"},
		{name: "keep encoded params", raw: "/admin%3Bx/users", o: keep, escaped: "/admin%3Bx/users",
			decoded: "/admin;x/users", stripped: "/admin/users"},
		{name: "decode slash", raw: "/a%2Fb", o: decode, escaped: "/a/b", decoded: "/a/b"},
		{name: "decode slash then dots", raw: "/admin%2F..%2Fpublic", o: decode, redirect: "/public"},
		{name: "decode slash backslash still refused", raw: "/a%2F%5C", o: decode, refused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(tt.raw, tt.o)
			switch {
			case tt.refused:
				var e *Error
				if !errors.As(err, &e) || errors.Is(err, ErrDotSegments) || e.Reason == "" {
					t.Fatalf("Parse(%q) = %+v, %v; want a refusal", tt.raw, p, err)
				}
			case tt.redirect != "":
				var e *Error
				if !errors.Is(err, ErrDotSegments) || !errors.As(err, &e) || e.Resolved.Escaped != tt.redirect {
					t.Fatalf("Parse(%q) = %v; want a redirect to %q", tt.raw, err, tt.redirect)
				}
				// The place redirected to is itself canonical.
				if again, err := Parse(e.Resolved.Escaped, tt.o); err != nil || again != *e.Resolved {
					t.Errorf("redirect target %q is not canonical: %+v, %v", e.Resolved.Escaped, again, err)
				}
			default:
				if err != nil {
					t.Fatalf("Parse(%q): %v", tt.raw, err)
				}
				stripped := tt.stripped
				if stripped == "" {
					stripped = tt.decoded
				}
				if p.Escaped != tt.escaped || p.Decoded != tt.decoded || p.Stripped != stripped {
					t.Errorf("Parse(%q) = %+v; want escaped %q decoded %q stripped %q", tt.raw, p, tt.escaped, tt.decoded, stripped)
				}
				if again, err := Parse(p.Escaped, tt.o); err != nil || again != p {
					t.Errorf("canonical form %q does not parse to itself: %+v, %v", p.Escaped, again, err)
				}
			}
		})
	}
}

func TestModes(t *testing.T) {
	for _, s := range []string{"", "reject", "decode", "keep"} {
		if _, err := ParseSlashMode(s); err != nil {
			t.Errorf("ParseSlashMode(%q): %v", s, err)
		}
	}
	for _, s := range []string{"Reject", "allow", "merge"} {
		if _, err := ParseSlashMode(s); err == nil {
			t.Errorf("ParseSlashMode(%q) accepted", s)
		}
	}
	for _, s := range []string{"", "reject", "keep"} {
		if _, err := ParseParamMode(s); err != nil {
			t.Errorf("ParseParamMode(%q): %v", s, err)
		}
	}
	if _, err := ParseParamMode("strip"); err == nil {
		t.Error("ParseParamMode(strip) accepted")
	}
}

func TestRawPath(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"/a/b?x=/c", "/a/b", true},
		{"/a%2Fb", "/a%2Fb", true},
		{"//admin/users", "//admin/users", true},
		{"http://h.example/a/..%2Fb?q", "/a/..%2Fb", true},
		{"HTTPS://h.example", "/", true},
		{"*", "", false},
		{"h.example:443", "", false},
	} {
		got, ok := RawPath(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("RawPath(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// FuzzParse: nothing panics; a canonical path parses to itself; a
// redirect target is canonical; nothing refused or redirected is ever
// returned as a path.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/a/../b", "/%2e%2E/x", "/a%2Fb", `/a\b`, "/a;b/c", "/..;/x", "/%c0%ae",
		"//x//", "/a%20b", "/€", "/%zz", "/a/.", "/%3B"} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(5))
	}
	f.Fuzz(func(t *testing.T, raw string, mode uint8) {
		o := Options{EncodedSlashes: SlashMode(mode % 3), PathParameters: ParamMode(mode / 3 % 2)}
		p, err := Parse(raw, o)
		var e *Error
		switch {
		case err == nil:
			if again, err := Parse(p.Escaped, o); err != nil || again != p {
				t.Fatalf("%q -> %+v, which parses to %+v, %v", raw, p, again, err)
			}
			if !strings.HasPrefix(p.Decoded, "/") || strings.ContainsAny(p.Escaped, "\\?#") {
				t.Fatalf("%q -> %+v", raw, p)
			}
		case errors.As(err, &e) && e.Resolved != nil:
			if again, err := Parse(e.Resolved.Escaped, o); err != nil || again != *e.Resolved {
				t.Fatalf("%q redirects to %q, which is not canonical: %v", raw, e.Resolved.Escaped, err)
			}
		case !errors.As(err, &e) || e.Reason == "":
			t.Fatalf("%q: error without a reason: %v", raw, err)
		}
	})
}
