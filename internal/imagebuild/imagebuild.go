// Package imagebuild builds the repository's Dockerfile targets with
// podman on an offline machine, for the tests that run the images (the
// podman e2e and e2e/k8s). The Dockerfile's build stage needs a Go image,
// which an offline machine cannot pull: Base makes one from the host's Go
// and static busybox, and the build reaches the module proxy through the
// host network.
package imagebuild

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BaseImage is the offline stand-in for the Dockerfile's GO_IMAGE and
// BUSYBOX_IMAGE.
const BaseImage = "localhost/tini-hot-e2e-build:local"

// Base imports BaseImage unless it exists: the host's Go (GOROOT),
// /bin/busybox (Debian package busybox-static) and CA certificates.
func Base() error {
	if exec.Command("podman", "image", "exists", BaseImage).Run() == nil {
		return nil // from an earlier run on this machine
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		return fmt.Errorf("a static busybox at /bin/busybox (Debian package busybox-static): %w", err)
	}
	stage, err := os.MkdirTemp("", "tini-hot-build-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	if err := os.Mkdir(filepath.Join(stage, "tmp"), 0o1777); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(stage, "tmp"), 0o1777); err != nil {
		return err
	}
	goroot, err := goEnv("GOROOT")
	if err != nil {
		return err
	}
	script := fmt.Sprintf(`set -e
mkdir -p %[1]s/bin %[1]s/usr/local
cp /bin/busybox %[1]s/bin/busybox
ln -s busybox %[1]s/bin/sh
tar -cf - -C %[1]s . -C / %[2]s etc/ssl/certs/ca-certificates.crt | podman import - %[3]s`,
		stage, strings.TrimPrefix(goroot, "/"), BaseImage)
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		return fmt.Errorf("import %s: %v: %s", BaseImage, err, out)
	}
	return nil
}

// Build builds the Dockerfile's target in the repository at repo as tag,
// tini-hot stamped with version, after Base.
func Build(repo, target, tag, version string) error {
	if err := Base(); err != nil {
		return err
	}
	goproxy, err := goEnv("GOPROXY")
	if err != nil {
		return err
	}
	out, err := exec.Command("podman", "build", "--network=host", "--target", target, "-t", tag,
		"--build-arg", "GO_IMAGE="+BaseImage, "--build-arg", "BUSYBOX_IMAGE="+BaseImage,
		"--build-arg", "GOPROXY="+goproxy, "--build-arg", "VERSION="+version, repo).CombinedOutput()
	if err != nil {
		return fmt.Errorf("podman build --target %s: %v: %s", target, err, out)
	}
	return nil
}

func goEnv(name string) (string, error) {
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}
