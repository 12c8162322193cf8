package main

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/gatehouse/gatehouse/internal/confcheck"
)

// kubernetesVariable matches what Kubernetes injects into every pod for a
// Service whose name turns into GATEHOUSE_... (gatehouse, gatehouse-metrics):
// GATEHOUSE_PORT, GATEHOUSE_PORT_4180_TCP_ADDR, GATEHOUSE_SERVICE_HOST,
// GATEHOUSE_SERVICE_PORT_HTTP. They are never a typo of a key.
var kubernetesVariable = regexp.MustCompile(`^GATEHOUSE_([A-Z0-9_]+_)?(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(ADDR|PORT|PROTO))?)?)$`)

// unknownEnvWarnings turns the GATEHOUSE_ variables that name no key into
// warnings (never errors). One that is a near miss of a real variable gets
// a warning of its own saying which; the others, such as those Kubernetes
// injects, are listed together in one line. Values are never repeated.
func unknownEnvWarnings(unknown []string, byEnv map[string]keyInfo, maps []keyInfo) []string {
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	var hints, plain []string
	for _, name := range unknown {
		if !kubernetesVariable.MatchString(name) {
			if s := suggestEnv(name, byEnv, maps); s != "" {
				hints = append(hints, fmt.Sprintf("%s names no configuration key and is ignored; did you mean %s?", name, s))
				continue
			}
		}
		plain = append(plain, name)
	}
	if len(plain) > 0 {
		hints = append(hints, "ignoring environment variables that name no configuration key: "+strings.Join(plain, ", "))
	}
	return hints
}

// suggestEnv returns the variable name is most likely a typo of, or "": a
// real variable within edit distance 2, or one that differs only in
// underscores (GATEHOUSE_UPSTREAM_SKIPAUTH_ROUTES).
func suggestEnv(name string, byEnv map[string]keyInfo, maps []keyInfo) string {
	candidates := []string{"GATEHOUSE_CONFIG"}
	for env := range byEnv {
		candidates = append(candidates, env)
	}
	// GATEHOUSE_AUTH_OIDC_<NAME>_<FIELD>: compare with the fields of the
	// entry the variable names.
	for _, m := range maps {
		rest, ok := strings.CutPrefix(name, confcheck.EnvName(m.path)+"_")
		if !ok {
			continue
		}
		entry, _, _ := strings.Cut(rest, "_")
		for _, k := range leafKeys(m.elem, "") {
			candidates = append(candidates, confcheck.EnvName(m.path)+"_"+entry+"_"+strings.ToUpper(strings.ReplaceAll(k.path, ".", "_")))
		}
	}
	sort.Strings(candidates)
	best, bestDist := "", 3
	squeezed := strings.ReplaceAll(name, "_", "")
	for _, c := range candidates {
		d := editDistance(name, c)
		if strings.ReplaceAll(c, "_", "") == squeezed {
			d = 0
		}
		if d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
