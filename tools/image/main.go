// Command image builds Gatehouse's container image without a Docker daemon
// and without pulling a base image: a static binary per platform, the build
// machine's CA bundle and a minimal /etc/passwd and /etc/group go into one
// layer on top of nothing, and the multi-platform image index is written as
// an OCI archive (a tar of an OCI image layout).
//
//	go run . -out ../../bin/gatehouse-image.oci.tar -version v0.1.0 -commit abc1234
//
// The result is pushed with `skopeo copy oci-archive:FILE docker://REF`, or
// unpacked and pushed with `crane push DIR REF` (see the README).
//
// It lives in a module of its own so go-containerregistry stays out of
// Gatehouse's go.mod.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

func main() {
	var (
		o         Options
		platforms string
		epoch     int64
	)
	flag.StringVar(&o.Src, "src", "../..", "root of the Gatehouse module (where cmd/gatehouse is)")
	flag.StringVar(&o.Out, "out", "../../bin/gatehouse-image.oci.tar", "OCI archive to write")
	flag.StringVar(&o.LayoutDir, "layout", "", "also write the OCI image layout to this directory (for `crane push DIR REF`)")
	flag.StringVar(&o.Version, "version", "dev", "version stamped into the binary (main.version) and the image label")
	flag.StringVar(&o.Commit, "commit", "unknown", "commit stamped into the binary (main.commit) and the image label")
	flag.StringVar(&o.Ref, "ref", "", "image reference recorded in the archive (default "+DefaultRepository+":<version without a leading v>)")
	flag.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "comma-separated platforms")
	flag.StringVar(&o.CACerts, "ca-certificates", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to install as /etc/ssl/certs/ca-certificates.crt")
	flag.StringVar(&o.SourceURL, "source-url", DefaultSource, "org.opencontainers.image.source label")
	flag.StringVar(&o.Go, "go", "go", "go command used to build the binaries")
	flag.Int64Var(&epoch, "epoch", -1, "timestamp (Unix seconds) of every file and of the image; default $SOURCE_DATE_EPOCH, else the commit time of -src, else 0")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "image: unexpected arguments:", flag.Args())
		os.Exit(2)
	}
	for _, p := range strings.Split(platforms, ",") {
		if p = strings.TrimSpace(p); p != "" {
			o.Platforms = append(o.Platforms, p)
		}
	}
	var err error
	if o.Epoch, err = sourceDateEpoch(epoch, o.Src); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(2)
	}
	res, err := Build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	res.Print(os.Stdout)
}
