package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/x509"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// go test -args -archive ../../bin/gatehouse-image.oci.tar -version V
// -commit C tests the archive `make image` wrote (and that it holds
// version V, commit C); without -archive the test builds one itself.
var (
	archiveFlag = flag.String("archive", "", "OCI archive to test (default: build one)")
	versionFlag = flag.String("version", "", "with -archive: the version the image must hold")
	commitFlag  = flag.String("commit", "", "with -archive: the commit the image must hold")
)

// What the test builds with when it builds.
const (
	testVersion = "v9.8.7-imagetest"
	testCommit  = "0123abc"
)

var (
	archivePath string // the archive under test
	built       bool   // the test built it, with testVersion/testCommit
	wantVersion string // "": not checked
	wantCommit  string
	layoutDir   string        // the archive, unpacked
	index       v1.ImageIndex // the multi-platform index
)

func TestMain(m *testing.M) {
	flag.Parse()
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "setup:", err)
		code = 1
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	tmp, err := os.MkdirTemp("", "gatehouse-image-test-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)

	archivePath, wantVersion, wantCommit = *archiveFlag, *versionFlag, *commitFlag
	if archivePath == "" {
		wantVersion, wantCommit = testVersion, testCommit
		epoch, err := sourceDateEpoch(-1, "../..")
		if err != nil {
			return 0, err
		}
		start := time.Now()
		res, err := Build(Options{
			Src:       "../..",
			Out:       filepath.Join(tmp, "gatehouse-image.oci.tar"),
			Version:   testVersion,
			Commit:    testCommit,
			Platforms: []string{"linux/amd64", "linux/arm64"},
			CACerts:   "/etc/ssl/certs/ca-certificates.crt",
			SourceURL: DefaultSource,
			Epoch:     epoch,
		})
		if err != nil {
			return 0, err
		}
		fmt.Printf("built in %s:\n", time.Since(start).Round(time.Millisecond))
		res.Print(os.Stdout)
		archivePath, built = res.Archive, true
	}
	layoutDir = filepath.Join(tmp, "layout")
	if err := untarLayout(archivePath, layoutDir); err != nil {
		return 0, fmt.Errorf("unpacking %s: %w", archivePath, err)
	}
	lp, err := layout.FromPath(layoutDir)
	if err != nil {
		return 0, err
	}
	top, err := lp.ImageIndex()
	if err != nil {
		return 0, err
	}
	im, err := top.IndexManifest()
	if err != nil {
		return 0, err
	}
	if len(im.Manifests) != 1 || im.Manifests[0].MediaType != types.OCIImageIndex {
		return 0, fmt.Errorf("index.json should name one image index, has %+v", im.Manifests)
	}
	if index, err = top.ImageIndex(im.Manifests[0].Digest); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// untarLayout unpacks the OCI archive (plain files and directories only).
func untarLayout(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p, err := within(dir, h.Name)
		if err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			err = writeFrom(p, tr, 0o644)
		default:
			err = fmt.Errorf("%s: unexpected tar entry type %q", h.Name, h.Typeflag)
		}
		if err != nil {
			return err
		}
	}
}

// within is name inside dir, refusing names that leave it.
func within(dir, name string) (string, error) {
	if slices.Contains(strings.Split(name, "/"), "..") {
		return "", fmt.Errorf("%q may leave the directory", name)
	}
	return filepath.Join(dir, filepath.FromSlash(path.Clean("/"+name))), nil
}

func writeFrom(p string, r io.Reader, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// imageFor finds the index's image for os/arch.
func imageFor(t *testing.T, arch string) (v1.Image, *v1.Descriptor) {
	t.Helper()
	im, err := index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == arch {
			img, err := index.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img, &d
		}
	}
	t.Fatalf("no linux/%s image in the index", arch)
	return nil, nil
}

func configFile(t *testing.T, img v1.Image) *v1.ConfigFile {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cf
}

var arches = []string{"amd64", "arm64"}

func TestIndex(t *testing.T) {
	mt, err := index.MediaType()
	if err != nil || mt != types.OCIImageIndex {
		t.Errorf("index media type %q (%v), want %q", mt, err, types.OCIImageIndex)
	}
	im, err := index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range im.Manifests {
		if d.MediaType != types.OCIManifestSchema1 {
			t.Errorf("%s: media type %q", d.Digest, d.MediaType)
		}
		if d.Platform == nil {
			t.Errorf("%s: no platform", d.Digest)
			continue
		}
		got = append(got, d.Platform.String())
	}
	slices.Sort(got)
	if want := []string{"linux/amd64", "linux/arm64/v8"}; !slices.Equal(got, want) {
		t.Errorf("index platforms %v, want %v", got, want)
	}
}

func TestArchiveNamesTheImage(t *testing.T) {
	lp, err := layout.FromPath(layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	ann := im.Manifests[0].Annotations
	full, tag := ann[AnnotationContainerdRef], ann[AnnotationRefName]
	if tag == "" || !strings.HasSuffix(full, ":"+tag) {
		t.Errorf("annotations %v: want %s = REPO:TAG and %s = TAG", ann, AnnotationContainerdRef, AnnotationRefName)
	}
	if built {
		if want := DefaultRepository + ":" + strings.TrimPrefix(testVersion, "v"); full != want {
			t.Errorf("image name %q, want %q", full, want)
		}
	}
	t.Logf("%s = %s", AnnotationContainerdRef, full)
}

func TestConfig(t *testing.T) {
	for _, arch := range arches {
		t.Run(arch, func(t *testing.T) {
			img, desc := imageFor(t, arch)
			cf := configFile(t, img)
			if cf.OS != "linux" || cf.Architecture != arch || cf.Variant != desc.Platform.Variant {
				t.Errorf("config platform %s/%s/%s, index says %s", cf.OS, cf.Architecture, cf.Variant, desc.Platform)
			}
			c := cf.Config
			if c.User != "65532:65532" {
				t.Errorf("User %q, want 65532:65532", c.User)
			}
			if !slices.Equal(c.Entrypoint, []string{"/gatehouse"}) || !slices.Equal(c.Cmd, []string{"serve"}) {
				t.Errorf("Entrypoint %q Cmd %q, want [/gatehouse] [serve]", c.Entrypoint, c.Cmd)
			}
			if c.WorkingDir != "/home/nonroot" {
				t.Errorf("WorkingDir %q", c.WorkingDir)
			}
			if !slices.Contains(c.Env, "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt") {
				t.Errorf("Env %q lacks SSL_CERT_FILE", c.Env)
			}
			for _, p := range []string{"4180/tcp", "9180/tcp"} {
				if _, ok := c.ExposedPorts[p]; !ok {
					t.Errorf("ExposedPorts %v lacks %s", c.ExposedPorts, p)
				}
			}
			for _, l := range []string{"version", "revision", "source", "title"} {
				if c.Labels["org.opencontainers.image."+l] == "" {
					t.Errorf("label org.opencontainers.image.%s missing: %v", l, c.Labels)
				}
			}
			if wantVersion != "" && c.Labels["org.opencontainers.image.version"] != wantVersion {
				t.Errorf("labels %v, want version %s", c.Labels, wantVersion)
			}
			if wantCommit != "" && c.Labels["org.opencontainers.image.revision"] != wantCommit {
				t.Errorf("labels %v, want revision %s", c.Labels, wantCommit)
			}
			layers, err := img.Layers()
			if err != nil || len(layers) != 1 {
				t.Fatalf("%d layers (%v), want 1", len(layers), err)
			}
			if mt, _ := layers[0].MediaType(); mt != types.OCILayer {
				t.Errorf("layer media type %q", mt)
			}
		})
	}
}

// entry is what a layer holds at a path.
type entry struct {
	mode     os.FileMode
	uid, gid int
	data     []byte
	mtime    time.Time
}

// eachLayerEntry calls fn with every tar entry of the image's layers, in
// order; fn may read the entry's content from r.
func eachLayerEntry(t *testing.T, img v1.Image, fn func(h *tar.Header, r io.Reader)) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			fn(h, tr)
		}
		rc.Close()
	}
}

// layerEntries reads the image's layers in order (later layers win).
func layerEntries(t *testing.T, img v1.Image) map[string]*entry {
	t.Helper()
	out := map[string]*entry{}
	eachLayerEntry(t, img, func(h *tar.Header, r io.Reader) {
		e := &entry{mode: h.FileInfo().Mode(), uid: h.Uid, gid: h.Gid, mtime: h.ModTime}
		if h.Typeflag == tar.TypeReg {
			var err error
			if e.data, err = io.ReadAll(r); err != nil {
				t.Fatal(err)
			}
		}
		out[path.Clean("/"+h.Name)] = e
	})
	return out
}

func TestLayerContents(t *testing.T) {
	want := map[string]struct {
		mode     os.FileMode
		uid, gid int
	}{
		"/gatehouse":                         {0o755, 0, 0},
		"/etc":                               {os.ModeDir | 0o755, 0, 0},
		"/etc/passwd":                        {0o644, 0, 0},
		"/etc/group":                         {0o644, 0, 0},
		"/etc/nsswitch.conf":                 {0o644, 0, 0},
		"/etc/ssl":                           {os.ModeDir | 0o755, 0, 0},
		"/etc/ssl/certs":                     {os.ModeDir | 0o755, 0, 0},
		"/etc/ssl/certs/ca-certificates.crt": {0o644, 0, 0},
		"/home":                              {os.ModeDir | 0o755, 0, 0},
		"/home/nonroot":                      {os.ModeDir | 0o700, 65532, 65532},
		"/tmp":                               {os.ModeDir | os.ModeSticky | 0o777, 0, 0},
	}
	for _, arch := range arches {
		t.Run(arch, func(t *testing.T) {
			img, _ := imageFor(t, arch)
			cf := configFile(t, img)
			got := layerEntries(t, img)
			for p, w := range want {
				e, ok := got[p]
				if !ok {
					t.Errorf("%s missing", p)
					continue
				}
				if e.mode != w.mode || e.uid != w.uid || e.gid != w.gid {
					t.Errorf("%s: %v %d:%d, want %v %d:%d", p, e.mode, e.uid, e.gid, w.mode, w.uid, w.gid)
				}
			}
			for p, e := range got {
				if _, ok := want[p]; !ok {
					t.Errorf("unexpected %s in the layer", p)
				}
				if !e.mtime.Equal(cf.Created.Time) {
					t.Errorf("%s: mtime %s, want the image's creation time %s", p, e.mtime, cf.Created.Time)
				}
			}
			if e := got["/etc/passwd"]; e != nil && !bytes.Contains(e.data, []byte("\nnonroot:x:65532:65532:nonroot:/home/nonroot:")) {
				t.Errorf("/etc/passwd has no nonroot user:\n%s", e.data)
			}
			if e := got["/etc/group"]; e != nil && !bytes.Contains(e.data, []byte("\nnonroot:x:65532:")) {
				t.Errorf("/etc/group has no nonroot group:\n%s", e.data)
			}
			if e := got["/etc/ssl/certs/ca-certificates.crt"]; e != nil && !x509.NewCertPool().AppendCertsFromPEM(e.data) {
				t.Errorf("the CA bundle holds no certificate")
			}
		})
	}
}

// TestStaticBinary: no interpreter, no shared libraries, built as the
// Dockerfile builds it.
func TestStaticBinary(t *testing.T) {
	machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for _, arch := range arches {
		t.Run(arch, func(t *testing.T) {
			img, _ := imageFor(t, arch)
			bin := layerEntries(t, img)["/gatehouse"]
			if bin == nil {
				t.Fatal("no /gatehouse")
			}
			f, err := elf.NewFile(bytes.NewReader(bin.data))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Machine != machine[arch] {
				t.Errorf("ELF machine %s, want %s", f.Machine, machine[arch])
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
					t.Errorf("has a %s program header: dynamically linked", p.Type)
				}
			}
			if libs, _ := f.ImportedLibraries(); len(libs) != 0 {
				t.Errorf("needs shared libraries %v", libs)
			}
			if f.Section(".symtab") != nil {
				t.Errorf("has a symbol table: not built with -s")
			}
			bi, err := buildinfo.Read(bytes.NewReader(bin.data))
			if err != nil {
				t.Fatal(err)
			}
			settings := map[string]string{}
			for _, s := range bi.Settings {
				settings[s.Key] = s.Value
			}
			for k, v := range map[string]string{"CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": arch, "-trimpath": "true"} {
				if settings[k] != v {
					t.Errorf("build setting %s=%q, want %q", k, settings[k], v)
				}
			}
			if bi.Path != "github.com/gatehouse/gatehouse/cmd/gatehouse" {
				t.Errorf("main package %q", bi.Path)
			}
			// -trimpath keeps -ldflags out of the build info: look for
			// the stamped version itself.
			if v := configFile(t, img).Config.Labels["org.opencontainers.image.version"]; !bytes.Contains(bin.data, []byte(v)) {
				t.Errorf("the binary does not hold the version %q", v)
			}
		})
	}
}

// unpack writes the image's layers into dir as a container runtime would:
// owners, modes (sticky bits too) and times from the layer tar.
func unpack(t *testing.T, img v1.Image, dir string) {
	t.Helper()
	type dirTime struct {
		path  string
		mtime time.Time
	}
	var dirs []dirTime // directory times are set last: writing into them changes them
	eachLayerEntry(t, img, func(h *tar.Header, r io.Reader) {
		if strings.HasPrefix(path.Base(h.Name), ".wh.") {
			t.Fatalf("%s: whiteouts are not expected in a single-layer image", h.Name)
		}
		p, err := within(dir, h.Name)
		if err != nil {
			t.Fatal(err)
		}
		mode := h.FileInfo().Mode()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				t.Fatal(err)
			}
			dirs = append(dirs, dirTime{p, h.ModTime})
		case tar.TypeReg:
			if err := writeFrom(p, r, 0o600); err != nil {
				t.Fatal(err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
				t.Fatal(err)
			}
			return
		default:
			t.Fatalf("%s: unexpected tar entry type %q", h.Name, h.Typeflag)
		}
		// chown before chmod: chown clears set-id bits.
		if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode&(os.ModePerm|os.ModeSticky|os.ModeSetuid|os.ModeSetgid)); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, h.ModTime, h.ModTime); err != nil {
			t.Fatal(err)
		}
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chtimes(dirs[i].path, dirs[i].mtime, dirs[i].mtime); err != nil {
			t.Fatal(err)
		}
	}
}

// container runs the image's entrypoint with args, chrooted into root as
// the image's user, in its working directory, with its environment plus
// env: what `docker run IMAGE args...` does, minus namespaces.
type container struct {
	root string
	cf   *v1.ConfigFile
}

func (c container) command(ctx context.Context, env []string, args ...string) *exec.Cmd {
	var uid, gid uint32
	if _, err := fmt.Sscanf(c.cf.Config.User, "%d:%d", &uid, &gid); err != nil {
		panic("User " + c.cf.Config.User + " is not UID:GID")
	}
	if len(args) == 0 {
		args = c.cf.Config.Cmd
	}
	argv := append(slices.Clone(c.cf.Config.Entrypoint), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Path = argv[0] // resolved inside the chroot, not on the host
	cmd.Dir = c.cf.Config.WorkingDir
	cmd.Env = append(append(slices.Clone(c.cf.Config.Env), "HOME=/home/nonroot"), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     c.root,
		Credential: &syscall.Credential{Uid: uid, Gid: gid},
		Pdeathsig:  syscall.SIGKILL,
	}
	return cmd
}

// The README's smallest configuration, from the environment.
var minimalEnv = []string{
	"GATEHOUSE_SERVER_PUBLIC_URL=https://dash.example.com",
	"GATEHOUSE_UPSTREAM_URL=http://127.0.0.1:3000",
	"GATEHOUSE_SESSION_SECRET=0123456789abcdef0123456789abcdef-image-test",
	"GATEHOUSE_AUTH_ALLOWED_DOMAINS=example.com",
	"GATEHOUSE_AUTH_OIDC_CORP_ISSUER_URL=https://sso.example.com",
	"GATEHOUSE_AUTH_OIDC_CORP_CLIENT_ID=gatehouse",
	"GATEHOUSE_AUTH_OIDC_CORP_CLIENT_SECRET=oidc-client-secret",
}

// TestRunsAsNonroot unpacks the host architecture's image and runs
// /gatehouse in it as 65532:65532: version, check, and serve answering
// /ping, /ready and /metrics, then stopping cleanly on SIGTERM.
func TestRunsAsNonroot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chroot and a change of user); run the image test as root")
	}
	if !slices.Contains(arches, runtime.GOARCH) {
		t.Skipf("no image for the host architecture %s", runtime.GOARCH)
	}
	img, _ := imageFor(t, runtime.GOARCH)
	cf := configFile(t, img)
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	unpack(t, img, root)
	if fi, err := os.Stat(filepath.Join(root, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Fatalf("unpacked /tmp: %v %v", fi.Mode(), err)
	}
	c := container{root: root, cf: cf}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("version", func(t *testing.T) {
		out, err := c.command(ctx, nil, "version").CombinedOutput()
		if err != nil {
			t.Fatalf("gatehouse version: %v\n%s", err, out)
		}
		want := fmt.Sprintf("gatehouse %s (commit %s, go", cf.Config.Labels["org.opencontainers.image.version"], cf.Config.Labels["org.opencontainers.image.revision"])
		if !strings.Contains(string(out), want) {
			t.Errorf("gatehouse version printed %q, want it to contain %q", out, want)
		}
		if wantVersion != "" && !strings.Contains(string(out), "gatehouse "+wantVersion+" ") {
			t.Errorf("gatehouse version printed %q, want version %s", out, wantVersion)
		}
		if wantCommit != "" && !strings.Contains(string(out), "(commit "+wantCommit+",") {
			t.Errorf("gatehouse version printed %q, want commit %s", out, wantCommit)
		}
		t.Logf("%s", bytes.TrimSpace(out))
	})

	t.Run("check", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		cmd := c.command(ctx, minimalEnv, "check")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("gatehouse check: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
		}
		if !strings.Contains(stdout.String(), "public_url: https://dash.example.com") {
			t.Errorf("gatehouse check printed:\n%s", stdout.String())
		}
		if strings.Contains(stdout.String(), "0123456789abcdef0123456789abcdef") {
			t.Errorf("gatehouse check printed the session secret")
		}
	})

	t.Run("check rejects a bad config", func(t *testing.T) {
		out, err := c.command(ctx, []string{"GATEHOUSE_SESSION_SECRET=short"}, "check").CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("gatehouse check with a bad config: %v, want exit code 2\n%s", err, out)
		}
	})

	// serve as the Helm chart runs it: its args, a ConfigMap with the
	// config, a Secret (0440, group fsGroup 65532) with the secrets, an
	// emptyDir on /tmp, and readOnlyRootFilesystem: nothing else writable.
	t.Run("serve as the chart runs it", func(t *testing.T) {
		port, metricsPort := freePort(t), freePort(t)
		// GitHub rather than OIDC: it needs no discovery, so /ready
		// can pass offline.
		config := "server:\n  public_url: https://dash.example.com\n  listen: 127.0.0.1:" + port +
			"\n  metrics_listen: 127.0.0.1:" + metricsPort +
			"\nupstream:\n  url: http://127.0.0.1:3000\nauth:\n  allowed_domains: [example.com]\n" +
			"  github:\n    enabled: true\n    client_id: image-test\n"
		mount := func(p, data string, mode os.FileMode, gid int) {
			t.Helper()
			p = filepath.Join(root, p)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(data), mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(p, 0, gid); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
		}
		mount("etc/gatehouse/config/config.yaml", config, 0o644, 0)
		mount("etc/gatehouse/secrets/session-secret", "0123456789abcdef0123456789abcdef-image-test", 0o440, 65532)
		mount("etc/gatehouse/secrets/github-client-secret", "image-test-secret", 0o440, 65532)
		home := filepath.Join(root, "home/nonroot")
		if err := os.Chown(home, 0, 0); err != nil { // read-only root: the home is not writable either
			t.Fatal(err)
		}
		if err := os.Chmod(home, 0o555); err != nil {
			t.Fatal(err)
		}
		env := []string{
			"GATEHOUSE_SESSION_SECRET_FILE=/etc/gatehouse/secrets/session-secret",
			"GATEHOUSE_AUTH_GITHUB_CLIENT_SECRET_FILE=/etc/gatehouse/secrets/github-client-secret",
		}
		var logs bytes.Buffer
		cmd := c.command(ctx, env, "serve", "--config", "/etc/gatehouse/config/config.yaml")
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		defer func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				<-done
			}
			if t.Failed() {
				t.Logf("gatehouse serve output:\n%s", logs.String())
			}
		}()

		get := func(url string) (int, error) {
			resp, err := http.Get(url)
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, err := get("http://127.0.0.1:" + port + "/ping")
			if err == nil && code == http.StatusOK {
				break
			}
			select {
			case err := <-done:
				t.Fatalf("gatehouse serve exited: %v", err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("/ping: %d %v", code, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, u := range []string{"http://127.0.0.1:" + port + "/ready", "http://127.0.0.1:" + metricsPort + "/metrics"} {
			if code, err := get(u); err != nil || code != http.StatusOK {
				t.Errorf("GET %s: %d %v", u, code, err)
			}
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gatehouse serve after SIGTERM: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("gatehouse serve did not stop on SIGTERM")
		}
	})
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}
