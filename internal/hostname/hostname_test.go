package hostname

import "testing"

func TestCanonical(t *testing.T) {
	tests := []struct{ in, want string }{
		{"grafana.example.com", "grafana.example.com"},
		{"Grafana.Example.COM", "grafana.example.com"},
		{"grafana.example.com.", "grafana.example.com"},
		{"grafana.example.com:8443", "grafana.example.com"},
		{"GRAFANA.example.com.:80", "grafana.example.com"},
		{"127.0.0.1:4180", "127.0.0.1"},
		{"[::1]:4180", "::1"},
		{"[::1]", "::1"},
		{"", ""},
		// Outside ASCII: no host. Unicode lower-casing would read U+0130
		// as "i" and U+212A (Kelvin) as "k".
		{"w\u0130ki.example.com", ""},
		{"\u212Aibana.example.com", ""},
		{"grafana.example.com\u3002", ""},
		{"gr\u00e4fana.example.com:443", ""},
		{"xn--grfana-gua.example.com", "xn--grfana-gua.example.com"},
	}
	for _, tt := range tests {
		if got := Canonical(tt.in); got != tt.want {
			t.Errorf("Canonical(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMatches(t *testing.T) {
	tests := []struct {
		pattern, host string
		want          bool
	}{
		{"grafana.example.com", "grafana.example.com", true},
		{"grafana.example.com", "grafana.example.org", false},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", ".example.com", false},
		{"*.example.com", "aexample.com", false},
		{"*.example.com", "a.example.com.evil.test", false},
	}
	for _, tt := range tests {
		if got := Matches(tt.pattern, tt.host); got != tt.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", tt.pattern, tt.host, got, tt.want)
		}
	}
}
