// Command release builds tini-hot's release files into one directory
// (go -C release run . -o ../dist):
//
//   - a static binary for each of linux amd64, arm64, arm (v7), 386,
//     ppc64le, s390x and riscv64, stamped with the version and the commit
//     (`tini-hot version` prints them, with the Go version);
//   - a .deb, an .rpm and an .apk package of each, made with nfpm;
//   - SHA256SUMS over all of them;
//   - with podman (-image, the default), the multi-arch image
//     localhost/tini-hot:VERSION, a manifest list of one FROM scratch
//     image per architecture, also written as an OCI archive.
//
// It is a module of its own, so that the packager's dependencies never
// reach tini-hot's.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/apk"
	_ "github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm"
)

// A target is one architecture tini-hot is released for.
type target struct {
	goarch, goarm string
}

// targets are the release's architectures.
var targets = []target{
	{"amd64", ""}, {"arm64", ""}, {"arm", "7"}, {"386", ""},
	{"ppc64le", ""}, {"s390x", ""}, {"riscv64", ""},
}

// name is the target in file names: arm64, armv7.
func (t target) name() string { return t.goarch + vIf(t.goarm) }

// nfpmArch is the target as nfpm names it: arm7 for arm v7.
func (t target) nfpmArch() string { return t.goarch + t.goarm }

// platform is the target as an OCI platform: linux/arm/v7.
func (t target) platform() string {
	p := "linux/" + t.goarch
	if t.goarm != "" {
		p += "/v" + t.goarm
	}
	return p
}

func vIf(goarm string) string {
	if goarm == "" {
		return ""
	}
	return "v" + goarm
}

// formats are the packages made for each target.
var formats = []string{"deb", "rpm", "apk"}

func main() {
	out := flag.String("o", "", "write the release files into `DIR` (created; files of the same name are replaced)")
	version := flag.String("version", "", "the release's version, e.g. v1.2.0 (default: the tag at HEAD, else v0.0.0-dev.COMMIT)")
	image := flag.Bool("image", true, "also build the multi-arch image with podman")
	imageName := flag.String("image-name", "localhost/tini-hot", "the image's name; it is tagged VERSION")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: go -C release run . -o DIR [-version V] [-image=false] [-image-name NAME]")
		os.Exit(2)
	}
	if err := run(*out, *version, *image, *imageName); err != nil {
		fmt.Fprintf(os.Stderr, "release: %v\n", err)
		os.Exit(1)
	}
}

func run(out, version string, image bool, imageName string) error {
	start := time.Now()
	root, err := git("", "rev-parse", "--show-toplevel")
	if err != nil {
		return fmt.Errorf("not in tini-hot's repository: %w", err)
	}
	commit, err := git(root, "rev-parse", "HEAD")
	if err != nil {
		return err
	}
	if status, err := git(root, "status", "--porcelain", "--untracked-files=no"); err == nil && status != "" {
		commit += "-dirty"
	}
	when, err := git(root, "log", "-1", "--format=%ct")
	if err != nil {
		return err
	}
	var secs int64
	if _, err := fmt.Sscan(when, &secs); err != nil {
		return fmt.Errorf("commit time %q: %w", when, err)
	}
	mtime := time.Unix(secs, 0).UTC()
	if version == "" {
		version = "v0.0.0-dev." + commit[:12]
		if tag, err := git(root, "describe", "--tags", "--exact-match"); err == nil {
			version = tag
		}
	}
	if !strings.HasPrefix(version, "v") {
		return fmt.Errorf("-version %q: want v MAJOR.MINOR.PATCH, e.g. v1.2.0", version)
	}
	if out, err = filepath.Abs(out); err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	fmt.Printf("tini-hot %s (commit %s) into %s\n", version, commit, out)

	var files []string
	bins := make([]string, len(targets)) // by index in targets
	for i, t := range targets {
		bin := filepath.Join(out, fmt.Sprintf("tini-hot_%s_linux_%s", version, t.name()))
		if err := build(root, t, version, commit, bin); err != nil {
			return err
		}
		bins[i] = bin
		files = append(files, bin)
		for _, format := range formats {
			pkg, err := pack(format, t, version, mtime, bin, out)
			if err != nil {
				return fmt.Errorf("%s package for %s: %w", format, t.name(), err)
			}
			files = append(files, pkg)
		}
	}
	if image {
		archive, err := buildImage(imageName+":"+version, out, version, bins)
		if err != nil {
			return err
		}
		files = append(files, archive)
	}
	sums, err := writeSums(out, files)
	if err != nil {
		return err
	}
	files = append(files, sums)
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return err
		}
		fmt.Printf("%12d  %s\n", fi.Size(), filepath.Base(f))
	}
	if image {
		fmt.Printf("image %s:%s, for %d architectures\n", imageName, version, len(targets))
	}
	fmt.Printf("done in %v\n", time.Since(start).Round(time.Second))
	return nil
}

// git runs git in dir ("" for here) and returns its trimmed output.
func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(b)), nil
}

// build builds tini-hot for t into bin: static, stripped, stamped.
func build(root string, t target, version, commit, bin string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", fmt.Sprintf("-s -w -X main.version=%s -X main.commit=%s", version, commit),
		"-o", bin, "./cmd/tini-hot")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+t.goarch, "GOARM="+t.goarm)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build for %s: %w: %s", t.name(), err, b)
	}
	return nil
}

// pack writes the format package of bin for t into dir.
func pack(format string, t target, version string, mtime time.Time, bin, dir string) (string, error) {
	cfg := nfpm.Config{Info: nfpm.Info{
		Name:        "tini-hot",
		Arch:        t.nfpmArch(),
		Platform:    "linux",
		Version:     version,
		Section:     "admin",
		Priority:    "optional",
		Maintainer:  "tini-hot developers <tini-hot@users.noreply.github.com>",
		Description: "Container init (PID 1) with zero-downtime in-place upgrades: reaps zombies, forwards signals, holds the listening sockets and upgrades the application on them.",
		Vendor:      "tini-hot",
		Homepage:    "https://github.com/tini-hot/tini-hot",
		// The commit's time, so that a package is the same however often
		// it is made.
		MTime: mtime,
		Overridables: nfpm.Overridables{Contents: files.Contents{
			{Source: bin, Destination: "/usr/bin/tini-hot", FileInfo: &files.ContentFileInfo{Mode: 0o755, MTime: mtime}},
		}},
	}}
	info, err := cfg.Get(format)
	if err != nil {
		return "", err
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.Validate(info); err != nil {
		return "", err
	}
	packager, err := nfpm.Get(format)
	if err != nil {
		return "", err
	}
	name := filepath.Join(dir, packager.ConventionalFileName(info))
	f, err := os.Create(name)
	if err != nil {
		return "", err
	}
	if err := packager.Package(info, f); err != nil {
		f.Close()
		return "", err
	}
	return name, f.Close()
}

// buildImage builds one FROM scratch image per target from its binary
// (bins, in the order of targets), puts them in the manifest list name,
// and writes the list with its images as an OCI archive into out.
func buildImage(name, out, version string, bins []string) (string, error) {
	if _, err := exec.LookPath("podman"); err != nil {
		return "", errors.New("podman is needed for the image (Debian package podman), or give -image=false")
	}
	ctx, err := os.MkdirTemp("", "tini-hot-release-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(ctx)
	const containerfile = "FROM scratch\nCOPY tini-hot /tini-hot\nENTRYPOINT [\"/tini-hot\"]\n"
	if err := os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte(containerfile), 0o644); err != nil {
		return "", err
	}
	// A list of the same name from an earlier run is replaced.
	_ = exec.Command("podman", "manifest", "rm", name).Run()
	if err := podman("manifest", "create", name); err != nil {
		return "", err
	}
	for i, t := range targets {
		if err := copyFile(bins[i], filepath.Join(ctx, "tini-hot")); err != nil {
			return "", err
		}
		// FROM scratch and COPY run nothing: no emulator is needed.
		tag := name + "-" + t.name()
		if err := podman("build", "--layers=false", "--platform", t.platform(), "-t", tag, ctx); err != nil {
			return "", err
		}
		if err := podman("manifest", "add", name, "containers-storage:"+tag); err != nil {
			return "", err
		}
	}
	archive := filepath.Join(out, fmt.Sprintf("tini-hot_%s_image.oci.tar", version))
	_ = os.Remove(archive)
	if err := podman("manifest", "push", "--all", name, "oci-archive:"+archive); err != nil {
		return "", err
	}
	return archive, nil
}

func podman(args ...string) error {
	if b, err := exec.Command("podman", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, b)
	}
	return nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}

// writeSums writes SHA256SUMS for files into out, as sha256sum -c reads it.
func writeSums(out string, files []string) (string, error) {
	var b strings.Builder
	for _, f := range files {
		h := sha256.New()
		r, err := os.Open(f)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, r)
		r.Close()
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(h.Sum(nil)), filepath.Base(f))
	}
	sums := filepath.Join(out, "SHA256SUMS")
	return sums, os.WriteFile(sums, []byte(b.String()), 0o644)
}
