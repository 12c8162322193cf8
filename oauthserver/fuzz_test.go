package oauthserver

import (
	"strings"
	"testing"
)

func FuzzNormalizeUserCode(f *testing.F) {
	for _, s := range []string{"BCDF-GHJK", "bcdfghjk", "bcdf ghjk", "AEIO-UUUU", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := normalizeUserCode(s)
		for _, c := range n {
			if !strings.ContainsRune(userCodeAlphabet, c) {
				t.Fatalf("normalizeUserCode(%q) = %q has %q", s, n, c)
			}
		}
	})
}
