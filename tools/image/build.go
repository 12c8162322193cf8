package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// DefaultRepository is where the image is published; the Helm chart's
	// image.repository default names the same place.
	DefaultRepository = "ghcr.io/gatehouse/gatehouse"
	// DefaultSource is the org.opencontainers.image.source label.
	DefaultSource = "https://github.com/gatehouse/gatehouse"

	// UID and GID of the unprivileged user the image runs as, "nonroot" as
	// in the distroless images (and the Helm chart's podSecurityContext).
	UID = 65532
	GID = 65532

	// CAFile is where the CA bundle goes; SSL_CERT_FILE points at it.
	CAFile = "/etc/ssl/certs/ca-certificates.crt"
	// BinaryPath is the entrypoint.
	BinaryPath = "/gatehouse"
	// HomeDir is the nonroot user's home and the working directory.
	HomeDir = "/home/nonroot"

	// Annotations on the image index's entry in the layout's index.json,
	// as BuildKit writes them: the tag, and the full name that `docker
	// load` and `ctr import` give the image.
	AnnotationRefName       = "org.opencontainers.image.ref.name"
	AnnotationContainerdRef = "io.containerd.image.name"
)

// Options say what to build.
type Options struct {
	Src       string   // root of the Gatehouse module
	Out       string   // OCI archive to write
	LayoutDir string   // optional: also write the OCI layout here
	Version   string   // main.version and the version label
	Commit    string   // main.commit and the revision label
	Ref       string   // image reference; default DefaultRepository:tag(Version)
	Platforms []string // "linux/amd64", "linux/arm64", ...
	CACerts   string   // CA bundle on the build machine
	SourceURL string   // org.opencontainers.image.source
	Go        string   // go command
	Epoch     time.Time
}

// Result describes what Build wrote.
type Result struct {
	Ref         string
	Archive     string
	ArchiveSize int64
	IndexDigest v1.Hash
	Images      []ImageInfo
}

// ImageInfo describes one platform's image.
type ImageInfo struct {
	Platform      string
	Digest        v1.Hash
	BinarySize    int64
	LayerSize     int64 // compressed (what a registry stores and a node pulls)
	LayerDiskSize int64 // uncompressed
}

// Print writes a human summary.
func (r *Result) Print(w io.Writer) {
	fmt.Fprintf(w, "wrote %s (%s, %d bytes)\n", r.Archive, mib(r.ArchiveSize), r.ArchiveSize)
	fmt.Fprintf(w, "reference %s\nindex     %s\n", r.Ref, r.IndexDigest)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "platform\tmanifest\tbinary\tlayer (compressed)\tlayer (uncompressed)")
	for _, im := range r.Images {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s (%d)\t%s\n", im.Platform, im.Digest, mib(im.BinarySize), mib(im.LayerSize), im.LayerSize, mib(im.LayerDiskSize))
	}
	tw.Flush()
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }

// ImageTag turns a version into a tag: a leading "v" before a digit goes
// (v0.1.0 -> 0.1.0, matching the chart's appVersion), and characters a tag
// may not hold ("+" of semver build metadata, "/") become "-".
func ImageTag(version string) string {
	t := version
	if len(t) > 1 && t[0] == 'v' && t[1] >= '0' && t[1] <= '9' {
		t = t[1:]
	}
	t = regexp.MustCompile(`[^A-Za-z0-9_.-]`).ReplaceAllString(t, "-")
	if t == "" || t[0] == '.' || t[0] == '-' {
		t = "_" + t
	}
	if len(t) > 128 {
		t = t[:128]
	}
	return t
}

// sourceDateEpoch picks the timestamp of every file and of the image:
// flag, else $SOURCE_DATE_EPOCH, else the last commit's time, else 0.
func sourceDateEpoch(flagValue int64, src string) (time.Time, error) {
	if flagValue >= 0 {
		return time.Unix(flagValue, 0).UTC(), nil
	}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a Unix time", s)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	out, err := exec.Command("git", "-C", src, "log", "-1", "--format=%ct").Output()
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil {
			return time.Unix(n, 0).UTC(), nil
		}
	}
	return time.Unix(0, 0).UTC(), nil
}

// Build cross-compiles Gatehouse for every platform, assembles one image
// per platform and writes the index as an OCI archive.
func Build(o Options) (*Result, error) {
	if o.Go == "" {
		o.Go = "go"
	}
	if len(o.Platforms) == 0 {
		return nil, errors.New("no platforms")
	}
	if o.Ref == "" {
		o.Ref = DefaultRepository + ":" + ImageTag(o.Version)
	}
	ref, err := name.NewTag(o.Ref)
	if err != nil {
		return nil, fmt.Errorf("image reference: %w", err)
	}
	ca, err := os.ReadFile(o.CACerts)
	if err != nil {
		return nil, fmt.Errorf("CA certificates: %w (on Debian: apt-get install ca-certificates)", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("CA certificates: no certificate in %s", o.CACerts)
	}

	work, err := os.MkdirTemp("", "gatehouse-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	// Cross-compile every platform at once: go build is mostly
	// single-threaded at the link step.
	plats := make([]*v1.Platform, len(o.Platforms))
	for i, p := range o.Platforms {
		if plats[i], err = v1.ParsePlatform(p); err != nil {
			return nil, fmt.Errorf("platform %q: %w", p, err)
		}
		if plats[i].OS != "linux" {
			return nil, fmt.Errorf("platform %q: only linux images are built", p)
		}
		if plats[i].Architecture == "arm64" && plats[i].Variant == "" {
			plats[i].Variant = "v8" // as BuildKit and the official images record it
		}
	}
	bins := make([]string, len(plats))
	errs := make([]error, len(plats))
	var wg sync.WaitGroup
	for i, plat := range plats {
		bins[i] = filepath.Join(work, "gatehouse-"+plat.OS+"-"+plat.Architecture+plat.Variant)
		wg.Go(func() { errs[i] = goBuild(o, *plat, bins[i]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	res := &Result{Ref: ref.Name(), Archive: o.Out}
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for i, plat := range plats {
		bin, err := os.ReadFile(bins[i])
		if err != nil {
			return nil, err
		}
		img, info, err := platformImage(o, *plat, bin, ca)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", plat, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        imageNotArtifact{img},
			Descriptor: v1.Descriptor{Platform: plat},
		})
		res.Images = append(res.Images, info)
	}
	if res.IndexDigest, err = idx.Digest(); err != nil {
		return nil, err
	}

	// The layout: index.json names one entry, the multi-platform index,
	// with the tag; blobs/ holds everything. This is what `docker buildx
	// build --output type=oci` writes.
	dir := o.LayoutDir
	if dir == "" {
		dir = filepath.Join(work, "layout")
	} else if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return nil, err
	}
	containerdName := ref.Name()
	if ref.RegistryStr() == name.DefaultRegistry {
		containerdName = "docker.io/" + ref.RepositoryStr() + ":" + ref.TagStr()
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		AnnotationRefName:       ref.TagStr(),
		AnnotationContainerdRef: containerdName,
	})); err != nil {
		return nil, err
	}
	if res.ArchiveSize, err = writeArchive(dir, o.Out, o.Epoch); err != nil {
		return nil, err
	}
	return res, nil
}

// imageNotArtifact keeps go-containerregistry from giving the image's
// index entry an artifactType (its config's media type): OCI 1.1 means that
// field for artifacts, and BuildKit does not write it for images.
type imageNotArtifact struct{ v1.Image }

func (imageNotArtifact) ArtifactType() (string, error) { return "", nil }

// BuildFlags and LDFlags are how the binary is built, here and in the
// Dockerfile (with CGO_ENABLED=0).
var BuildFlags = []string{"-trimpath", "-buildvcs=false"}

// LDFlags strips the symbol table and DWARF and stamps version and commit.
func LDFlags(version, commit string) string {
	return fmt.Sprintf("-s -w -X main.version=%s -X main.commit=%s", version, commit)
}

func goBuild(o Options, plat v1.Platform, out string) error {
	args := append([]string{"build"}, BuildFlags...)
	args = append(args, "-ldflags", LDFlags(o.Version, o.Commit), "-o", out, "./cmd/gatehouse")
	cmd := exec.Command(o.Go, args...)
	cmd.Dir = o.Src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+plat.OS, "GOARCH="+plat.Architecture)
	if plat.Architecture == "arm" && plat.Variant != "" {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(plat.Variant, "v"))
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build for %s/%s: %w\n%s", plat.OS, plat.Architecture, err, b)
	}
	return nil
}

// platformImage is one platform's image: one layer on nothing.
func platformImage(o Options, plat v1.Platform, bin, ca []byte) (v1.Image, ImageInfo, error) {
	info := ImageInfo{Platform: plat.String(), BinarySize: int64(len(bin))}
	raw, err := rootFS(bin, ca, o.Epoch)
	if err != nil {
		return nil, info, err
	}
	info.LayerDiskSize = int64(len(raw))
	gz, err := gzipBytes(raw)
	if err != nil {
		return nil, info, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, info, err
	}
	info.LayerSize = int64(len(gz))

	created := v1.Time{Time: o.Epoch}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   created,
			CreatedBy: "tools/image: /gatehouse, CA certificates, nonroot user",
			Comment:   "built without a base image",
		},
	})
	if err != nil {
		return nil, info, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, info, err
	}
	cf = cf.DeepCopy()
	cf.Created = created
	cf.OS = plat.OS
	cf.Architecture = plat.Architecture
	cf.Variant = plat.Variant
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", UID, GID),
		Entrypoint: []string{BinaryPath},
		Cmd:        []string{"serve"},
		Env: []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", // as in distroless
			"SSL_CERT_FILE=" + CAFile,
		},
		WorkingDir: HomeDir,
		ExposedPorts: map[string]struct{}{
			"4180/tcp": {}, // server.listen
			"9180/tcp": {}, // server.metrics_listen
		},
		Labels: map[string]string{
			"org.opencontainers.image.title":    "gatehouse",
			"org.opencontainers.image.version":  o.Version,
			"org.opencontainers.image.revision": o.Commit,
			"org.opencontainers.image.source":   o.SourceURL,
		},
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, info, err
	}
	if info.Digest, err = img.Digest(); err != nil {
		return nil, info, err
	}
	return img, info, nil
}

// Files of the image besides the binary and the CA bundle, as in the
// distroless "nonroot" images.
const (
	passwd = `root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
`
	group = `root:x:0:
nobody:x:65534:
nonroot:x:65532:
`
	// Go's resolver reads it: /etc/hosts first, then DNS.
	nsswitch = "hosts: files dns\n"
)

// rootFS is the layer's uncompressed tar, in a fixed order with fixed
// owners, modes and times.
func rootFS(bin, ca []byte, mtime time.Time) ([]byte, error) {
	type entry struct {
		name     string
		mode     int64
		uid, gid int
		data     []byte // nil: a directory
	}
	entries := []entry{
		{name: "etc/", mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/nsswitch.conf", mode: 0o644, data: []byte(nsswitch)},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/ssl/", mode: 0o755},
		{name: "etc/ssl/certs/", mode: 0o755},
		{name: strings.TrimPrefix(CAFile, "/"), mode: 0o644, data: ca},
		{name: strings.TrimPrefix(BinaryPath, "/"), mode: 0o755, data: bin},
		{name: "home/", mode: 0o755},
		{name: strings.TrimPrefix(HomeDir, "/") + "/", mode: 0o700, uid: UID, gid: GID},
		{name: "tmp/", mode: 0o1777}, // sticky, world-writable
	}
	names := map[int]string{0: "root", UID: "nonroot"}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.gid,
			Uname:   names[e.uid],
			Gname:   names[e.gid],
			ModTime: mtime,
		}
		if e.data == nil {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func gzipBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeArchive tars the layout directory (sorted, fixed times and owners)
// into out, atomically.
func writeArchive(dir, out string, mtime time.Time) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return 0, err
	}
	f, err := os.CreateTemp(filepath.Dir(out), ".gatehouse-image-*.tmp")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: mtime, Mode: 0o644, Typeflag: tar.TypeReg}
		if d.IsDir() {
			h.Name += "/"
			h.Mode = 0o755
			h.Typeflag = tar.TypeDir
			return tw.WriteHeader(h)
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file", path)
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		fi, err := src.Stat()
		if err != nil {
			return err
		}
		h.Size = fi.Size()
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err = io.Copy(tw, src)
		return err
	})
	if err != nil {
		return 0, err
	}
	if err := tw.Close(); err != nil {
		return 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if err := f.Chmod(0o644); err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	return fi.Size(), os.Rename(f.Name(), out)
}
