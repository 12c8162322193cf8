package workload

import (
	"strings"
	"testing"
)

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, value string
		want           bool
	}{
		{"acme/app", "acme/app", true},
		{"acme/app", "acme/ap", false},
		{"acme/app", "acme/appx", false},
		{"acme/*", "acme/app", true},
		{"acme/*", "acme/", false}, // one or more
		{"acme/*", "acme/app/x", false},
		{"acme/*", "acme-evil/app", false},
		{"acme/*", "xacme/app", false},
		{"*/app", "acme/app", true},
		{"*/app", "/app", false},
		{"*", "a:b", false},
		{"system:serviceaccount:ci:*", "system:serviceaccount:ci:deployer", true},
		{"system:serviceaccount:ci:*", "system:serviceaccount:ci:x:y", false},
		{"system:serviceaccount:*:deployer", "system:serviceaccount:ci:deployer", true},
		{"refs/heads/release-*", "refs/heads/release-1.2", true},
		{"refs/heads/release-*", "refs/heads/release-", false},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "abc", false},
		{"a*c", "abbbbc", true},
		{"a**c", "abc", false}, // each star takes at least one
		{"a**c", "abbc", true},
		{"?", "é", true}, // a character, not a byte
		{"?", "/", true}, // ? is any character
		{"??", "é", false},
		{"v?", "v1", true},
		{`a\*`, "a*", true},
		{`a\*`, "ab", false},
		{`a\?`, "a?", true},
		{`a\\b`, `a\b`, true},
		{"*", "", false},
	}
	for _, tt := range tests {
		g, err := compileGlob(tt.pattern)
		if err != nil {
			t.Fatalf("compileGlob(%q): %v", tt.pattern, err)
		}
		if got := g.match(tt.value); got != tt.want {
			t.Errorf("%q matching %q = %v; want %v", tt.pattern, tt.value, got, tt.want)
		}
	}
	for _, bad := range []string{"", `x\`, "\xff"} {
		if err := checkGlob(bad); err == nil {
			t.Errorf("checkGlob(%q) = nil", bad)
		}
	}
}

func TestGlobIsLinear(t *testing.T) {
	// A backtracking matcher takes exponential time here.
	g, err := compileGlob(strings.Repeat("*a", 30) + "b")
	if err != nil {
		t.Fatal(err)
	}
	if g.match(strings.Repeat("a", 10000)) {
		t.Fatal("matched")
	}
}
