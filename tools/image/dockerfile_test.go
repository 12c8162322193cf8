package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfileMatches keeps ../../Dockerfile (for people with a daemon)
// in step with the image this program builds: no daemon here to build it,
// so compare what both say.
func TestDockerfileMatches(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// Instructions on one line each: join continuations, drop comments.
	text := regexp.MustCompile(`\\\n\s*`).ReplaceAllString(string(b), " ")
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	last := -1 // the final stage starts at the last FROM
	for i, l := range lines {
		if strings.HasPrefix(l, "FROM ") {
			last = i
		}
	}
	if last < 0 {
		t.Fatal("no FROM in the Dockerfile")
	}
	final := strings.Join(lines[last:], "\n")
	all := strings.Join(lines, "\n")

	build := "CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build " + strings.Join(BuildFlags, " ") +
		` -ldflags "` + LDFlags("$VERSION", "$COMMIT") + `" -o /out/gatehouse ./cmd/gatehouse`
	if !strings.Contains(all, build) {
		t.Errorf("the Dockerfile does not build with\n  %s", build)
	}
	for _, want := range []string{
		"COPY --from=build /out/gatehouse " + BinaryPath,
		"ENV SSL_CERT_FILE=" + CAFile,
		"USER 65532:65532",
		"WORKDIR " + HomeDir,
		"EXPOSE 4180/tcp 9180/tcp",
		`ENTRYPOINT ["` + BinaryPath + `"]`,
		`CMD ["serve"]`,
		`org.opencontainers.image.title="gatehouse"`,
		`org.opencontainers.image.source="` + DefaultSource + `"`,
		`org.opencontainers.image.version="${VERSION}"`,
		`org.opencontainers.image.revision="${COMMIT}"`,
	} {
		if !strings.Contains(final, want) {
			t.Errorf("the Dockerfile's final stage lacks %s", want)
		}
	}
	if !strings.HasPrefix(final, "FROM gcr.io/distroless/static") || !strings.Contains(lines[last], ":nonroot") {
		t.Errorf("final stage %q: want a distroless static nonroot base", lines[last])
	}
}
