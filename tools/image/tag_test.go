package main

import "testing"

func TestImageTag(t *testing.T) {
	for version, want := range map[string]string{
		"v0.1.0":            "0.1.0", // the chart's appVersion form
		"0.1.0":             "0.1.0",
		"v0.1.0-3-gbd613ae": "0.1.0-3-gbd613ae",
		"bd613ae-dirty":     "bd613ae-dirty",
		"v1.2.3+build.5":    "1.2.3-build.5",
		"feature/x":         "feature-x",
		"dev":               "dev",
		"vnext":             "vnext",
		"-x":                "_-x",
		"":                  "_",
	} {
		if got := ImageTag(version); got != want {
			t.Errorf("ImageTag(%q) = %q, want %q", version, got, want)
		}
	}
}
