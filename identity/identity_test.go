package identity

import "testing"

func TestLocalPart(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"Alice@Example.com", "alice"},
		{"al\u0130ce@example.com", "al\u0130ce"}, // never folded into "alice"
		{"\u212Aate@example.com", "\u212Aate"},   // Kelvin sign is not "k"
		{"a@b@example.com", ""},
		{"nobody", ""},
	} {
		if got := LocalPart(tt.in); got != tt.want {
			t.Errorf("LocalPart(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFoldASCIIOnly(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"Acme", "aCME", true},
		{"kube", "\u212Aube", false}, // Kelvin sign is not "K"
		{"infra", "\u0130nfra", false},
		{"a", "ab", false},
	} {
		if got := EqualFoldASCII(tt.a, tt.b); got != tt.want {
			t.Errorf("EqualFoldASCII(%q, %q) = %v", tt.a, tt.b, got)
		}
		if got := LowerASCII(tt.a) == LowerASCII(tt.b); got != tt.want {
			t.Errorf("LowerASCII(%q) == LowerASCII(%q): %v", tt.a, tt.b, got)
		}
	}
}
