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
