// Package imagebuild builds the repository's Dockerfile targets with
// podman on an offline machine, for the tests that run the images (the
// podman e2e and e2e/k8s). The Dockerfile's build stage needs a Go image,
// which an offline machine cannot pull: Base makes one from the host's Go
// and static busybox, and the build reaches the module proxy through the
// host network.
//
// The tests leave the host as they found it: podman runs with a
// configuration of their own (CONTAINERS_CONF, see Podman), never the
// host's /etc/containers, and RemoveBuilt removes every image this
// process built.
package imagebuild

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// containersConf is podman's configuration for the tests: runc, as crun
// fails on hosts with hybrid cgroups (v1 and v2 both mounted), and
// ulimits every host grants (podman's default raises nofile above what
// some hosts allow).
const containersConf = `[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
`

var (
	confOnce sync.Once
	confPath string
	confErr  error

	builtMu sync.Mutex
	built   []string // the images this process made, in order
	lists   []string // the manifest lists it made
)

// Env is the environment of a podman command with the tests'
// configuration: CONTAINERS_CONF makes podman read that file alone, so
// that the host's configuration is neither needed nor changed.
func Env() ([]string, error) {
	confOnce.Do(func() {
		f, err := os.CreateTemp("", "tini-hot-containers-*.conf")
		if err != nil {
			confErr = err
			return
		}
		_, confErr = f.WriteString(containersConf)
		confErr = errors.Join(confErr, f.Close())
		confPath = f.Name()
	})
	if confErr != nil {
		return nil, fmt.Errorf("podman configuration for the tests: %w", confErr)
	}
	return append(os.Environ(), "CONTAINERS_CONF="+confPath), nil
}

// Podman is a podman command with the tests' configuration (Env).
func Podman(args ...string) (*exec.Cmd, error) {
	env, err := Env()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("podman", args...)
	cmd.Env = env
	return cmd, nil
}

// run runs podman with args and returns its combined output.
func run(args ...string) ([]byte, error) {
	cmd, err := Podman(args...)
	if err != nil {
		return nil, err
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// Made records that this process made image (built, imported or
// tagged), for RemoveBuilt.
func Made(image string) {
	builtMu.Lock()
	defer builtMu.Unlock()
	built = append(built, image)
}

// MadeList records that this process made the manifest list name, for
// RemoveBuilt.
func MadeList(name string) {
	builtMu.Lock()
	defer builtMu.Unlock()
	lists = append(lists, name)
}

// RemoveBuilt removes the manifest lists and images this process made
// (Build, Base, Made, MadeList), and the tests' podman configuration.
// Images that were there before stay.
func RemoveBuilt() error {
	builtMu.Lock()
	images, made := built, lists
	built, lists = nil, nil
	builtMu.Unlock()
	var errs []error
	// Lists first: podman rmi refuses a list and its images together.
	for _, l := range made {
		if _, err := run("image", "exists", l); err != nil {
			continue // never made, or gone
		}
		if _, err := run("manifest", "rm", l); err != nil {
			errs = append(errs, err)
		}
	}
	if len(images) > 0 {
		if _, err := run(append([]string{"rmi", "--force", "--ignore"}, images...)...); err != nil {
			errs = append(errs, err)
		}
	}
	if confPath != "" {
		errs = append(errs, os.Remove(confPath))
	}
	return errors.Join(errs...)
}

// BaseImage is the offline stand-in for the Dockerfile's GO_IMAGE and
// BUSYBOX_IMAGE.
const BaseImage = "localhost/tini-hot-e2e-build:local"

// Base imports BaseImage unless it exists: the host's Go (GOROOT),
// /bin/busybox (Debian package busybox-static) and CA certificates.
func Base() error {
	if _, err := run("image", "exists", BaseImage); err == nil {
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
	env, err := Env()
	if err != nil {
		return err
	}
	sh := exec.Command("sh", "-c", script)
	sh.Env = env
	if out, err := sh.CombinedOutput(); err != nil {
		return fmt.Errorf("import %s: %v: %s", BaseImage, err, out)
	}
	Made(BaseImage)
	return nil
}

// Build builds the Dockerfile's target in the repository at repo as tag,
// tini-hot stamped with version and the repository's commit, after Base.
func Build(repo, target, tag, version string) error {
	if err := Base(); err != nil {
		return err
	}
	goproxy, err := goEnv("GOPROXY")
	if err != nil {
		return err
	}
	// The commit, as a release stamps it; none outside a repository.
	commit, _ := exec.Command("git", "-C", repo, "rev-parse", "HEAD").Output()
	// --layers=false: no intermediate image is kept (each would hold a
	// build stage: Go and the module cache, 470 MB).
	_, err = run("build", "--layers=false", "--network=host", "--target", target, "-t", tag,
		"--build-arg", "GO_IMAGE="+BaseImage, "--build-arg", "BUSYBOX_IMAGE="+BaseImage,
		"--build-arg", "GOPROXY="+goproxy, "--build-arg", "VERSION="+version,
		"--build-arg", "COMMIT="+strings.TrimSpace(string(commit)), repo)
	if err != nil {
		return err
	}
	Made(tag)
	return nil
}

func goEnv(name string) (string, error) {
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}
