package confcheck

import "testing"

func TestJoin(t *testing.T) {
	tests := []struct {
		parts []string
		want  string
	}{
		{[]string{"session", "secret"}, "session.secret"},
		{[]string{"", "server", "", "listen"}, "server.listen"},
		{[]string{"policies", "[0].path"}, "policies[0].path"},
		{[]string{"policies", "[1]"}, "policies[1]"},
		{[]string{"tokens", "static[0].sha256"}, "tokens.static[0].sha256"},
		{[]string{"[0]"}, "[0]"},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := Join(tt.parts...); got != tt.want {
			t.Errorf("Join(%q) = %q, want %q", tt.parts, got, tt.want)
		}
	}
}

func TestNestKeepsListIndexesOnTheirList(t *testing.T) {
	var ps Problems
	var sub Problems
	sub.Addf("[0].path", "required")
	sub.Addf("[1]", "a policy needs at least one allowed_* list")
	ps.Nest("policies", sub)
	want := []string{"policies[0].path", "policies[1]"}
	for i, p := range ps {
		if p.Key != want[i] {
			t.Errorf("problem %d key = %q, want %q", i, p.Key, want[i])
		}
	}
}
